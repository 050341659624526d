"""A batch job whose process stopped between the provider's creating a batch and the job's keeping its id: the
handle kept just before the creation (`pending`) makes the resumed job look the batch up at the provider by the
job's mark instead of creating a second one. And the batch lists the lookup reads, as the loopback servers serve
them (newest first, the providers' paging).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

import robustprompt as rp
from robustprompt._batch_api import BatchJob, asubmit, submit
from robustprompt.adapters import _anthropic_batch, _openai_batch
from robustprompt.testing import AnthropicBatchServer, AzureBatchServer, OpenAIBatchServer
from tests.spec_check import OPENAI_SPEC, envelope_errors
from tests.test_batch_api import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    REVIEWS,
    Label,
    Review,
    _anthropic,
    _anthropic_server,
    _azure,
    _azure_server,
    _openai,
    _openai_server,
    classify,
)


class _Killed(Exception):
    """The process's death, at the moment the test chooses."""


def _handles(when: Callable[[BatchJob[Any]], bool], *, kept_first: bool) -> tuple[list[str], Any]:
    """The handles an `on_part` keeps, and that `on_part`: it dies when `when(job)`, after keeping that handle
    (`kept_first`) or before."""
    kept: list[str] = []

    def on_part(job: BatchJob[Any]) -> None:
        if when(job) and not kept_first:
            raise _Killed
        kept.append(job.to_json())
        if when(job):
            raise _Killed

    return kept, on_part


def _after_creation(job: BatchJob[Any]) -> bool:
    return bool(job.parts) and job.pending is None


def _before_creation(job: BatchJob[Any]) -> bool:
    return job.pending is not None


def _model(server: OpenAIBatchServer | AnthropicBatchServer, client: httpx.Client | None) -> rp.Model:
    if isinstance(server, AzureBatchServer):
        assert client is not None
        return _azure(server, client)
    if client is not None:
        return _openai(server, client) if isinstance(server, OpenAIBatchServer) else _anthropic(server, client)
    name = "openai:gpt-4.1-mini" if isinstance(server, OpenAIBatchServer) else "anthropic:claude-sonnet-4-5"
    key = OPENAI_KEY if isinstance(server, OpenAIBatchServer) else ANTHROPIC_KEY
    return rp.model(name, base_url=server.base_url, api_key=key, temperature=0, max_output_tokens=200)


def _stopped(model: rp.Model, when: Callable[[BatchJob[Any]], bool], *, kept_first: bool) -> BatchJob[Label]:
    """The job as a process that died while submitting `REVIEWS[:2]` left it in its store."""
    kept, on_part = _handles(when, kept_first=kept_first)
    with pytest.raises(_Killed):
        submit(classify, REVIEWS[:2], model, on_part=on_part)
    job = BatchJob.from_json(kept[-1], classify, model=model)
    assert job.pending is not None and job.batch_ids == []
    return job


BOTH = pytest.mark.parametrize(
    "make", [_openai_server, _anthropic_server, _azure_server], ids=["openai", "anthropic", "deployment"]
)


@BOTH
def test_a_job_stopped_after_the_creation_finds_its_batch_and_pays_once(
    make: Callable[..., Any], client: httpx.Client
) -> None:
    with make() as server:
        model = _model(server, client)
        other = classify.submit(REVIEWS[:2], model=model)  # another job's batch of the same size, in the list
        job = _stopped(model, _after_creation, kept_first=False)
        assert server.created() == 2
        assert job.collect(interval=0) == [Label(label="positive"), Label(label="negative")]
        assert job.pending is None and job.batch_ids == [b for b in server.batches if b not in other.batch_ids]
        assert server.created() == 2 and server.live == 0
        assert other.collect(interval=0) == [Label(label="positive"), Label(label="negative")]
        assert server.processed == 4  # each batch's items processed (paid) once


@BOTH
def test_a_job_stopped_before_the_creation_finds_nothing_and_takes_no_other_batch(
    make: Callable[..., Any], client: httpx.Client
) -> None:
    with make() as server:
        model = _model(server, client)
        classify.submit(REVIEWS[:2], model=model)
        job = _stopped(model, _before_creation, kept_first=True)
        assert job.poll().statuses == ()
        assert job.batch_ids == [] and job.pending is None and not job.complete
        assert job.collect(interval=0) == [None, None]  # never submitted: the caller submits them again
        assert server.created() == 1


def test_several_running_batches_of_the_size_are_waited_for_until_their_results_tell(client: httpx.Client) -> None:
    with _anthropic_server(allowance=0) as server:
        model = _model(server, client)
        classify.submit(REVIEWS[:2], model=model)
        classify.submit(REVIEWS[2:4], model=model)
        job = _stopped(model, _before_creation, kept_first=True)
        lists = _lists(server)

        def release() -> None:
            while _lists(server) < lists + 3:
                time.sleep(0.005)
            server.allow(None)

        async def both() -> list[Any]:
            waiting = asyncio.to_thread(release)
            outcomes = job.acollect(interval=0.01)
            return (await asyncio.gather(waiting, outcomes))[1]

        assert asyncio.run(both()) == [None, None]
        assert _lists(server) > lists + 3 and job.batch_ids == [] and server.created() == 2


