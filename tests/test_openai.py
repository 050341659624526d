"""The OpenAI Chat Completions adapter end to end, against a loopback server speaking the real wire format.

Every request body is checked against the pinned OpenAPI spec plus the strict-mode rules; the server rejects a
violating request with a 400 exactly as the real API would, so a bad body cannot pass silently.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings

import httpx
import pytest
from pydantic import BaseModel

import robustprompt as rp
from robustprompt.testing import OpenAIServer, Reply
from robustprompt.testing._openai_server import (
    chat_reply,
    context_too_long,
    insufficient_quota,
    model_not_found,
    rate_limited,
    schema_rejected,
    server_error,
)
from tests.loopback import model_maker, server_fixture
from tests.models import Person, Review, Sentiment, classify_task
from tests.spec_check import chat_request_violations

KEY = "sk-test-planted-4f2a9c"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)


server = server_fixture(lambda: OpenAIServer(api_key=KEY, check=chat_request_violations))
make = model_maker("openai:gpt-4.1-mini", api_key=KEY, temperature=0, max_output_tokens=200)


def test_success_with_native_json_schema(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"positive"}', prompt_tokens=42, completion_tokens=4))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(42, 4)
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    (req,) = server.requests
    assert req.headers["authorization"] == f"Bearer {KEY}"
    body = req.body
    assert body["model"] == "gpt-4.1-mini"
    assert [m["role"] for m in body["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert body["max_completion_tokens"] == 200 and "max_tokens" not in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False


def test_optional_fields_come_back_as_null_and_defaults_apply(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"name":"Ann","age":31,"nickname":null,"tags":null}'))
    task = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    person = task("Ann is 31", model=make(server, client))
    assert person == Person(name="Ann", age=31)


def test_messy_output_in_prompted_mode_is_repaired(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply("Here you go:\n```json\n{'label': 'Negative',}\n```"))
    run = classify_task().run(
        Review(text="bad"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.PROMPTED)
    )
    assert run.output == Sentiment(label="negative")
    assert run.attempts[0].repairs
    assert "response_format" not in server.requests[0].body
    assert "JSON Schema" in server.requests[0].body["messages"][0]["content"]


def test_json_object_mode_puts_the_schema_in_the_prompt(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"neutral"}'))
    classify_task().run(Review(text="ok"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.JSON_OBJECT))
    assert server.requests[0].body["response_format"] == {"type": "json_object"}


def test_tool_call_mode(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply(None, tool_arguments='{"label":"positive"}', finish_reason="stop"))
    run = classify_task().run(
        Review(text="ok"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.TOOL_CALL)
    )
    assert run.output == Sentiment(label="positive")
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "classify"}}
    assert body["parallel_tool_calls"] is False


def test_invalid_answer_is_reasked_once_with_the_errors(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"happy"}'), chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert len(server.requests) == 2
    second = server.requests[1].body["messages"]
    assert second[-2] == {"role": "assistant", "content": '{"label":"happy"}'}
    assert "happy" in second[-1]["content"] and second[-1]["role"] == "user"


@pytest.mark.parametrize("reply", [rate_limited(retry_after=0.3), rate_limited(retry_after_ms=300)])
def test_429_waits_for_retry_after_then_succeeds(server: OpenAIServer, client: httpx.Client, reply: object) -> None:
    server.enqueue(reply, chat_reply('{"label":"positive"}'))  # type: ignore[arg-type]
    start = time.monotonic()
    run = classify_task().run(Review(text="great"), model=make(server, client), policy=FAST)
    assert time.monotonic() - start >= 0.3
    assert run.output == Sentiment(label="positive")
    assert len(server.requests) == 2
    assert run.attempts[0].transport_errors[0].startswith("RateLimitError")


def test_500_is_retried(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(server_error(500), server_error(503), chat_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert len(run.attempts[0].transport_errors) == 2


def test_model_not_found_is_permanent(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(model_not_found("gpt-4.1-mini"), chat_reply('{"label":"negative"}'))
    with pytest.raises(rp.ModelNotFoundError, match="does not exist") as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.status == 404
    assert len(server.requests) == 1


def test_a_retired_model_is_replaced_by_the_catalogs_successor_only_when_the_policy_opts_in(
    server: OpenAIServer, client: httpx.Client
) -> None:
    retired = make(server, client, "openai:gpt-3.5-turbo")  # the catalog: retired, replaced by gpt-4.1-mini
    server.enqueue(model_not_found("gpt-3.5-turbo"))
    with pytest.warns(rp.ModelRetirementWarning, match="was retired on"), pytest.raises(rp.ModelNotFoundError):
        classify_task().run(Review(text="x"), model=retired, policy=FAST)  # no opt-in: the typed error stands
    with pytest.raises(rp.ModelNotFoundError, match=r"replacement is openai:gpt-4\.1-mini"):
        classify_task().run(Review(text="x"), model=retired, policy=FAST)  # known dead: not called again
    assert len(server.requests) == 1

    rp.reset()
    replace = rp.Policy(backoff_initial=0.01, backoff_max=0.02, on_retired="replace")
    server.enqueue(model_not_found("gpt-3.5-turbo"), chat_reply('{"label":"negative"}'))
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        run = classify_task().run(Review(text="x"), model=retired, policy=replace)
    said = [str(w.message) for w in warned if w.category is rp.ModelRetirementWarning]
    assert any(
        "its calls go to its replacement openai:gpt-4.1-mini" in message
        and "robustprompt migrate TASK --cases FILE --from openai:gpt-3.5-turbo --to openai:gpt-4.1-mini" in message
        for message in said
    ), said
    assert run.output == Sentiment(label="negative") and run.model == "openai:gpt-4.1-mini"
    assert any("calling its replacement openai:gpt-4.1-mini" in note for note in run.notes)
    assert [r.body["model"] for r in server.requests[1:]] == ["gpt-3.5-turbo", "gpt-4.1-mini"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)  # reached as the old one was

    server.enqueue(chat_reply('{"label":"positive"}'))
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        again = classify_task().run(Review(text="y"), model=retired, policy=replace)
    assert again.model == "openai:gpt-4.1-mini" and server.requests[-1].body["model"] == "gpt-4.1-mini"
    assert len(server.requests) == 4  # the dead model is not asked again
    assert not [w for w in later if "its calls go to" in str(w.message)]  # warned once per process


def test_insufficient_quota_is_not_retried(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(insufficient_quota(), chat_reply('{"label":"negative"}'))
    with pytest.raises(rp.QuotaExceededError):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1


def test_context_too_long(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(context_too_long(128000, 130000))
    with pytest.raises(rp.ContextLengthError):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


def test_refusal(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply(None, refusal="I'm sorry, I can't assist with that."))
    with pytest.raises(rp.RefusalError, match="can't assist") as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.run is not None and info.value.run.attempts[0].finish_reason == "refusal"


def test_truncation_is_reasked(server: OpenAIServer, client: httpx.Client) -> None:
    task = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    server.enqueue(
        chat_reply('{"name":"Ann","ag', finish_reason="length"),
        chat_reply('{"name":"Ann","age":31,"nickname":null,"tags":[]}'),
    )
    run = task.run("Ann is 31", model=make(server, client), policy=FAST)
    assert run.output == Person(name="Ann", age=31)
    assert run.attempts[0].finish_reason == "length"
    assert "cut off" in server.requests[1].body["messages"][-1]["content"]


def test_schema_rejected_downgrades_to_the_next_mode(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(schema_rejected("classify", "bad"), chat_reply(None, tool_arguments='{"label":"positive"}'))
    model = make(server, client, name="openai:gpt-4.1-nano")
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.TOOL_CALL]
    assert "tools" in server.requests[1].body


def test_wrong_key_is_an_auth_error_that_never_shows_the_key(server: OpenAIServer, client: httpx.Client) -> None:
    model = rp.model(
        "openai:gpt-4.1-mini", base_url=server.base_url, api_key="sk-wrong-planted-777", http_client=client
    )
    with pytest.raises(rp.AuthError) as info:
        classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert "sk-wrong-planted-777" not in str(info.value)
    assert "sk-wrong-planted-777" not in repr(info.value.run)


def test_reasoning_models_get_no_sampling_parameters(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"positive"}'))
    classify_task().run(Review(text="x"), model=make(server, client, name="openai:gpt-5-mini"))
    body = server.requests[0].body
    assert "temperature" not in body
    assert body["messages"][0]["role"] == "developer"


def test_async_call_through_the_server(server: OpenAIServer) -> None:
    server.enqueue(chat_reply('{"label":"happy"}'), chat_reply('{"label":"neutral"}'))

    async def go() -> rp.Run[Sentiment]:
        async with httpx.AsyncClient() as aclient:
            model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, async_http_client=aclient)
            return await classify_task().arun(Review(text="meh"), model=model, policy=FAST)

    run = asyncio.run(go())
    assert run.output == Sentiment(label="neutral")
    assert len(run.attempts) == 2


def test_connection_refused_is_a_retryable_connection_error(client: httpx.Client) -> None:
    model = rp.model("openai:gpt-4.1-mini", base_url="http://127.0.0.1:9/v1", api_key=KEY, http_client=client)
    with pytest.raises(rp.ProviderConnectionError) as info:
        classify_task().run(Review(text="x"), model=model, policy=rp.Policy(transport_retries=1, backoff_initial=0.01))
    assert info.value.run is not None
    assert len(info.value.run.attempts[0].transport_errors) == 1


@pytest.mark.parametrize("fault", ["reset", "truncate"])
def test_dropped_and_truncated_responses_are_retried(server: OpenAIServer, client: httpx.Client, fault: str) -> None:
    broken = chat_reply('{"label":"positive"}')
    server.enqueue(Reply(broken.status, broken.body, broken.headers, fault=fault), chat_reply('{"label":"negative"}'))  # type: ignore[arg-type]
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert run.attempts[0].transport_errors[0].startswith("ProviderConnectionError")


def test_a_hang_past_the_timeout_is_a_retryable_timeout(server: OpenAIServer, client: httpx.Client) -> None:
    slow = chat_reply('{"label":"positive"}')
    server.enqueue(Reply(slow.status, slow.body, slow.headers, delay=2.0), chat_reply('{"label":"neutral"}'))
    model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, timeout=0.2, http_client=client)
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert run.output == Sentiment(label="neutral")
    assert run.attempts[0].transport_errors[0].startswith("ProviderTimeout")


def test_an_oversized_response_is_refused_unread(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply("x" * 2_000_000))
    model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, http_client=client)
    object.__setattr__(model.backend, "settings", rp.Settings(max_response_bytes=1_000_000))
    with pytest.raises(rp.ProviderError, match="over 1000000 bytes"):
        classify_task().run(Review(text="x"), model=model, policy=FAST)


def test_an_envelope_nested_absurdly_deep_is_a_typed_error(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(Reply(200, b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(rp.ProviderError, match="nested too deeply"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


@pytest.mark.parametrize(
    ("status", "error"), [(401, rp.AuthError), (413, rp.BadRequestError), (404, rp.BadRequestError)]
)
def test_an_error_page_that_is_not_json_is_typed_by_its_status_and_not_retried(
    server: OpenAIServer, client: httpx.Client, status: int, error: type[rp.ProviderError]
) -> None:
    server.enqueue(Reply(status, b"<html><body>Gateway says no</body></html>"), chat_reply('{"label":"positive"}'))
    with pytest.raises(error):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "message",
    [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
        "not an object",
    ],
)
def test_a_malformed_success_is_a_typed_error(server: OpenAIServer, client: httpx.Client, message: object) -> None:
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }
    server.enqueue(Reply(200, json.dumps(body).encode()))
    with pytest.raises(rp.ProviderError, match="malformed response"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


def test_null_tool_arguments_are_an_empty_answer_not_a_crash(server: OpenAIServer, client: httpx.Client) -> None:
    reply = json.loads(chat_reply(None, tool_arguments="{}").body)
    reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = None
    server.enqueue(Reply(200, json.dumps(reply).encode()), chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.attempts[0].raw == ""
    assert run.output == Sentiment(label="positive")


class Inner(BaseModel):
    x: int = 0
    note: str | None = None


class Outer(BaseModel):
    b: Inner | None = None
    items: list[Inner] | None = None


def test_strict_nulls_inside_optional_nested_models_are_accepted(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"b": {"x": null, "note": null}, "items": [{"x": 2, "note": null}]}'))
    task = rp.Task("nested", input=str, output=Outer, instructions="Fill it.")
    assert task("x", model=make(server, client)) == Outer(b=Inner(), items=[Inner(x=2)])
