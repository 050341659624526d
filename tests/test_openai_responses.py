"""The OpenAI Responses adapter end to end, against a loopback server speaking the real wire format.

Every request body is checked against the pinned spec's `CreateResponse`, plus what the spec leaves open but the
API enforces: no unknown top-level parameters, strict-mode schemas, and the word "json" in the input messages for
JSON mode. The server answers a violating request with OpenAI's 400, so a bad body cannot pass silently.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings

import robustprompt as rp
from robustprompt.adapters import Endpoint
from robustprompt.adapters.openai_responses import OpenAIResponsesAdapter
from robustprompt.testing import Reply
from robustprompt.testing._openai_server import (
    context_too_long,
    error_reply,
    insufficient_quota,
    model_not_found,
    rate_limited,
    server_error,
)
from robustprompt.testing._responses_server import (
    ResponsesServer,
    failed_reply,
    format_schema_rejected,
    response_reply,
)
from tests.loopback import model_maker, server_fixture
from tests.models import Person, Review, Sentiment, classify_task
from tests.schema_shapes import Tree, random_models
from tests.spec_check import (
    OPENAI_SPEC,
    envelope_errors,
    needs_specs,
    openapi_errors,
    strict_schema_violations,
)

KEY = "sk-test-planted-7c1e5d"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)
_JSON_MODE = (
    "Response input messages must contain the word 'json' in some form to use 'text.format' of type 'json_object'."
)


# ---------------------------------------------------------------- what the real endpoint refuses


@functools.cache
def _known_parameters() -> frozenset[str]:
    assert OPENAI_SPEC is not None
    schemas = json.loads(OPENAI_SPEC.read_text(encoding="utf-8"))["components"]["schemas"]

    def walk(node: Mapping[str, Any]) -> set[str]:
        if "$ref" in node:
            return walk(schemas[node["$ref"].rsplit("/", 1)[1]])
        names = set(node.get("properties", {}))
        for member in node.get("allOf", ()):
            names |= walk(member)
        return names

    return frozenset(walk(schemas["CreateResponse"]))


def responses_request_violations(body: Mapping[str, Any]) -> list[str]:
    """What POST /v1/responses would refuse in `body`."""
    found = envelope_errors(body, "CreateResponse")
    if OPENAI_SPEC:
        found += [f"Unknown parameter: '{name}'." for name in sorted(body.keys() - _known_parameters())]
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        found += strict_schema_violations("response_format", fmt, fmt.get("schema"))
    if fmt.get("type") == "json_object" and "json" not in _input_text(body).lower():
        found.append(_JSON_MODE)
    for tool in body.get("tools") or ():
        if isinstance(tool, Mapping) and tool.get("type") == "function":
            found += strict_schema_violations("function", tool, tool.get("parameters"))
    return found


def _input_text(body: Mapping[str, Any]) -> str:
    # Only the input messages count for JSON mode, not `instructions`.
    items = body.get("input")
    if isinstance(items, str):
        return items
    return json.dumps([item.get("content") for item in items or () if isinstance(item, Mapping)])


# ---------------------------------------------------------------- fixtures


server = server_fixture(lambda: ResponsesServer(api_key=KEY, check=responses_request_violations))
make = model_maker("openai-responses:gpt-4.1-mini", api_key=KEY, temperature=0, max_output_tokens=200)


def run_in(mode: rp.OutputMode, server: ResponsesServer, client: httpx.Client) -> rp.Run[Sentiment]:
    return classify_task().run(Review(text="ok"), model=make(server, client), policy=rp.Policy(mode=mode))


# ---------------------------------------------------------------- the checker itself


@needs_specs
def test_the_checker_refuses_what_the_api_refuses() -> None:
    base = {"model": "gpt-4.1-mini", "input": [{"role": "user", "content": "hi"}]}
    assert responses_request_violations(base) == []
    assert "Unknown parameter: 'seed'." in responses_request_violations({**base, "seed": 1})
    json_mode = {**base, "instructions": "Reply in JSON.", "text": {"format": {"type": "json_object"}}}
    assert responses_request_violations(json_mode) == [_JSON_MODE]
    loose = {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}
    (problem,) = responses_request_violations({**base, "text": {"format": loose}})
    assert problem.startswith("Invalid schema for response_format 'x': ")
    nested = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert responses_request_violations({**base, "text": {"format": nested}}) != []
    assert responses_request_violations({**base, "max_output_tokens": 8}) != []


# ---------------------------------------------------------------- modes


def test_native_json_schema_is_a_flat_text_format(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(response_reply('{"label":"positive"}', input_tokens=42, output_tokens=4))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    assert run.usage == rp.Usage(42, 4)
    (req,) = server.requests
    assert req.path == "/v1/responses"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    body = req.body
    assert body["instructions"].startswith("Classify the sentiment")
    assert [item["role"] for item in body["input"]] == ["user", "assistant", "user", "assistant", "user"]
    assert body["store"] is False
    assert body["max_output_tokens"] == 200 and body["temperature"] == 0
    fmt = body["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "classify" and fmt["strict"] is True
    assert fmt["schema"]["additionalProperties"] is False
    assert "json_schema" not in fmt and "response_format" not in body


def test_tool_call_mode_is_a_flat_forced_function(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(response_reply(None, function_arguments='{"label":"negative"}', function_name="classify"))
    run = run_in(rp.OutputMode.TOOL_CALL, server, client)
    assert run.output == Sentiment(label="negative")
    body = server.requests[0].body
    (tool,) = body["tools"]
    assert tool["type"] == "function" and tool["name"] == "classify" and tool["strict"] is True
    assert "function" not in tool
    assert body["tool_choice"] == {"type": "function", "name": "classify"}
    assert body["parallel_tool_calls"] is False
    assert "text" not in body


def test_json_object_mode_sends_the_system_text_as_an_input_message(
    server: ResponsesServer, client: httpx.Client
) -> None:
    server.enqueue(response_reply('{"label":"neutral"}'))
    run = run_in(rp.OutputMode.JSON_OBJECT, server, client)
    assert run.output == Sentiment(label="neutral")
    body = server.requests[0].body
    assert body["text"] == {"format": {"type": "json_object"}}
    assert "instructions" not in body
    first = body["input"][0]
    assert first["role"] == "system" and "JSON Schema" in first["content"]


def test_prompted_mode_has_no_format(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(response_reply("Sure:\n```json\n{'label': 'Positive',}\n```"))
    run = run_in(rp.OutputMode.PROMPTED, server, client)
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].repairs
    body = server.requests[0].body
    assert "text" not in body and "tools" not in body
    assert "JSON Schema" in body["instructions"]


def test_reasoning_items_are_skipped_and_text_parts_joined(server: ResponsesServer, client: httpx.Client) -> None:
    reply = json.loads(response_reply('{"label":', reasoning=True).body)
    reply["output"][1]["content"].append({"type": "output_text", "text": '"positive"}', "annotations": []})
    server.enqueue(Reply(200, json.dumps(reply).encode()))
    run = classify_task().run(Review(text="x"), model=make(server, client))
    assert run.output == Sentiment(label="positive")


def test_a_reasoning_model_takes_the_openai_catalog_profile(server: ResponsesServer, client: httpx.Client) -> None:
    model = make(server, client, name="openai-responses:gpt-5-mini")
    assert model.profile.reasoning and model.profile.provider == "openai-responses"
    server.enqueue(response_reply('{"label":"positive"}', reasoning=True))
    classify_task().run(Review(text="x"), model=model, policy=rp.Policy(mode=rp.OutputMode.JSON_OBJECT))
    body = server.requests[0].body
    assert "temperature" not in body
    assert body["input"][0]["role"] == "developer"


def test_catalog_replacements_stay_on_the_responses_api() -> None:
    adapter = OpenAIResponsesAdapter()
    assert adapter.default_profile("gpt-4.1").replacement == "openai-responses:gpt-5.1"
    unknown = adapter.default_profile("ft:gpt-4.1-mini:acme")
    assert unknown.provider == "openai-responses" and unknown.modes[0] is rp.OutputMode.JSON_SCHEMA


def test_seed_is_not_sent_and_a_tiny_token_limit_is_a_config_error() -> None:
    adapter = OpenAIResponsesAdapter()
    prompt = rp.Prompt("Say hi in JSON.", (rp.Message("user", "hi"),), rp.OutputSpec("x", {"type": "object"}))
    profile = adapter.default_profile("gpt-4.1-mini")
    call = adapter.prepare(prompt, profile, rp.Settings(seed=7), Endpoint("http://x/v1", "k"))
    assert "seed" not in call.body
    with pytest.raises(rp.ConfigError, match="at least 16"):
        adapter.prepare(prompt, profile, rp.Settings(max_output_tokens=8), Endpoint("http://x/v1", "k"))


def test_grammar_mode_is_a_config_error() -> None:
    adapter = OpenAIResponsesAdapter()
    spec = rp.OutputSpec("x", {"type": "object"})
    prompt = rp.Prompt("s", (rp.Message("user", "hi"),), spec, rp.OutputMode.GRAMMAR)
    with pytest.raises(rp.ConfigError, match="json_schema, tool_call"):
        adapter.prepare(prompt, adapter.default_profile("gpt-4.1"), rp.Settings(), Endpoint("http://x/v1"))


# ---------------------------------------------------------------- re-asks, truncation, refusal


def test_invalid_answer_is_reasked_with_the_errors(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(response_reply('{"label":"happy"}'), response_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    second = server.requests[1].body["input"]
    assert second[-2] == {"role": "assistant", "content": '{"label":"happy"}'}
    assert second[-1]["role"] == "user" and "happy" in second[-1]["content"]


def test_incomplete_at_max_output_tokens_is_truncation(server: ResponsesServer, client: httpx.Client) -> None:
    task: rp.Task[str, Person] = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    server.enqueue(
        response_reply('{"name":"Ann","ag', status="incomplete", incomplete_reason="max_output_tokens"),
        response_reply('{"name":"Ann","age":31,"nickname":null,"tags":[]}'),
    )
    run = task.run("Ann is 31", model=make(server, client), policy=FAST)
    assert run.output == Person(name="Ann", age=31)
    assert run.attempts[0].finish_reason == "length"
    assert "cut off" in server.requests[1].body["input"][-1]["content"]


def test_refusal_part(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(response_reply(None, refusal="I'm sorry, I can't assist with that."))
    with pytest.raises(rp.RefusalError, match="can't assist") as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.run is not None and info.value.run.attempts[0].finish_reason == "refusal"
    assert len(server.requests) == 1


def test_content_filter_stop_is_a_refusal(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(response_reply('{"lab', status="incomplete", incomplete_reason="content_filter"))
    with pytest.raises(rp.RefusalError, match="content filter"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("reply", [rate_limited(retry_after=0.3), rate_limited(retry_after_ms=300)])
def test_429_waits_for_retry_after(server: ResponsesServer, client: httpx.Client, reply: Reply) -> None:
    server.enqueue(reply, response_reply('{"label":"positive"}'))
    start = time.monotonic()
    run = classify_task().run(Review(text="great"), model=make(server, client), policy=FAST)
    assert time.monotonic() - start >= 0.3
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].transport_errors[0].startswith("RateLimitError")


def test_5xx_and_a_failed_response_are_retried(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(
        server_error(503),
        failed_reply("server_error", "The model failed to generate a response."),
        response_reply('{"label":"negative"}'),
    )
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert [e.split(":")[0] for e in run.attempts[0].transport_errors] == ["OverloadedError", "ServerError"]


def test_a_failed_response_for_the_prompt_is_permanent(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(failed_reply("invalid_prompt", "Invalid prompt."), response_reply('{"label":"negative"}'))
    with pytest.raises(rp.BadRequestError, match="Invalid prompt"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (model_not_found("gpt-4.1-mini"), rp.ModelNotFoundError),
        (insufficient_quota(), rp.QuotaExceededError),
        (context_too_long(1047576, 1100000), rp.ContextLengthError),
        (error_reply(400, "Unknown parameter: 'x'.", type="invalid_request_error", param="x"), rp.BadRequestError),
    ],
)
def test_permanent_errors_are_not_retried(
    server: ResponsesServer, client: httpx.Client, reply: Reply, error: type[rp.ProviderError]
) -> None:
    server.enqueue(reply, response_reply('{"label":"negative"}'))
    with pytest.raises(error):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1


def test_schema_rejected_downgrades_to_the_function_tool(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(
        format_schema_rejected("classify", "In context=(), 'required' is required to be supplied"),
        response_reply(None, function_arguments='{"label":"positive"}', function_name="classify"),
    )
    model = make(server, client, name="openai-responses:gpt-4.1-nano")
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.TOOL_CALL]
    assert "tools" in server.requests[1].body and "text" not in server.requests[1].body


def test_wrong_key_is_an_auth_error_that_never_shows_the_key(server: ResponsesServer, client: httpx.Client) -> None:
    model = rp.model(
        "openai-responses:gpt-4.1-mini", base_url=server.base_url, api_key="sk-wrong-planted-555", http_client=client
    )
    with pytest.raises(rp.AuthError) as info:
        classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert "sk-wrong-planted-555" not in str(info.value)
    assert "sk-wrong-planted-555" not in repr(info.value.run)
    assert "sk-wrong-planted-555" not in repr(model)


def test_a_body_without_output_is_a_bad_request(server: ResponsesServer, client: httpx.Client) -> None:
    server.enqueue(Reply(200, b'{"id": "resp_1", "object": "response"}'))
    with pytest.raises(rp.BadRequestError, match="no output list"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


def test_async_call_through_the_server(server: ResponsesServer) -> None:
    server.enqueue(response_reply('{"label":"happy"}'), response_reply('{"label":"neutral"}'))

    async def go() -> rp.Run[Sentiment]:
        async with httpx.AsyncClient() as aclient:
            model = rp.model(
                "openai-responses:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, async_http_client=aclient
            )
            return await classify_task().arun(Review(text="meh"), model=model, policy=FAST)

    run = asyncio.run(go())
    assert run.output == Sentiment(label="neutral")
    assert len(run.attempts) == 2


# ---------------------------------------------------------------- every mode, random output models


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models)
def test_random_models_give_bodies_the_api_accepts(tree: Tree) -> None:
    assume(tree.depth <= 9 and not tree.has_dict)  # dict fields are refused before any request (ConfigError)
    adapter = OpenAIResponsesAdapter()
    profile = adapter.default_profile("gpt-4.1-mini")
    schema = tree.annotation.model_json_schema()
    for mode in profile.modes:
        prompt = rp.Prompt(
            "Answer in JSON.", (rp.Message("user", "Input:\n{}"),), rp.OutputSpec("out", schema, "the answer"), mode
        )
        body = adapter.prepare(prompt, profile, rp.Settings(max_output_tokens=64), Endpoint("http://x/v1")).body
        assert responses_request_violations(body) == [], mode


# ---------------------------------------------------------------- the loopback server's own shapes


@pytest.mark.parametrize(
    "reply",
    [
        response_reply('{"label":"positive"}'),
        response_reply(None, function_arguments="{}", reasoning=True),
        response_reply('{"la', status="incomplete", incomplete_reason="max_output_tokens"),
        response_reply(None, refusal="No."),
        failed_reply("server_error", "The model failed."),
    ],
)
def test_replies_match_the_spec(reply: Reply) -> None:
    assert openapi_errors(json.loads(reply.body), "Response") == []


@needs_specs
def test_the_server_answers_like_the_endpoint(server: ResponsesServer, client: httpx.Client) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    url = f"{server.base_url}/responses"
    assert client.post(f"{server.base_url}/chat/completions", json={}, headers=auth).status_code == 404
    assert client.post(url, json={"model": "gpt-4.1", "input": "hi"}).status_code == 401
    strict = {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}
    refused = client.post(
        url, json={"model": "gpt-4.1", "input": "hi", "seed": 1, "text": {"format": strict}}, headers=auth
    )
    error = refused.json()["error"]
    assert refused.status_code == 400 and openapi_errors(refused.json(), "ErrorResponse") == []
    assert error["message"].startswith("Invalid schema for response_format 'x': ")
    assert error["param"] == "text.format.schema" and "Unknown parameter: 'seed'." in error["message"]
    unknown = client.post(url, json={"model": "gpt-4.1", "input": "hi", "seed": 1}, headers=auth).json()["error"]
    assert (unknown["param"], unknown["code"]) == ("seed", "unknown_parameter")
    server.requests.clear()  # the refused bodies above were meant to be refused
