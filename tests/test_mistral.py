"""The Mistral adapter end to end, against a loopback server speaking Mistral's Chat Completions wire format.

Every request body is checked against the field lists of Mistral's request models (its SDK's
`ChatCompletionRequest`, `ResponseFormat`, `JSONSchema`, `Tool`, `Function`, `ToolChoice`; the API refuses unknown
fields with a 422) and strict schemas against OpenAI's strict rules, which Mistral's strict mode accepts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

import robustprompt as rp
from robustprompt.adapters.mistral import MistralAdapter
from robustprompt.testing._mistral_server import (
    MistralServer,
    chat_reply,
    error_reply,
    invalid_model,
    rate_limited,
    schema_rejected,
    server_error,
    validation_error,
)
from tests.loopback import model_maker, server_fixture
from tests.models import Person, Review, Sentiment, classify_task
from tests.spec_check import strict_violations

KEY = "mistral-test-planted-7c3b"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)

# ---------------------------------------------------------------- the request check

_TOP: dict[str, Any] = {
    "model": str,
    "messages": list,
    "temperature": (int, float),
    "top_p": (int, float),
    "max_tokens": int,
    "stream": bool,
    "stop": (str, list),
    "random_seed": int,
    "response_format": dict,
    "tools": list,
    "tool_choice": (str, dict),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "n": int,
    "prediction": dict,
    "parallel_tool_calls": bool,
    "safe_prompt": bool,
}
_MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "prefix"},
    "tool": {"role", "content", "tool_call_id", "name"},
}
_TOOL_CHOICES = {"auto", "none", "any", "required"}


def chat_request_violations(body: Any) -> list[str]:
    """What Mistral would refuse in a chat body, as "body.path: message" (the server's 422 detail)."""
    if not isinstance(body, Mapping):
        return ["body: Input should be a valid dictionary"]
    found = [f"body.{name}: Field required" for name in ("model", "messages") if name not in body]
    for name, value in body.items():
        if name not in _TOP:
            found.append(f"body.{name}: Extra inputs are not permitted")
        elif not isinstance(value, _TOP[name]) or (_TOP[name] is int and isinstance(value, bool)):
            found.append(f"body.{name}: Input should be of type {_TOP[name]}")
    for i, message in enumerate(body.get("messages") or ()):
        found += _message_violations(f"body.messages.{i}", message)
    if isinstance(body.get("response_format"), Mapping):
        found += _response_format_violations(body["response_format"])
    for i, tool in enumerate(body.get("tools") or ()):
        found += _tool_violations(f"body.tools.{i}", tool)
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in _TOOL_CHOICES:
        found.append(f"body.tool_choice: Input should be one of {sorted(_TOOL_CHOICES)}")
    if isinstance(choice, Mapping):
        found += _extra("body.tool_choice", choice, {"type", "function"})
        found += _extra("body.tool_choice.function", choice.get("function") or {}, {"name"})
    return found


def _extra(where: str, obj: Mapping[str, Any], allowed: set[str]) -> list[str]:
    return [f"{where}.{name}: Extra inputs are not permitted" for name in obj if name not in allowed]


def _message_violations(where: str, message: Any) -> list[str]:
    role = message.get("role") if isinstance(message, Mapping) else None
    if role not in _MESSAGE_FIELDS:
        return [f"{where}.role: Input tag {role!r} does not match any of the expected tags"]
    found = _extra(where, message, _MESSAGE_FIELDS[role])
    if not isinstance(message.get("content"), str):
        found.append(f"{where}.content: Input should be a valid string")
    return found


def _response_format_violations(fmt: Mapping[str, Any]) -> list[str]:
    found = _extra("body.response_format", fmt, {"type", "json_schema"})
    if fmt.get("type") not in ("text", "json_object", "json_schema"):
        found.append("body.response_format.type: Input should be 'text', 'json_object' or 'json_schema'")
    spec = fmt.get("json_schema")
    if fmt.get("type") == "json_schema":
        if not isinstance(spec, Mapping):
            return [*found, "body.response_format.json_schema: Field required"]
        found += _extra("body.response_format.json_schema", spec, {"name", "schema", "description", "strict"})
        found += [f"body.response_format.json_schema.{n}: Field required" for n in ("name", "schema") if n not in spec]
        found += _strict("response_format", spec, spec.get("schema"))
    return found


def _tool_violations(where: str, tool: Any) -> list[str]:
    if not isinstance(tool, Mapping) or not isinstance(tool.get("function"), Mapping):
        return [f"{where}.function: Field required"]
    function = tool["function"]
    found = _extra(where, tool, {"type", "function"})
    found += _extra(f"{where}.function", function, {"name", "parameters", "description", "strict"})
    found += [f"{where}.function.{n}: Field required" for n in ("name", "parameters") if n not in function]
    return found + _strict("function", function, function.get("parameters"))


def _strict(what: str, spec: Mapping[str, Any], schema: Any) -> list[str]:
    if spec.get("strict") is not True:
        return []
    problems = strict_violations(schema) if isinstance(schema, Mapping) else ["schema must be an object"]
    return [f"Invalid schema for {what} '{spec.get('name')}': " + "; ".join(problems)] if problems else []


# ---------------------------------------------------------------- fixtures


server = server_fixture(lambda: MistralServer(api_key=KEY, check=chat_request_violations))
make = model_maker("mistral:mistral-small-2506", api_key=KEY, temperature=0, max_output_tokens=200, seed=3)


# ---------------------------------------------------------------- output modes


def test_native_schema_mode(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"positive"}', prompt_tokens=44, completion_tokens=5))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(44, 5)
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    (req,) = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    body = req.body
    assert body["max_tokens"] == 200 and body["random_seed"] == 3 and body["temperature"] == 0
    assert "max_completion_tokens" not in body and "seed" not in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "classify" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    assert body["messages"][0]["role"] == "system"


def test_tool_call_mode(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply(None, tool_arguments='{"label":"negative"}', tool_name="classify"))
    policy = rp.Policy(mode=rp.OutputMode.TOOL_CALL)
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=policy)
    assert run.output == Sentiment(label="negative")
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "classify"}}
    assert body["tools"][0]["function"]["strict"] is True


