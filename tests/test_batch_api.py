"""Provider batch APIs: `task.submit` through the loopback OpenAI Batch and Anthropic Message Batches servers.

Each item must be the live call's request, each result must go through the live call's parse, validate and re-ask
path, and nothing the batch did not answer may be dropped or re-sent unasked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import robustprompt as rp
from robustprompt._batch_api import chunked
from robustprompt.adapters._anthropic_batch import AnthropicBatchWire, read_result_line
from robustprompt.adapters._openai_batch import read_output_line
from robustprompt.adapters.azure import DEFAULT_API_VERSION
from robustprompt.testing import AnthropicBatchServer, AzureBatchServer, OpenAIBatchServer, Reply
from robustprompt.testing._anthropic_server import error_reply as anthropic_error
from robustprompt.testing._anthropic_server import message_reply
from robustprompt.testing._batch_servers import _form
from robustprompt.testing._openai_server import chat_reply, error_reply
from robustprompt.testing._responses_server import response_reply
from tests.spec_check import OPENAI_SPEC, chat_request_violations, envelope_errors
from tests.test_anthropic import messages_request_violations
from tests.test_openai_responses import responses_request_violations

OPENAI_KEY = "sk-batch-test-7c1d"
AZURE_KEY = "azure-batch-test-4f0a"
ANTHROPIC_KEY = "sk-ant-batch-test-9e2b"


class Review(pydantic.BaseModel):
    text: str


class Label(pydantic.BaseModel):
    label: Literal["positive", "negative"]


classify = rp.Task("classify", input=Review, output=Label, instructions="Label the review's sentiment.")


def _verdict(prompt_text: str, reasked: bool) -> tuple[int, str]:
    """(status, answer) for a review: "FAIL500" fails once, "ERR400" is refused, "BAD" is invalid until re-asked."""
    if "ERR400" in prompt_text:
        return 400, "the request was refused"
    if "BAD" in prompt_text and not reasked:
        return 200, '{"label": "neutral"}'
    return 200, json.dumps({"label": "negative" if "awful" in prompt_text else "positive"})


def _openai_answer(failed: set[str]) -> Callable[[Mapping[str, Any]], Reply]:
    def answer(body: Mapping[str, Any]) -> Reply:
        messages = body["messages"]
        text = messages[-1]["content"] if len(messages) == 2 else messages[1]["content"]
        if "FAIL500" in text and text not in failed:
            failed.add(text)
            return error_reply(500, "The server had an error while processing your request.", type="server_error")
        status, answer = _verdict(text, reasked=len(messages) > 2)
        return chat_reply(answer) if status == 200 else error_reply(status, answer, type="invalid_request_error")

    return answer


def _anthropic_answer(body: Mapping[str, Any]) -> Reply:
    messages = body["messages"]
    status, answer = _verdict(messages[0]["content"], reasked=len(messages) > 1)
    return message_reply(answer) if status == 200 else anthropic_error(status, "invalid_request_error", answer)


def _openai_server(**options: Any) -> OpenAIBatchServer:
    create = (lambda body: envelope_errors(body, "CreateBatchRequest")) if OPENAI_SPEC else None
    return OpenAIBatchServer(
        answer=_openai_answer(set()),
        api_key=OPENAI_KEY,
        check=chat_request_violations,
        create_check=create,
        **options,
    )


def _anthropic_server(**options: Any) -> AnthropicBatchServer:
    return AnthropicBatchServer(
        answer=_anthropic_answer, api_key=ANTHROPIC_KEY, check=messages_request_violations, **options
    )


def _openai(server: OpenAIBatchServer, client: httpx.Client) -> rp.Model:
    return rp.model(
        "openai:gpt-4.1-mini", base_url=server.base_url, api_key=OPENAI_KEY, http_client=client, temperature=0
    )


def _anthropic(server: AnthropicBatchServer, client: httpx.Client) -> rp.Model:
    return rp.model(
        "anthropic:claude-sonnet-4-5",
        base_url=server.base_url,
        api_key=ANTHROPIC_KEY,
        http_client=client,
        temperature=0,
        max_output_tokens=200,
    )


REVIEWS = [Review(text=t) for t in ("lovely", "awful", "BAD but fine", "FAIL500 lovely", "ERR400", "awful again")]
EXPECTED = ["positive", "negative", "positive", "positive", None, "negative"]


def _check(outcomes: list[Any]) -> None:
    for outcome, expected in zip(outcomes, EXPECTED, strict=True):
        if expected is None:
            assert isinstance(outcome, rp.BadRequestError)
        else:
            assert isinstance(outcome, Label) and outcome.label == expected, outcome


def test_openai_batch_is_the_live_call_and_collects_as_map(client: httpx.Client) -> None:
    with _openai_server(pace=2) as server:
        model = _openai(server, client)
        job = classify.submit(REVIEWS, model=model)
        assert server.uploads == 1 and server.created() == 1
        runs = job.collect(runs=True, interval=0)
        outputs = [r if isinstance(r, rp.RobustPromptError) else r.output for r in runs]
        _check(outputs)
        # The invalid answer was re-asked live and the item failed with a 500 sent again live: the notes say so.
        assert server.live == 2
        assert "live request" in runs[2].notes[-1] and "live request" in runs[3].notes[-1]
        assert runs[0].notes[-1].endswith("answered by the batch")
        assert runs[0].attempts[0].cost is not None
        # The same request as a live call of the same input.
        lines = [json.loads(raw) for raw in next(iter(server.files.values())).splitlines()]
        live_before = len(server.requests)
        classify.run(REVIEWS[0], model=model)
        live_body = server.requests[live_before].body
        assert lines[0]["body"] == live_body and lines[0]["url"] == "/v1/chat/completions"
        create = next(r for r in server.requests if r.path == "/v1/batches")
        assert create.body == {
            "input_file_id": create.body["input_file_id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"robustprompt_job": job.mark},
        }
        assert [line["custom_id"] for line in lines] == [job.custom_id(i) for i in range(len(REVIEWS))]
        assert all(OPENAI_KEY not in json.dumps(line) for line in lines)
        upload = next(r for r in server.requests if r.path == "/v1/files")
        form = _form(upload.headers["content-type"], upload.raw)
        assert form["purpose"] == b"batch" and form["file"].endswith(b"\n")
        if OPENAI_SPEC:
            fields = {"purpose": form["purpose"].decode(), "file": "batch.jsonl"}
            assert envelope_errors(fields, "CreateFileRequest") == []
            assert envelope_errors(create.body, "CreateBatchRequest") == []


def test_anthropic_batch_is_the_live_call_and_types_errored_items(client: httpx.Client) -> None:
    with _anthropic_server() as server:
        model = _anthropic(server, client)
        job = classify.submit(REVIEWS, model=model)
        outputs = job.collect(interval=0)
        expected = [*EXPECTED[:3], "positive", None, "negative"]
        for outcome, want in zip(outputs, expected, strict=True):
            assert isinstance(outcome, rp.BadRequestError) if want is None else outcome == Label(label=want)
        assert server.live == 1  # only the invalid answer's re-ask
        batch = next(iter(server.batches.values()))
        create = next(r for r in server.requests if r.path == "/v1/messages/batches")
        params = create.body["requests"][0]["params"]
        before = len(server.requests)
        classify.run(REVIEWS[0], model=model)
        assert params == server.requests[before].body
        assert [r["custom_id"] for r in create.body["requests"]] == [item.custom_id for item in batch.items]


@pytest.mark.parametrize("make", [_openai_server, _anthropic_server], ids=["openai", "anthropic"])
def test_an_expired_batch_keeps_what_finished_and_fails_the_rest(
    make: Callable[..., Any], client: httpx.Client
) -> None:
    reviews = [Review(text=f"lovely {i}") for i in range(5)]
    with make(expire_after=2) as server:
        model = _openai(server, client) if isinstance(server, OpenAIBatchServer) else _anthropic(server, client)
        outcomes = classify.submit(reviews, model=model).collect(interval=0)
        assert sum(isinstance(o, Label) for o in outcomes) == 2
        failed = [o for o in outcomes if isinstance(o, rp.BatchItemError)]
        assert len(failed) == 3 and {f.code for f in failed} == {"expired"}
        assert server.live == 0 and server.processed == 2  # never re-sent behind the user's back


@pytest.mark.parametrize("make", [_openai_server, _anthropic_server], ids=["openai", "anthropic"])
def test_a_cancelled_batch_keeps_what_finished(make: Callable[..., Any], client: httpx.Client) -> None:
    with make(pace=1) as server:
        model = _openai(server, client) if isinstance(server, OpenAIBatchServer) else _anthropic(server, client)
        job = classify.submit([Review(text=f"lovely {i}") for i in range(4)], model=model)
        job.poll()
        job.poll()
        job.cancel()
        outcomes = job.collect(interval=0)
        done = [o for o in outcomes if isinstance(o, Label)]
        assert 1 <= len(done) < 4
        assert all(isinstance(o, rp.BatchItemError) and o.code == "canceled" for o in outcomes if o not in done)


def test_malformed_result_lines_are_typed_per_item(client: httpx.Client) -> None:
    with _openai_server() as server:
        job = classify.submit(REVIEWS[:3], model=_openai(server, client))
        server.corrupt = frozenset({job.custom_id(1)})
        outcomes = job.collect(interval=0)
        assert isinstance(outcomes[0], Label)
        assert isinstance(outcomes[1], rp.BatchItemError) and outcomes[1].code == "missing"
        assert "could not be read" in str(outcomes[1])


def test_inputs_over_the_limit_are_split_and_a_request_over_the_size_limit_is_refused(client: httpx.Client) -> None:
    with _anthropic_server() as server:
        job = classify.submit(
            [Review(text=f"awful {i}") for i in range(5)], model=_anthropic(server, client), max_items=2
        )
        assert [p.stop - p.start for p in job.parts] == [2, 2, 1] and server.created() == 3
        assert all(o == Label(label="negative") for o in job.collect(interval=0))
    ten = [(i, b"x" * 10) for i in range(5)]
    assert [len(p) for p in chunked(ten[:3], 100, 10 * 2 + 2 + 64, "X")] == [2, 1]
    assert [[i for i, _ in p] for p in chunked(ten, 2, 10**6, "X")] == [[0, 1], [2, 3], [4]]
    with pytest.raises(rp.ConfigError, match="over X's limit of 100 bytes"):
        list(chunked([ten[0], (1, b"x" * 50)], 100, 100, "X"))


def test_the_handle_resumes_in_another_process_without_submitting_again(client: httpx.Client) -> None:
    with _openai_server(allowance=0) as server:
        model = _openai(server, client)
        job = classify.submit(REVIEWS[:2], model=model)
        text = job.to_json()
        assert OPENAI_KEY not in text
        assert not job.poll().ended
        server.allow(None)
        again = rp.BatchJob.from_json(text, classify, model=model)
        assert again.collect(interval=0) == [Label(label="positive"), Label(label="negative")]
        assert server.uploads == 1 and server.created() == 1
        other = rp.Task("other", input=Review, output=Label, instructions="Something else.")
        with pytest.raises(rp.ConfigError, match="another version of task"):
            rp.BatchJob.from_json(text, other, model=model)
        with pytest.raises(rp.ConfigError, match="not a batch job handle"):
            rp.BatchJob.from_json("{}", classify)


def test_a_provider_without_a_batch_api_is_refused_with_the_fix() -> None:
    model = rp.model("ollama:llama3.2", base_url="http://127.0.0.1:9")
    with pytest.raises(rp.ConfigError, match="no batch API"):
        classify.submit([Review(text="x")], model=model)


@given(st.binary(max_size=300))
def test_any_output_line_reads_as_an_item(raw: bytes) -> None:
    item = read_output_line(raw)
    assert item.kind in {"answered", "errored", "expired", "canceled", "malformed"}
    assert read_result_line(raw, {}).kind in {"answered", "errored", "expired", "canceled", "malformed"}


_KEYS = st.sampled_from(["custom_id", "response", "error", "result", "status_code", "body", "code", "type", "message"])
_LEAF = st.none() | st.integers() | st.text(max_size=5)
_VALUE = _LEAF | st.dictionaries(_KEYS, _LEAF | st.dictionaries(_KEYS, _LEAF, max_size=3), max_size=3)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _VALUE, max_size=4))
def test_any_json_line_reads_as_an_item(data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    for item in (read_output_line(raw), read_result_line(raw, {"invalid_request_error": 400})):
        assert item.answer is not None or item.kind != "answered"


class _SmallBatchServer(OpenAIBatchServer):
    max_requests = 2  # a provider whose limit is lower than the client knows: the batch fails validation


def test_a_batch_the_provider_fails_whole_reports_each_item_with_the_reason(client: httpx.Client) -> None:
    with _SmallBatchServer(answer=_openai_answer(set()), api_key=OPENAI_KEY) as server:
        outcomes = classify.submit(REVIEWS[:3], model=_openai(server, client)).collect(interval=0)
        assert all(isinstance(o, rp.BatchItemError) and o.code == "failed" for o in outcomes)
        assert "too_many_requests" in str(outcomes[0]) and server.processed == 0


def test_the_responses_api_batches_to_its_own_endpoint(client: httpx.Client) -> None:
    def answer(body: Mapping[str, Any]) -> Reply:
        return response_reply(json.dumps({"label": "negative" if "awful" in json.dumps(body) else "positive"}))

    check = responses_request_violations if OPENAI_SPEC else None
    with OpenAIBatchServer(answer=answer, api_key=OPENAI_KEY, check=check) as server:
        model = rp.model(
            "openai-responses:gpt-4.1-mini", base_url=server.base_url, api_key=OPENAI_KEY, http_client=client
        )
        outcomes = classify.submit(REVIEWS[:2], model=model).collect(interval=0)
        assert outcomes == [Label(label="positive"), Label(label="negative")]
        assert next(iter(server.batches.values())).extra["endpoint"] == "/v1/responses"


def test_an_input_found_too_large_after_some_batches_went_cancels_them(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AnthropicBatchWire, "max_bytes", 3000)
    reviews = [Review(text="lovely"), Review(text="awful"), Review(text="x" * 5000)]
    with _anthropic_server() as server:
        with pytest.raises(
            rp.ConfigError,
            match=r"request 2 is .* limit of 3,000 bytes .*the 1 batch\(es\) already submitted were cancelled",
        ):
            classify.submit(reviews, model=_anthropic(server, client), max_items=1)
        assert server.created() == 1  # the lines are read as they are made: item 1 had not gone yet
        assert {batch.status for batch in server.batches.values()} == {"canceling"}


@pytest.mark.parametrize("make", [_openai_server, _anthropic_server], ids=["openai", "anthropic"])
def test_the_async_twins_submit_poll_and_collect_as_the_sync_ones(make: Callable[..., Any]) -> None:
    with make(pace=2) as server:
        openai = isinstance(server, OpenAIBatchServer)
        name = "openai:gpt-4.1-mini" if openai else "anthropic:claude-sonnet-4-5"
        key = OPENAI_KEY if openai else ANTHROPIC_KEY
        model = rp.model(name, base_url=server.base_url, api_key=key, temperature=0, max_output_tokens=200)

        async def scenario() -> tuple[rp.BatchProgress, list[Any], list[Any]]:
            job = await classify.asubmit(REVIEWS, model=model)
            progress = await job.apoll()
            outcomes = await job.acollect(interval=0)
            live.append(server.live)
            return progress, outcomes, [index async for index, _ in job.aoutcomes(interval=0)]

        live: list[int] = []
        progress, outcomes, indices = asyncio.run(scenario())
        assert not progress.ended and len(progress.statuses) == 1
        _check(outcomes) if openai else _check([*outcomes[:3], Label(label="positive"), *outcomes[4:]])
        assert sorted(indices) == list(range(len(REVIEWS)))
        assert server.created() == 1 and live == [2 if openai else 1]


def test_an_async_cancel_keeps_what_finished_through_the_users_own_client(client: httpx.Client) -> None:
    with _anthropic_server(pace=1) as server:
        model = _anthropic(server, client)  # a sync client of the user's: the async twins carry it in a thread

        async def scenario() -> list[Any]:
            job = await classify.asubmit([Review(text=f"lovely {i}") for i in range(4)], model=model)
            await job.apoll()
            await job.apoll()
            await job.acancel()
            return await job.acollect(interval=0)

        outcomes = asyncio.run(scenario())
        done = [o for o in outcomes if isinstance(o, Label)]
        assert 1 <= len(done) < 4
        assert all(isinstance(o, rp.BatchItemError) and o.code == "canceled" for o in outcomes if o not in done)


def _azure_server(**options: Any) -> AzureBatchServer:
    return AzureBatchServer(answer=_openai_answer(set()), api_key=AZURE_KEY, check=chat_request_violations, **options)


def _azure(server: AzureBatchServer, client: httpx.Client) -> rp.Model:
    return rp.model(
        "azure:gpt-4o-batch", base_url=server.base_url, api_key=AZURE_KEY, http_client=client, temperature=0
    )


def test_the_deployment_batch_is_the_openai_flow_at_the_resources_address(client: httpx.Client) -> None:
    with _azure_server(deployments=["gpt-4o-batch"]) as server:
        model = _azure(server, client)
        job = classify.submit(REVIEWS, model=model)
        runs = job.collect(runs=True, interval=0)
        _check([r if isinstance(r, rp.RobustPromptError) else r.output for r in runs])
        assert server.live == 2 and server.created() == 1  # the re-ask and the retry went to the deployment
        batch_calls = [r for r in server.requests if "/deployments/" not in r.path]
        assert {r.path.split("/")[2] for r in batch_calls} == {"files", "batches"}
        assert all(r.path.startswith("/openai/") and r.headers.get("api-key") == AZURE_KEY for r in batch_calls)
        assert all(parse_qs(r.query)["api-version"] == [DEFAULT_API_VERSION] for r in server.requests)
        lines = [json.loads(raw) for raw in next(iter(server.files.values())).splitlines()]
        assert {line["url"] for line in lines} == {"/chat/completions"}
        assert {line["body"]["model"] for line in lines} == {"gpt-4o-batch"}  # the deployment's name
        before = len(server.requests)
        classify.run(REVIEWS[0], model=model)
        assert lines[0]["body"] == server.requests[before].body
        create = next(r for r in server.requests if r.path == "/openai/batches" and r.method == "POST")
        assert create.body["endpoint"] == "/chat/completions" and create.body["metadata"] == {
            "robustprompt_job": job.mark
        }


def test_a_deployment_batch_naming_an_unknown_deployment_fails_with_the_reason(client: httpx.Client) -> None:
    with _azure_server(deployments=["another"]) as server:
        outcomes = classify.submit(REVIEWS[:2], model=_azure(server, client)).collect(interval=0)
        assert all(isinstance(o, rp.BatchItemError) and o.code == "failed" for o in outcomes)
        assert "model_not_found" in str(outcomes[0]) and server.processed == 0
