"""The Anthropic Messages adapter end to end, against a loopback server speaking the real wire format.

Anthropic publishes no machine-readable spec, so every request body is checked against the field lists of
PROVIDERS.md §3 (the SDK's `MessageCreateParams`, `ToolParam`, `OutputConfigParam`) and the structured-output
dialect; the server rejects a violating request with a 400 worded as the real API words it, so a bad body
cannot pass silently.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, create_model

import robustprompt as rp
from robustprompt.adapters import Endpoint
from robustprompt.adapters.anthropic import API_VERSION, AnthropicAdapter
from robustprompt.testing._anthropic_server import (
    AnthropicServer,
    credit_balance_too_low,
    error_reply,
    message_reply,
    model_not_found,
    overloaded,
    permission_denied,
    prompt_too_long,
    rate_limited,
    refusal_reply,
    request_too_large,
    schema_rejected,
    server_error,
)
from robustprompt.testing._server import Reply
from tests.loopback import model_maker, server_fixture
from tests.models import Person, Review, Sentiment, classify_task
from tests.test_anthropic_schema import anthropic_schema_violations

KEY = "sk-ant-test-planted-4f2a9c"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)

# ---------------------------------------------------------------- the request body, from PROVIDERS.md §3

_TOP_LEVEL = frozenset(
    {"model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k", "stop_sequences", "metadata"}
    | {"service_tier", "thinking", "tool_choice", "tools", "output_config", "cache_control", "inference_geo"}
    | {"container", "stream"}
)
_REQUIRED = ("model", "messages", "max_tokens")
_TOOL_KEYS = frozenset({"name", "description", "input_schema", "cache_control", "type", "strict"})
_TOOL_CHOICE_KEYS = frozenset({"type", "name", "disable_parallel_tool_use"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Claude Opus 4.6 / Sonnet 4.6 and later reject assistant prefill (PROVIDERS.md §3). Prefixes: "claude-opus-5"
# covers claude-opus-5-5 too.
_NO_PREFILL = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7", "claude-opus-4-8", "claude-opus-5")
_NO_PREFILL += ("claude-sonnet-5", "claude-haiku-5", "claude-fable-5", "claude-mythos-5")
# Claude Opus 4.7 and later reject sampling parameters with a 400 (Sonnet 5 and Opus 4.7 migration notes).
_NO_SAMPLING = ("claude-opus-4-7", "claude-opus-4-8", "claude-opus-5", "claude-sonnet-5", "claude-haiku-5")
_NO_SAMPLING += ("claude-fable-5", "claude-mythos-5")
# Forced tool use returns a 400 on these (the Opus 5.5, Sonnet 5.5 and Fable 5.1 "what's new" pages).
_NO_FORCED_TOOL = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-fable-5-1", "claude-mythos-5-1")
_PREFILL = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7", "claude-opus-4-8")
_NO_PREFILL += ("claude-opus-5", "claude-sonnet-5", "claude-fable-5", "claude-mythos-5")
# Claude Opus 4.7 and later reject sampling parameters with a 400.
_PREFILL = "This model does not support assistant message prefill. The conversation must end with a user message."


def messages_request_violations(body: Any) -> list[str]:
    """What the real Messages endpoint would reject in `body`, worded as its 400s are ("<path>: <problem>")."""
    if not isinstance(body, Mapping):
        return ["body: Input should be a valid dictionary"]
    found = [f"{key}: Extra inputs are not permitted" for key in sorted(body.keys() - _TOP_LEVEL)]
    found += [f"{key}: Field required" for key in _REQUIRED if key not in body]
    if "model" in body and not (isinstance(body["model"], str) and body["model"]):
        found.append("model: Input should be a non-empty string")
    if "max_tokens" in body and not (type(body["max_tokens"]) is int and body["max_tokens"] >= 0):
        found.append("max_tokens: Input should be a non-negative integer")
    found += _system_violations(body.get("system"))
    found += _messages_violations(body)
    found += _sampling_violations(body)
    found += _output_config_violations(body.get("output_config"))
    found += _tools_violations(body)
    return found


def _text_violations(where: str, text: Any) -> list[str]:
    if not isinstance(text, str):
        return [f"{where}: Input should be a valid string"]
    return [] if text.strip() else [f"{where}: text content blocks must contain non-whitespace text"]


def _system_violations(system: Any) -> list[str]:
    if system is None or isinstance(system, str):
        return []
    if not isinstance(system, list):
        return ["system: Input should be a valid string or a list of text blocks"]
    found = []
    for i, block in enumerate(system):
        if not isinstance(block, Mapping) or block.get("type") != "text":
            found.append(f"system.{i}.type: Input should be 'text'")
        else:
            found += _text_violations(f"system.{i}.text", block.get("text"))
    return found


def _messages_violations(body: Mapping[str, Any]) -> list[str]:
    messages = body.get("messages")
    if messages is None:
        return []
    if not isinstance(messages, list) or not messages:
        return ["messages: at least one message is required"]
    found = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            found.append(f"messages.{i}: Input should be a valid dictionary")
            continue
        found += [f"messages.{i}.{key}: Extra inputs are not permitted" for key in message.keys() - {"role", "content"}]
        if message.get("role") not in ("user", "assistant"):
            found.append(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                found += _text_violations(f"messages.{i}.content.{j}.text", (block or {}).get("text"))
        else:
            found += _text_violations(f"messages.{i}.content", content)
    last = messages[-1] if isinstance(messages[-1], Mapping) else {}
    output_format = (body.get("output_config") or {}).get("format")
    if last.get("role") == "assistant" and (output_format or str(body.get("model", "")).startswith(_NO_PREFILL)):
        found.append(_PREFILL)
    return found


def _sampling_violations(body: Mapping[str, Any]) -> list[str]:
    found = []
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, (int, float)) and 0 <= temperature <= 1):
        found.append("temperature: Input should be less than or equal to 1")
    if str(body.get("model", "")).startswith(_NO_SAMPLING):
        found += [f"`{key}` is deprecated for this model." for key in ("temperature", "top_p", "top_k") if key in body]
    return found


def _output_config_violations(config: Any) -> list[str]:
    if config is None:
        return []
    if not isinstance(config, Mapping):
        return ["output_config: Input should be a valid dictionary"]
    found = [
        f"output_config.{key}: Extra inputs are not permitted" for key in sorted(config.keys() - {"effort", "format"})
    ]
    fmt = config.get("format")
    if fmt is None:
        return found
    if not isinstance(fmt, Mapping):
        return [*found, "output_config.format: Input should be a valid dictionary"]
    # Only `type` and `schema`: the OpenAI-style `name` / `strict` / nested `json_schema` are rejected.
    found += [
        f"output_config.format.{key}: Extra inputs are not permitted" for key in sorted(fmt.keys() - {"type", "schema"})
    ]
    if fmt.get("type") != "json_schema":
        found.append("output_config.format.type: Input should be 'json_schema'")
    found += [f"output_config.format.schema: {problem}" for problem in anthropic_schema_violations(fmt.get("schema"))]
    return found


def _tools_violations(body: Mapping[str, Any]) -> list[str]:
    tools = body.get("tools")
    found: list[str] = []
    names = []
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        if not isinstance(tool, Mapping):
            found.append(f"tools.{i}: Input should be a valid dictionary")
            continue
        names.append(tool.get("name"))
        found += [f"tools.{i}.custom.{key}: Extra inputs are not permitted" for key in sorted(tool.keys() - _TOOL_KEYS)]
        if not _TOOL_NAME.fullmatch(str(tool.get("name", ""))):
            found.append(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        found += _input_schema_violations(i, tool)
    if tools is not None and not isinstance(tools, list):
        found.append("tools: Input should be a valid list")
    return found + _tool_choice_violations(body.get("tool_choice"), names, body)


def _input_schema_violations(i: int, tool: Mapping[str, Any]) -> list[str]:
    schema = tool.get("input_schema")
    where = f"tools.{i}.custom.input_schema"
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return [f"{where}.type: Input should be 'object'"]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return [f"{where}: JSON schema is invalid. It must match JSON Schema draft 2020-12"]
    if tool.get("strict") is True:
        return [f"{where}: {problem}" for problem in anthropic_schema_violations(schema)]
    return []


def _tool_choice_violations(choice: Any, names: list[Any], body: Mapping[str, Any]) -> list[str]:
    if choice is None:
        return []
    if not isinstance(choice, Mapping) or choice.get("type") not in ("auto", "any", "tool", "none"):
        return ["tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"]
    found = [f"tool_choice.{key}: Extra inputs are not permitted" for key in sorted(choice.keys() - _TOOL_CHOICE_KEYS)]
    if not names:
        found.append("tool_choice: tool_choice may only be specified while providing tools")
    if choice["type"] == "tool" and choice.get("name") not in names:
        found.append(f"tool_choice.name: Tool '{choice.get('name')}' not found in provided tools")
    thinking = body.get("thinking") or {}
    if choice["type"] in ("any", "tool") and thinking.get("type") in ("enabled", "adaptive"):
        found.append("Thinking may not be enabled when tool_choice forces tool use.")
    if choice["type"] in ("any", "tool") and str(body.get("model", "")).startswith(_NO_FORCED_TOOL):
        found.append("tool_choice: forced tool use is not supported for this model; use 'auto' or 'none'")
    return found


# ---------------------------------------------------------------- fixtures


def _messages_api_only(server: AnthropicServer) -> None:
    for received in server.requests:
        assert received.path == "/v1/messages"
        assert received.headers["anthropic-version"] == API_VERSION
        assert "anthropic-beta" not in received.headers


server = server_fixture(
    lambda: AnthropicServer(api_key=KEY, check=messages_request_violations), after=_messages_api_only
)
make = model_maker("anthropic:claude-sonnet-4-5", api_key=KEY, temperature=0, max_output_tokens=200)


def person_task() -> rp.Task[str, Person]:
    return rp.Task("person", input=str, output=Person, instructions="Extract the person.")


# ---------------------------------------------------------------- output modes


def test_success_with_native_json_outputs(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply('{"label":"positive"}', input_tokens=42, output_tokens=4))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(42, 4)
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    (req,) = server.requests
    assert req.headers["x-api-key"] == KEY and "authorization" not in req.headers
    body = req.body
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"].startswith("Classify the sentiment")
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert body["max_tokens"] == 200 and body["temperature"] == 0
    fmt = body["output_config"]["format"]
    assert fmt.keys() == {"type", "schema"} and fmt["type"] == "json_schema"
    assert fmt["schema"]["additionalProperties"] is False
    assert "tools" not in body and "JSON Schema" not in body["system"]


def test_optional_fields_may_be_left_out(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply('{"name":"Ann","age":31}'))
    assert person_task()("Ann is 31", model=make(server, client)) == Person(name="Ann", age=31)
    schema = server.requests[0].body["output_config"]["format"]["schema"]
    assert schema["required"] == ["name", "age"]
    assert "maximum: 150" in schema["properties"]["age"]["description"]


def test_usage_counts_cached_input_and_the_answer_follows_thinking(
    server: AnthropicServer, client: httpx.Client
) -> None:
    reply = message_reply(
        '{"label":"neutral"}',
        thinking="The review is lukewarm.",
        input_tokens=5,
        cache_read_input_tokens=100,
        cache_creation_input_tokens=20,
        output_tokens=9,
    )
    server.enqueue(reply)
    run = classify_task().run(Review(text="ok"), model=make(server, client))
    assert run.output == Sentiment(label="neutral")
    assert run.usage == rp.Usage(125, 9)


def test_max_tokens_defaults_to_the_profile_limit(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply('{"label":"positive"}'))
    model = rp.model("anthropic:claude-haiku-4-5", base_url=server.base_url, api_key=KEY, http_client=client)
    classify_task().run(Review(text="x"), model=model)
    body = server.requests[0].body
    assert body["max_tokens"] == 64_000
    assert "temperature" not in body


def test_tool_call_mode_forces_the_tool(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply(None, tool_input={"label": "positive"}, tool_name="classify"))
    run = classify_task().run(
        Review(text="ok"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.TOOL_CALL)
    )
    assert run.output == Sentiment(label="positive")
    assert json.loads(run.attempts[0].raw) == {"label": "positive"}
    body = server.requests[0].body
    (tool,) = body["tools"]
    assert tool["name"] == "classify" and tool["input_schema"]["type"] == "object"
    assert tool["description"].startswith("Classify the sentiment")
    assert body["tool_choice"] == {"type": "tool", "name": "classify", "disable_parallel_tool_use": True}
    assert "output_config" not in body


@pytest.mark.parametrize(
    "name", ["anthropic:claude-opus-4-7", "anthropic:claude-opus-5-5", "anthropic:claude-fable-5-1"]
)
def test_models_that_think_get_no_temperature_and_an_unforced_tool(
    server: AnthropicServer, client: httpx.Client, name: str
) -> None:
    server.enqueue(message_reply("I will use the tool.", tool_input={"label": "negative"}, tool_name="classify"))
    run = classify_task().run(
        Review(text="bad"), model=make(server, client, name=name), policy=rp.Policy(mode=rp.OutputMode.TOOL_CALL)
    )
    assert run.output == Sentiment(label="negative")
    body = server.requests[0].body
    assert "temperature" not in body
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["system"].endswith("Answer by calling the tool classify.")


def test_a_recursive_output_needs_the_tool_mode(server: AnthropicServer, client: httpx.Client) -> None:
    class Node(BaseModel):
        value: int
        children: list[Node] = []

    task = rp.Task("tree", input=str, output=Node, instructions="Parse the tree.")
    with pytest.raises(rp.ConfigError, match=r"recursive model.*tool_call or prompted output mode"):
        task.run("1(2)", model=make(server, client))
    assert server.requests == []
    server.enqueue(message_reply(None, tool_input={"value": 1, "children": [{"value": 2}]}, tool_name="tree"))
    run = task.run("1(2)", model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.TOOL_CALL))
    assert run.output == Node(value=1, children=[Node(value=2)])
    assert "$defs" in server.requests[0].body["tools"][0]["input_schema"]


def test_prompted_mode_puts_the_schema_in_the_system_text(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply("Sure:\n```json\n{'label': 'Negative',}\n```"))
    run = classify_task().run(
        Review(text="bad"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.PROMPTED)
    )
    assert run.output == Sentiment(label="negative")
    body = server.requests[0].body
    assert "output_config" not in body and "tools" not in body
    assert "JSON Schema" in body["system"]


def test_json_mode_does_not_exist_on_anthropic(server: AnthropicServer, client: httpx.Client) -> None:
    profile = rp.ModelProfile("anthropic", "claude-sonnet-4-5", modes=(rp.OutputMode.JSON_OBJECT,))
    with pytest.raises(rp.ConfigError, match=r"'json_object' is not available.*no JSON mode"):
        classify_task().run(Review(text="x"), model=make(server, client, profile=profile))
    assert server.requests == []


def test_a_temperature_above_one_is_a_config_error(server: AnthropicServer, client: httpx.Client) -> None:
    with pytest.raises(rp.ConfigError, match=r"temperature from 0 to 1, got 1.5"):
        classify_task().run(Review(text="x"), model=make(server, client, temperature=1.5))
    assert server.requests == []


# ---------------------------------------------------------------- re-asks


def test_invalid_answer_is_reasked_and_the_turn_ends_with_the_user(
    server: AnthropicServer, client: httpx.Client
) -> None:
    server.enqueue(message_reply('{"label":"happy"}'), message_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client, name="anthropic:claude-opus-4-6"))
    assert run.output == Sentiment(label="positive")
    second = server.requests[1].body["messages"]
    assert second[-2] == {"role": "assistant", "content": '{"label":"happy"}'}
    assert second[-1]["role"] == "user" and "happy" in second[-1]["content"]


def test_an_empty_answer_is_reasked_without_an_empty_turn(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply(""), message_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert server.requests[1].body["messages"][-2] == {"role": "assistant", "content": "(no answer)"}


def test_truncation_is_reasked(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(
        message_reply('{"name":"Ann","ag', stop_reason="max_tokens"),
        message_reply('{"name":"Ann","age":31}'),
    )
    run = person_task().run("Ann is 31", model=make(server, client), policy=FAST)
    assert run.output == Person(name="Ann", age=31)
    assert run.attempts[0].finish_reason == "length"
    assert "cut off" in server.requests[1].body["messages"][-1]["content"]


def test_a_full_context_window_counts_as_truncation(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply('{"label":', stop_reason="model_context_window_exceeded"), message_reply("{}"))
    with pytest.raises(rp.OutputError) as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert [a.finish_reason for a in info.value.run.attempts] == ["length", "stop"]


# ---------------------------------------------------------------- refusals


def test_refusal_carries_the_explanation(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(refusal_reply(category="cyber", explanation="This request was declined by a safety classifier."))
    with pytest.raises(rp.RefusalError, match="declined by a safety classifier") as info:
        classify_task().run(Review(text="x"), model=make(server, client, name="anthropic:claude-fable-5"), policy=FAST)
    assert info.value.run is not None and info.value.run.attempts[0].finish_reason == "refusal"
    assert len(server.requests) == 1


def test_refusal_without_details_uses_the_text(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply("I can't help with that.", stop_reason="refusal"))
    with pytest.raises(rp.RefusalError, match="I can't help with that"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (rate_limited(retry_after=0.01), "RateLimitError"),
        (overloaded(), "OverloadedError"),
        (server_error(500), "ServerError"),
        (server_error(504), "ServerError"),
        (error_reply(400, "invalid_request_error", "flaky", headers=[("x-should-retry", "true")]), "ServerError"),
    ],
)
def test_retryable_errors_are_retried(server: AnthropicServer, client: httpx.Client, reply: Reply, error: str) -> None:
    server.enqueue(reply, message_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert len(server.requests) == 2
    assert run.attempts[0].transport_errors[0].startswith(error)


def test_429_waits_for_retry_after(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(rate_limited(retry_after=0.3), message_reply('{"label":"positive"}'))
    start = time.monotonic()
    run = classify_task().run(Review(text="great"), model=make(server, client), policy=FAST)
    assert time.monotonic() - start >= 0.3
    assert run.output == Sentiment(label="positive")


@pytest.mark.parametrize(
    ("reply", "error", "text"),
    [
        (model_not_found("claude-sonnet-4-5"), rp.ModelNotFoundError, "model: claude-sonnet-4-5"),
        (
            error_reply(404, "not_found_error", "Claude Fable 5 is not available. Please use Opus 4.8."),
            rp.ModelNotFoundError,
            "Please use Opus 4.8",
        ),
        (prompt_too_long(210_000, 200_000), rp.ContextLengthError, "prompt is too long"),
        (request_too_large(), rp.ContextLengthError, "maximum allowed number of bytes"),
        (credit_balance_too_low(), rp.QuotaExceededError, "credit balance is too low"),
        (error_reply(402, "billing_error", "Billing issue."), rp.QuotaExceededError, "Billing"),
        (permission_denied(), rp.AuthError, "does not have permission"),
        (Reply(500, server_error(500).body, (("x-should-retry", "false"),)), rp.BadRequestError, "Internal"),
    ],
)
def test_permanent_errors_are_not_retried(
    server: AnthropicServer, client: httpx.Client, reply: Reply, error: type[rp.ProviderError], text: str
) -> None:
    server.enqueue(reply, message_reply('{"label":"negative"}'))
    with pytest.raises(error, match=text) as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1
    assert info.value.status == reply.status and info.value.provider == "anthropic"
    assert info.value.run is not None


def test_schema_rejected_downgrades_to_the_tool(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(schema_rejected(), message_reply(None, tool_input={"label": "positive"}, tool_name="classify"))
    run = classify_task().run(
        Review(text="x"), model=make(server, client, name="anthropic:claude-opus-4-5"), policy=FAST
    )
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.TOOL_CALL]
    assert "output_config" in server.requests[0].body and "tools" in server.requests[1].body


def test_a_schema_over_the_grammar_limits_is_rejected_by_the_server_then_downgraded(
    server: AnthropicServer, client: httpx.Client
) -> None:
    wide = create_model("Wide", **{f"f{i}": (int | None, None) for i in range(30)})  # type: ignore[call-overload]
    task = rp.Task("wide", input=str, output=wide, instructions="Fill what you can.")
    server.enqueue(message_reply(None, tool_input={"f0": 1}, tool_name="wide"))
    run = task.run("f0 is 1", model=make(server, client, name="anthropic:claude-sonnet-4-6"), policy=FAST)
    assert run.output.f0 == 1
    assert run.attempts[0].errors[0].startswith("SchemaRejectedError")
    assert "Schema is too complex" in run.attempts[0].errors[0]
    assert len(server.requests) == 2
    del server.requests[0]  # the one body the server was meant to refuse


def test_wrong_key_is_an_auth_error_that_never_shows_the_key(server: AnthropicServer, client: httpx.Client) -> None:
    model = rp.model(
        "anthropic:claude-sonnet-4-5", base_url=server.base_url, api_key="sk-ant-wrong-planted-777", http_client=client
    )
    with pytest.raises(rp.AuthError, match="invalid x-api-key") as info:
        classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert "sk-ant-wrong-planted-777" not in str(info.value)
    assert "sk-ant-wrong-planted-777" not in repr(info.value.run)
    assert len(server.requests) == 1


def test_an_unreadable_body_is_a_retryable_connection_error(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(Reply(200, b'{"id": "msg_01", "content": [{"ty'), message_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].transport_errors[0].startswith("ProviderConnectionError")


# ---------------------------------------------------------------- models, keys, async


def test_default_profiles_follow_the_model_version() -> None:
    adapter = AnthropicAdapter()
    legacy = adapter.default_profile("claude-3-5-haiku-20241022")
    assert legacy.modes == (rp.OutputMode.TOOL_CALL, rp.OutputMode.PROMPTED)
    assert adapter.default_profile("claude-sonnet-4-20250514").modes[0] is rp.OutputMode.TOOL_CALL
    dated = adapter.default_profile("claude-sonnet-4-5-20250929")
    assert dated.modes[0] is rp.OutputMode.JSON_SCHEMA and not dated.reasoning
    newer = adapter.default_profile("claude-opus-5-5")
    assert newer.modes[0] is rp.OutputMode.JSON_SCHEMA and newer.reasoning
    assert adapter.default_profile("my-claude-fine-tune").modes[0] is rp.OutputMode.JSON_SCHEMA


def test_an_older_model_gets_the_tool_first(server: AnthropicServer, client: httpx.Client) -> None:
    server.enqueue(message_reply(None, tool_input={"label": "positive"}, tool_name="classify"))
    run = classify_task().run(Review(text="x"), model=make(server, client, name="anthropic:claude-3-5-haiku-20241022"))
    assert run.mode is rp.OutputMode.TOOL_CALL
    assert "output_config" not in server.requests[0].body


def test_every_catalog_model_supports_json_outputs_and_the_tool() -> None:
    from robustprompt import _catalog

    profiles = [p for p in _catalog.all_profiles() if p.provider == "anthropic"]
    assert {p.model_id for p in profiles} >= {
        "claude-sonnet-4-5",
        "claude-opus-4-6",
        "claude-opus-5",
        "claude-opus-5-5",
    }
    for profile in profiles:
        assert profile.modes == (rp.OutputMode.JSON_SCHEMA, rp.OutputMode.TOOL_CALL, rp.OutputMode.PROMPTED)
        assert profile.reasoning == profile.model_id.startswith(_NO_SAMPLING)


def test_key_from_the_environment_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-planted")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/")
    model = rp.model("anthropic:claude-sonnet-4-5")
    assert "sk-ant-env-planted" not in repr(model) + repr(model.backend)
    assert "http://127.0.0.1:9'" in repr(model.backend)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(rp.ConfigError, match="set ANTHROPIC_API_KEY"):
        rp.model("anthropic:claude-sonnet-4-5")


def test_the_prepared_call_keeps_the_key_out_of_its_repr() -> None:
    adapter = AnthropicAdapter()
    profile = adapter.default_profile("claude-sonnet-4-5")
    spec = rp.OutputSpec("out", {"type": "object", "properties": {}})
    prompt = rp.Prompt("", (rp.Message("user", "hi"),), spec, rp.OutputMode.JSON_SCHEMA)
    call = adapter.prepare(prompt, profile, rp.Settings(), Endpoint("https://api.anthropic.com", "sk-ant-secret"))
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers["x-api-key"] == "sk-ant-secret"
    assert "sk-ant-secret" not in repr(call)
    assert "system" not in call.body  # an empty system text is left out, not sent empty
    assert messages_request_violations(call.body) == []


def test_async_call_through_the_server(server: AnthropicServer) -> None:
    server.enqueue(message_reply('{"label":"happy"}'), message_reply('{"label":"neutral"}'))

    async def go() -> rp.Run[Sentiment]:
        async with httpx.AsyncClient() as aclient:
            model = rp.model(
                "anthropic:claude-sonnet-4-5", base_url=server.base_url, api_key=KEY, async_http_client=aclient
            )
            return await classify_task().arun(Review(text="meh"), model=model, policy=FAST)

    run = asyncio.run(go())
    assert run.output == Sentiment(label="neutral")
    assert len(run.attempts) == 2


# ---------------------------------------------------------------- the checker and the server themselves


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"seed": 1}, "seed: Extra inputs are not permitted"),
        ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        ({"model": "claude-opus-4-7", "temperature": 0}, "`temperature` is deprecated for this model."),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be 'user' or 'assistant'"),
        ({"messages": [{"role": "user", "content": " "}]}, "non-whitespace text"),
        (
            {
                "model": "claude-opus-4-6",
                "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "{"}],
            },
            _PREFILL,
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True}}}},
            "output_config.format.json_schema: Extra inputs are not permitted",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}}}},
            "'additionalProperties' must be explicitly set to false",
        ),
        ({"tool_choice": {"type": "tool", "name": "x"}}, "tool_choice may only be specified while providing tools"),
        (
            {
                "model": "claude-opus-5-5",
                "tools": [{"name": "x", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "x"},
            },
            "forced tool use is not supported",
        ),
        ({"tools": [{"name": "x", "input_schema": {"type": "array"}}]}, "input_schema.type: Input should be 'object'"),
    ],
)
def test_the_checker_rejects_what_the_api_rejects(change: dict[str, Any], expected: str) -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body.update(change)
    body = {key: value for key, value in body.items() if value is not None}
    assert any(expected in problem for problem in messages_request_violations(body))


def test_the_server_answers_a_bad_body_with_the_apis_400(server: AnthropicServer, client: httpx.Client) -> None:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
    response = client.post(f"{server.base_url}/v1/messages", json=body, headers={"x-api-key": KEY})
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error" and payload["request_id"].startswith("req_")
    assert payload["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    assert response.headers["request-id"] == payload["request_id"]
    server.requests.clear()


def test_the_server_speaks_the_api_paths_and_auth(server: AnthropicServer, client: httpx.Client) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    missing = client.post(f"{server.base_url}/v1/messages", json=body)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    wrong_path = client.post(f"{server.base_url}/v1/complete", json=body, headers={"x-api-key": KEY})
    assert wrong_path.status_code == 404 and wrong_path.json()["error"]["type"] == "not_found_error"
    server.requests.clear()


def test_reply_shapes() -> None:
    message = json.loads(message_reply("hi", tool_input={"a": 1}, tool_name="t", thinking="hmm").body)
    assert message["type"] == "message" and message["role"] == "assistant" and message["id"].startswith("msg_")
    assert [block["type"] for block in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][2]["input"] == {"a": 1} and message["stop_reason"] == "tool_use"
    assert message["usage"].keys() >= {"input_tokens", "output_tokens", "cache_read_input_tokens"}
    refusal = json.loads(refusal_reply(category="bio").body)
    assert refusal["stop_reason"] == "refusal" and refusal["stop_details"]["type"] == "refusal"
    assert refusal["content"] == []
    limited = rate_limited(retry_after=2)
    assert dict(limited.headers)["retry-after"] == "2"
    assert json.loads(limited.body)["error"]["type"] == "rate_limit_error"
    assert overloaded().status == 529 and json.loads(overloaded().body)["error"]["type"] == "overloaded_error"
    assert json.loads(model_not_found("claude-x").body)["error"] == {
        "type": "not_found_error",
        "message": "model: claude-x",
    }