def test_json_mode_puts_the_schema_in_the_prompt(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"neutral"}'))
    policy = rp.Policy(mode=rp.OutputMode.JSON_OBJECT)
    classify_task().run(Review(text="ok"), model=make(server, client), policy=policy)
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_object"}
    assert "JSON Schema" in body["messages"][0]["content"]  # Mistral's docs: JSON mode must be asked for in words


def test_prompted_mode_repairs_prose(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply("Here:\n```json\n{'label': 'Negative',}\n```"))
    policy = rp.Policy(mode=rp.OutputMode.PROMPTED)
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=policy)
    assert run.output == Sentiment(label="negative")
    assert "response_format" not in server.requests[0].body


def test_optional_fields_come_back_as_null_and_defaults_apply(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"name":"Ann","age":31,"nickname":null,"tags":null}'))
    task: rp.Task[str, Person] = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    assert task("Ann is 31", model=make(server, client)) == Person(name="Ann", age=31)


# ---------------------------------------------------------------- answers


def test_a_reasoning_models_chunks_give_only_the_text(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"positive"}', thinking="They loved it.", model="magistral-medium-2509"))
    run = classify_task().run(Review(text="great"), model=make(server, client, name="mistral:magistral-medium-2509"))
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].raw == '{"label":"positive"}'


@pytest.mark.parametrize("reason", ["length", "model_length"])
def test_truncation_is_reasked(server: MistralServer, client: httpx.Client, reason: str) -> None:
    task: rp.Task[str, Person] = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    server.enqueue(
        chat_reply('{"name":"Ann","ag', finish_reason=reason),
        chat_reply('{"name":"Ann","age":31,"nickname":null,"tags":[]}'),
    )
    run = task.run("Ann is 31", model=make(server, client), policy=FAST)
    assert run.output == Person(name="Ann", age=31)
    assert run.attempts[0].finish_reason == "length"
    assert "cut off" in server.requests[1].body["messages"][-1]["content"]


def test_invalid_answer_is_reasked(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"happy"}'), chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert server.requests[1].body["messages"][-2] == {"role": "assistant", "content": '{"label":"happy"}'}


# ---------------------------------------------------------------- errors


def test_429_waits_for_retry_after(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(rate_limited(retry_after=0.3), chat_reply('{"label":"positive"}'))
    start = time.monotonic()
    run = classify_task().run(Review(text="great"), model=make(server, client), policy=FAST)
    assert time.monotonic() - start >= 0.3
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].transport_errors[0].startswith("RateLimitError")