def test_one_running_batch_of_the_size_is_taken_until_its_results_say_it_is_another_jobs(
    client: httpx.Client,
) -> None:
    """The window Anthropic's API leaves: a batch the list cannot tell apart is taken on trust; its results then
    answer none of the job's items, which come out as missing (to submit again), never as another job's answers."""
    with _anthropic_server(allowance=0) as server:
        model = _model(server, client)
        classify.submit(REVIEWS[:2], model=model)
        job = _stopped(model, _before_creation, kept_first=True)
        assert job.poll().statuses == ("in_progress",)
        server.allow(None)
        outcomes = job.collect(interval=0)
        assert all(isinstance(o, rp.BatchItemError) and o.code == "missing" for o in outcomes)


def test_an_async_job_stopped_after_the_creation_finds_its_batch() -> None:
    with _anthropic_server() as server:
        model = _model(server, None)

        async def scenario() -> list[Any]:
            kept, on_part = _handles(_after_creation, kept_first=False)
            with pytest.raises(_Killed):
                await asubmit(classify, REVIEWS[:2], model, on_part=on_part)
            return await BatchJob.from_json(kept[-1], classify, model=model).acollect(interval=0)

        assert asyncio.run(scenario()) == [Label(label="positive"), Label(label="negative")]
        assert server.created() == 1 and server.processed == 2


@BOTH
def test_the_lookup_pages_back_through_newer_batches_and_no_further_than_the_creation(
    make: Callable[..., Any], client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_openai_batch, "_PAGE", 1)
    monkeypatch.setattr(_anthropic_batch, "_PAGE", 1)
    with make() as server:
        model = _model(server, client)
        kept, on_part = _handles(_after_creation, kept_first=False)
        with pytest.raises(_Killed):
            submit(classify, REVIEWS[:2], model, on_part=on_part)
        for i in range(3):  # newer batches of the same size: the job's own is on the fourth page
            classify.submit([Review(text=f"lovely {i}"), Review(text=f"awful {i}")], model=model)
        lists = _lists(server)
        job = BatchJob.from_json(kept[-1], classify, model=model)
        job.poll()
        assert job.batch_ids == [next(iter(server.batches))] and _lists(server) - lists == 4
        late = BatchJob.from_json(kept[-1], classify, model=model)
        assert late.pending is not None
        late.pending = replace(late.pending, since=time.time() + 3 * 3600)  # began after every listed batch
        lists = _lists(server)
        late.poll()
        assert late.batch_ids == [] and _lists(server) - lists == 1  # the first page was older: no further


def _lists(server: OpenAIBatchServer | AnthropicBatchServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path.rstrip("/").endswith("batches"))


# The lists themselves.


def _get(client: httpx.Client, url: str, headers: dict[str, str]) -> Any:
    answer = client.get(url, headers=headers)
    return answer.status_code, answer.json()


def test_the_openai_batch_list_pages_newest_first(client: httpx.Client) -> None:
    with _openai_server() as server:
        model = _model(server, client)
        ids = [classify.submit([Review(text=f"x {i}")], model=model).batch_ids[0] for i in range(5)][::-1]
        headers = {"authorization": f"Bearer {OPENAI_KEY}"}
        status, first = _get(client, f"{server.base_url}/batches?limit=2", headers)
        assert status == 200 and [b["id"] for b in first["data"]] == ids[:2] and first["has_more"]
        assert first["last_id"] == ids[1] and first["object"] == "list"
        _, rest = _get(client, f"{server.base_url}/batches?limit=100&after={ids[1]}", headers)
        assert [b["id"] for b in rest["data"]] == ids[2:] and not rest["has_more"]
        assert rest["data"][0]["metadata"]["robustprompt_job"].startswith("rp-")
        _, default = _get(client, f"{server.base_url}/batches", headers)
        assert len(default["data"]) == 5
        if OPENAI_SPEC:
            # The API writes unset fields as null (the spec's own example does); its schema leaves them out.
            data = [{key: value for key, value in b.items() if value is not None} for b in first["data"]]
            assert envelope_errors({**first, "data": data}, "ListBatchesResponse") == []
        status, refused = _get(client, f"{server.base_url}/batches?limit=101", headers)
        assert status == 400 and "limit" in refused["error"]["message"]


def test_the_anthropic_batch_list_pages_both_ways(client: httpx.Client) -> None:
    with _anthropic_server() as server:
        model = _model(server, client)
        ids = [classify.submit([Review(text=f"x {i}")], model=model).batch_ids[0] for i in range(5)][::-1]
        headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
        url = f"{server.base_url}/v1/messages/batches"
        _, first = _get(client, f"{url}?limit=2", headers)
        assert [b["id"] for b in first["data"]] == ids[:2] and first["has_more"] and first["last_id"] == ids[1]
        _, older = _get(client, f"{url}?limit=2&after_id={ids[1]}", headers)
        assert [b["id"] for b in older["data"]] == ids[2:4] and older["has_more"]
        _, newer = _get(client, f"{url}?limit=2&before_id={ids[3]}", headers)
        assert [b["id"] for b in newer["data"]] == ids[1:3] and newer["has_more"]
        status, refused = _get(client, f"{url}?limit=0", headers)
        assert status == 400 and refused["error"]["type"] == "invalid_request_error"
