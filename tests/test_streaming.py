"""Streamed calls end to end: typed partials from a loopback server speaking OpenAI's SSE, then the validated
output or the typed error a non-streamed call raises; re-asks, retries, the cache and leaving the loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import robustprompt as rp
from robustprompt.testing import OpenAIServer, ScriptedModel
from robustprompt.testing._openai_server import chat_stream, rate_limited, stream_error
from tests.models import Person, Review, Sentiment, classify_task
from tests.spec_check import chat_request_violations

KEY = "sk-test-planted-4f2a9c"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)
PERSON = '{"name": "Ada Lovelace", "age": 36, "nickname": null, "tags": ["math", "poetry"]}'


class Profile(BaseModel):
    person: Person
    summary: str


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key=KEY, check=chat_request_violations) as srv:
        yield srv
    for received in srv.requests:
        assert received.body["stream"] is True and received.body["stream_options"] == {"include_usage": True}


def make(server: OpenAIServer, **kw: Any) -> rp.Model:
    return rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, **kw)


def person_task() -> rp.Task[Review, Person]:
    return rp.Task("person", input=Review, output=Person, instructions="Who is described?")


def test_partials_grow_and_end_in_the_validated_output(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, pieces=12))
    items = list(person_task().stream_output(Review(text="x"), model=make(server), policy=FAST))
    *partials, final = items
    assert final == Person(name="Ada Lovelace", age=36, tags=["math", "poetry"])
    assert len(partials) >= 5 and all(isinstance(p, rp.Partial) and not isinstance(p, Person) for p in partials)
    names = [p.get("name") for p in partials if "name" in p.fields]
    assert names == sorted(names, key=len) and "Ada Lovelace".startswith(names[0])
    assert all(p.get("age") in (None, 36) for p in partials)  # "3" is never shown as the age
    assert partials[-1].fields["tags"] == ["math", "poetry"]


def test_a_nested_model_is_partial_too_and_an_enum_shows_only_whole(server: OpenAIServer) -> None:
    answer = json.dumps({"person": json.loads(PERSON), "summary": "A mathematician who wrote the first program."})
    server.enqueue(chat_stream(answer, pieces=30))
    task = rp.Task("profile", input=Review, output=Profile, instructions="Profile them.")
    *partials, final = task.stream_output(Review(text="x"), model=make(server), policy=FAST)
    assert isinstance(final, Profile)
    assert any(isinstance(p.get("person"), dict) and "age" not in p["person"] for p in partials)

    server.enqueue(chat_stream('{"label": "negative"}', split=list(range(1, 21))))
    *partials, verdict = classify_task().stream_output(Review(text="bad"), model=make(server), policy=FAST)
    assert verdict == Sentiment(label="negative")
    assert [p.get("label") for p in partials if "label" in p.fields] == ["negative"]


def test_a_forced_tool_call_streams_its_arguments(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, pieces=6, tool=True))
    policy = rp.Policy(mode=rp.OutputMode.TOOL_CALL)
    *partials, final = person_task().stream_output(Review(text="x"), model=make(server), policy=policy)
    assert final.name == "Ada Lovelace" and partials
    assert "tools" in server.requests[0].body


def test_a_reask_starts_a_new_stream_and_voids_the_partials_before_it(server: OpenAIServer) -> None:
    server.enqueue(chat_stream('{"name": "Ada", "age": 400}'), chat_stream(PERSON))
    items = list(person_task().stream_output(Review(text="x"), model=make(server), policy=FAST))
    restarts = [i for i, item in enumerate(items) if isinstance(item, rp.Restart)]
    assert len(restarts) == 1 and items[restarts[0]].attempt == 2
    assert "age" in items[restarts[0]].reason
    assert all(p.attempt == 1 for p in items[: restarts[0]]) and all(
        p.attempt == 2 for p in items[restarts[0] + 1 : -1]
    )
    assert items[-1].age == 36 and len(server.requests) == 2


def test_an_error_inside_the_stream_is_the_typed_error_and_is_retried(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, error=stream_error()), chat_stream(PERSON))
    items = list(person_task().stream_output(Review(text="x"), model=make(server), policy=FAST))
    restart = next(item for item in items if isinstance(item, rp.Restart))
    assert "ServerError" in restart.reason and items[-1].age == 36

    server.enqueue(chat_stream(PERSON, error=stream_error("slow down", type="requests")))
    with pytest.raises(rp.RateLimitError, match="slow down") as caught:
        list(person_task().stream_output(Review(text="x"), model=make(server), policy=rp.Policy(transport_retries=0)))
    assert KEY not in str(caught.value)


def test_a_cut_stream_is_a_connection_error_never_a_result(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, cut=True))
    seen: list[Any] = []
    once = rp.Policy(transport_retries=0)
    with pytest.raises(rp.ProviderConnectionError):
        seen.extend(person_task().stream_output(Review(text="x"), model=make(server), policy=once))
    assert seen and all(isinstance(item, rp.Partial) for item in seen)


def test_an_error_status_before_the_stream_is_read_and_retried_as_usual(server: OpenAIServer) -> None:
    server.enqueue(rate_limited(retry_after=0.01), chat_stream(PERSON))
    items = list(person_task().stream_output(Review(text="x"), model=make(server), policy=FAST))
    assert not any(isinstance(item, rp.Restart) for item in items)  # nothing was shown before the retry
    assert items[-1].age == 36 and len(server.requests) == 2


def test_leaving_the_loop_closes_the_connection(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, pieces=40, chunk_delay=0.25))
    start = time.monotonic()
    with httpx.Client() as client:
        stream = person_task().stream_output(Review(text="x"), model=make(server, http_client=client), policy=FAST)
        first = next(stream)
        stream.close()
        assert isinstance(first, rp.Partial)
        assert client._transport._pool.connections == []  # type: ignore[attr-defined]
    assert time.monotonic() - start < 3  # the 40 paced chunks (10 s) were not waited for


def test_a_cached_answer_replays_as_the_output_alone(server: OpenAIServer, tmp_path: Any) -> None:
    cache = rp.Cache(tmp_path / "cache.db")
    server.enqueue(chat_stream(PERSON))
    task, model = person_task(), make(server)
    first = list(task.stream_output(Review(text="x"), model=model, policy=FAST, cache=cache))
    again = list(task.stream_output(Review(text="x"), model=model, policy=FAST, cache=cache))
    assert again == [first[-1]] and len(server.requests) == 1


def test_the_async_stream_yields_the_same_items(server: OpenAIServer) -> None:
    server.enqueue(chat_stream('{"name": "Ada", "age": 400}'), chat_stream(PERSON))

    async def collect() -> list[Any]:
        model = make(server)
        try:
            return [item async for item in person_task().astream_output(Review(text="x"), model=model, policy=FAST)]
        finally:
            await model.aclose()

    items = asyncio.run(collect())
    assert isinstance(items[0], rp.Partial) and sum(isinstance(i, rp.Restart) for i in items) == 1
    assert items[-1] == Person(name="Ada Lovelace", age=36, tags=["math", "poetry"])


def test_a_backend_that_cannot_stream_yields_the_output_alone_and_says_so() -> None:
    model = ScriptedModel(['{"name": "Ada", "age": 36}'])
    notes: list[str] = []

    class Notes(rp.Hook):
        def run_end(self, event: rp.RunEnd) -> None:
            notes.extend(event.run.notes)

    with rp.hooks.added(Notes()):
        assert list(person_task().stream_output(Review(text="x"), model=model)) == [Person(name="Ada", age=36)]
    assert any("does not stream" in note for note in notes)


# ---------------------------------------------------------------- Anthropic and Ollama, each in its own wire


def test_anthropic_streams_text_and_tool_input_and_maps_an_error_event() -> None:
    from robustprompt.testing import AnthropicServer
    from robustprompt.testing._anthropic_server import message_stream
    from tests.test_anthropic import messages_request_violations

    with AnthropicServer(api_key=KEY, check=messages_request_violations) as server:
        model = rp.model("anthropic:claude-sonnet-4-5", base_url=server.base_url, api_key=KEY, max_output_tokens=200)
        server.enqueue(message_stream(PERSON, pieces=10, tool=True))
        policy = rp.Policy(mode=rp.OutputMode.TOOL_CALL)
        *partials, final = person_task().stream_output(Review(text="x"), model=model, policy=policy)
        assert final.age == 36 and len(partials) >= 4 and all(isinstance(p, rp.Partial) for p in partials)

        server.enqueue(message_stream(PERSON, error="overloaded_error"))
        with pytest.raises(rp.OverloadedError, match="Overloaded"):
            list(person_task().stream_output(Review(text="x"), model=model, policy=rp.Policy(transport_retries=0)))

        server.enqueue(message_stream(PERSON, cut=True))
        with pytest.raises(rp.ProviderConnectionError, match="incomplete chunked read"):
            list(person_task().stream_output(Review(text="x"), model=model, policy=rp.Policy(transport_retries=0)))
        assert all(received.body["stream"] is True for received in server.requests)


def test_ollama_streams_ndjson_and_maps_an_error_line() -> None:
    from robustprompt.testing import OllamaServer
    from robustprompt.testing._ollama_server import chat_stream as ollama_stream
    from tests.ollama_spec import chat_request_violations as ollama_violations

    with OllamaServer(check=ollama_violations) as server:
        model = rp.model("ollama:llama3.2", base_url=server.base_url)
        server.enqueue(ollama_stream(PERSON, pieces=10))
        *partials, final = person_task().stream_output(Review(text="x"), model=model, policy=FAST)
        assert final.age == 36 and len(partials) >= 4

        server.enqueue(ollama_stream(PERSON, error="an error was encountered while running the model"))
        with pytest.raises(rp.ServerError, match="running the model"):
            list(person_task().stream_output(Review(text="x"), model=model, policy=rp.Policy(transport_retries=0)))
        assert all(received.body["stream"] is True for received in server.requests)


def test_a_stalled_stream_ends_at_the_calls_deadline(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, pieces=4, chunk_delay=5))
    start = time.monotonic()
    seen: list[Any] = []
    with pytest.raises(rp.ProviderTimeout):
        seen.extend(person_task().stream_output(Review(text="x"), model=make(server), policy=rp.Policy(deadline=0.5)))
    assert time.monotonic() - start < 3 and not any(isinstance(item, Person) for item in seen)


def test_a_fallback_after_partials_is_announced_and_serves_the_output(server: OpenAIServer) -> None:
    with OpenAIServer(api_key=KEY, check=chat_request_violations) as backup:
        server.enqueue(chat_stream(PERSON, error=stream_error("bad request", type="invalid_request_error")))
        backup.enqueue(chat_stream(PERSON))
        policy = rp.Policy(fallbacks=(make(backup),), backoff_initial=0.01)
        items = list(person_task().stream_output(Review(text="x"), model=make(server), policy=policy))
    restart = next(item for item in items if isinstance(item, rp.Restart))
    assert "BadRequestError" in restart.reason and items[-1].age == 36 and len(backup.requests) == 1


def test_invalid_utf8_in_a_stream_is_a_typed_error_but_a_character_split_across_chunks_is_not(
    server: OpenAIServer,
) -> None:
    whole = b"".join(chat_stream('{"name": "Zoë", "age": 3}').chunks)  # the API sends UTF-8 unescaped
    cut = whole.index("ë".encode()) + 1  # between the two bytes of ë
    headers = (("content-type", "text/event-stream"),)
    server.enqueue(rp.testing.Reply(200, headers=headers, chunks=(whole[:cut], whole[cut:])))
    assert list(person_task().stream_output(Review(text="x"), model=make(server)))[-1].name == "Zoë"

    server.enqueue(rp.testing.Reply(200, headers=headers, chunks=(whole.replace("ë".encode(), b"\xff"),)))
    with pytest.raises(rp.ProviderConnectionError, match="not valid UTF-8"):
        list(person_task().stream_output(Review(text="x"), model=make(server), policy=rp.Policy(transport_retries=0)))


def test_hooks_see_each_streamed_attempts_time_to_first_chunk_and_partial(server: OpenAIServer) -> None:
    ended: list[rp.AttemptEnd] = []

    class Timings(rp.Hook):
        def attempt_end(self, event: rp.AttemptEnd) -> None:
            ended.append(event)

    server.enqueue(chat_stream(PERSON, pieces=10, chunk_delay=0.03))
    with rp.hooks.added(Timings()):
        list(person_task().stream_output(Review(text="x"), model=make(server), policy=FAST))
        person_task().run(Review(text="x"), model=ScriptedModel([PERSON]), policy=FAST)
    streamed, whole = (event.attempt for event in ended)
    assert streamed.first_chunk is not None and streamed.first_partial is not None
    assert 0 < streamed.first_chunk <= streamed.first_partial < streamed.latency
    assert streamed.latency - streamed.first_partial >= 0.15  # the answer kept coming after its first partial
    assert whole.first_chunk is None and whole.first_partial is None  # not streamed: nothing to time


# ---------------------------------------------------------------- pipelines: the last link streams


def _pipeline(model: rp.Model, **options: Any) -> rp.Pipeline:
    tidy = rp.Step("tidy", lambda review: Review(text=review.text.strip()), output=Review)
    return rp.Pipeline("people", [tidy, rp.Link("person", person_task(), model=model, policy=FAST, **options)])


def test_a_pipeline_streams_its_last_links_partials_then_gives_its_run(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, pieces=10))
    *partials, run = _pipeline(make(server)).stream_output(Review(text="  x  "))
    assert isinstance(run, rp.PipelineRun) and run.output == Person(
        name="Ada Lovelace", age=36, tags=["math", "poetry"]
    )
    assert len(partials) >= 4 and all(isinstance(p, rp.Partial) for p in partials)
    assert run.trace["person"].outcome == "ok" and run.trace["tidy"].outcome == "ok"
    content = server.requests[0].body["messages"][-1]["content"]
    assert '"x"' in content and "  x  " not in content  # the step's value reached the link


def test_a_pipeline_default_after_partials_is_announced_and_handed_on(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, error=stream_error("bad request", type="invalid_request_error")))
    fallback = Person(name="unknown", age=0)
    items = list(_pipeline(make(server), default=fallback).stream_output(Review(text="x")))
    restart, run = items[-2:]
    assert isinstance(restart, rp.Restart) and "default" in restart.reason and "BadRequestError" in restart.reason
    assert isinstance(run, rp.PipelineRun) and run.output == fallback and run.trace["person"].outcome == "default"


def test_the_async_pipeline_stream_yields_the_same_items(server: OpenAIServer) -> None:
    server.enqueue(chat_stream(PERSON, pieces=10))

    async def collect() -> list[Any]:
        return [item async for item in _pipeline(make(server)).astream_output(Review(text="x"))]

    *partials, run = asyncio.run(collect())
    assert partials and all(isinstance(p, rp.Partial) for p in partials)
    assert isinstance(run, rp.PipelineRun) and run.output is not None and run.output.age == 36