def test_the_gateways_bare_rate_limit_message_is_read(server: MistralServer, client: httpx.Client) -> None:
    from robustprompt.testing._server import json_reply

    server.enqueue(json_reply(429, {"message": "Requests rate limit exceeded"}), chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client), policy=FAST)
    assert "Requests rate limit exceeded" in run.attempts[0].transport_errors[0]


def test_5xx_is_retried(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(server_error(500), server_error(503), chat_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert [e.split(":")[0] for e in run.attempts[0].transport_errors] == ["ServerError", "OverloadedError"]


def test_a_generation_that_failed_mid_answer_is_a_server_error_and_retried(
    server: MistralServer, client: httpx.Client
) -> None:
    server.enqueue(chat_reply('{"label":"pos', finish_reason="error"), chat_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")  # the cut answer was never read as one
    assert [e.split(":")[0] for e in run.attempts[0].transport_errors] == ["ServerError"]


def test_an_invalid_model_400_is_model_not_found_and_not_retried(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(invalid_model("mistral-small-2506"), chat_reply('{"label":"negative"}'))
    with pytest.raises(rp.ModelNotFoundError, match="Invalid model") as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.status == 400 and info.value.code == "1500"
    assert len(server.requests) == 1


def test_a_refused_schema_downgrades_to_a_tool_call(server: MistralServer, client: httpx.Client) -> None:
    server.enqueue(schema_rejected(), chat_reply(None, tool_arguments='{"label":"positive"}', tool_name="classify"))
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.TOOL_CALL]


def test_a_refused_tool_schema_downgrades_to_json_mode(server: MistralServer, client: httpx.Client) -> None:
    refused = error_reply(
        400,
        "Invalid tool schema: {'type': 'object'} is not valid under any of the given schemas",
        type="invalid_request_error",
    )
    server.enqueue(refused, chat_reply('{"label":"positive"}'))
    modes = (rp.OutputMode.TOOL_CALL, rp.OutputMode.JSON_OBJECT)
    model = make(server, client, profile=rp.ModelProfile("mistral", "mistral-small-2506", modes=modes))
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.TOOL_CALL, rp.OutputMode.JSON_OBJECT]


def test_a_wrong_key_is_an_auth_error_that_never_shows_the_key(server: MistralServer, client: httpx.Client) -> None:
    model = rp.model(
        "mistral:mistral-small-2506", base_url=server.base_url, api_key="mistral-wrong-planted-1", http_client=client
    )
    with pytest.raises(rp.AuthError, match="Unauthorized") as info:
        classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert "mistral-wrong-planted-1" not in str(info.value)
    assert "mistral-wrong-planted-1" not in repr(info.value.run)


def test_a_422_reads_fastapis_detail() -> None:
    reply = validation_error(["body", "store"], "Extra inputs are not permitted", value=False)
    adapter = MistralAdapter()
    with pytest.raises(rp.BadRequestError, match=r"body\.store: Extra inputs are not permitted"):
        adapter.read(reply.status, {}, reply.body, adapter.default_profile("m"))


def test_a_422_naming_the_response_format_is_a_schema_rejection() -> None:
    reply = validation_error(["body", "response_format", "json_schema", "schema"], "Field required", kind="missing")
    adapter = MistralAdapter()
    with pytest.raises(rp.SchemaRejectedError):
        adapter.read(reply.status, {}, reply.body, adapter.default_profile("m"))


def test_a_wrapped_validation_message_is_read() -> None:
    import json

    body = json.dumps(
        {
            "object": "error",
            "message": {
                "detail": [{"type": "float_type", "loc": ["body", "top_p"], "msg": "Input should be a valid number"}]
            },
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    ).encode()
    adapter = MistralAdapter()
    with pytest.raises(rp.BadRequestError, match=r"body\.top_p: Input should be a valid number"):
        adapter.read(422, {}, body, adapter.default_profile("m"))


def test_the_key_comes_from_mistral_api_key_and_no_openai_variable_redirects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai-proxy.invalid/v1")
    model = rp.model("mistral:mistral-small-2506")
    assert model.backend.base_url == "https://api.mistral.ai/v1"  # type: ignore[attr-defined]
    monkeypatch.delenv("MISTRAL_API_KEY")
    with pytest.raises(rp.ConfigError, match="MISTRAL_API_KEY"):
        rp.model("mistral:mistral-small-2506")


def test_unknown_models_get_mistral_defaults() -> None:
    profile = MistralAdapter().default_profile("ministral-8b-latest")
    assert profile.tokenizer == "estimate"
    assert profile.modes[0] is rp.OutputMode.JSON_SCHEMA
