"""The Gemini generateContent adapter end to end, against a loopback server speaking the real wire format.

Every request body is checked against PROVIDERS.md §4's field lists (camelCase names, the generationConfig keys,
one schema field at most, roles user/model) and each schema against its dialect's rules; the server rejects a
violating request with Gemini's own 400, so a bad body cannot pass silently.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx
import pytest

import robustprompt as rp
from robustprompt.adapters import Endpoint
from robustprompt.adapters.gemini import GeminiAdapter
from robustprompt.testing._gemini_server import (
    GeminiServer,
    blocked_prompt,
    context_too_long,
    generate_reply,
    invalid_api_key,
    mode_not_enabled,
    model_not_found,
    overloaded,
    permission_denied,
    rate_limited,
    schema_rejected,
    server_error,
    status_reply,
)
from robustprompt.testing._server import Reply
from tests.loopback import model_maker, server_fixture
from tests.models import Person, Review, Sentiment, classify_task
from tests.test_gemini_schema import json_schema_violations, openapi_schema_violations

KEY = "AIza-test-planted-4f2a9c"
# An alias Google keeps pointing at the current Flash: not in the catalog, so it has no retirement date to
# warn about and runs on the adapter's default profile.
MODEL = "gemini:gemini-flash-latest"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)

# ---------------------------------------------------------------- the request checker (PROVIDERS.md §4)

_TOP = frozenset({"contents", "systemInstruction", "generationConfig", "safetySettings", "tools", "toolConfig"})
_CONFIG = frozenset(
    {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed"}
    | {"presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "responseMimeType"}
    | {"responseSchema", "responseJsonSchema", "thinkingConfig"}
)
_CONTENT = frozenset({"role", "parts"})
_PART_DATA = frozenset({"text", "functionCall", "functionResponse", "inlineData", "fileData"})
_PART = _PART_DATA | {"thought", "thoughtSignature"}
_TOOL = frozenset({"functionDeclarations", "googleSearch", "codeExecution", "urlContext"})
_FUNCTION = frozenset({"name", "description", "parameters", "parametersJsonSchema"})
_CALLING_MODES = frozenset({"AUTO", "ANY", "NONE", "VALIDATED"})
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")


def gemini_request_violations(body: Any) -> list[str]:
    """What the real generateContent endpoint would reject in `body`, worded as its 400s are."""
    if not isinstance(body, Mapping):
        return ["Invalid JSON payload received. Expected an object."]
    found = _unknown(body, _TOP, "")
    found += _contents_violations(body.get("contents"))
    if "systemInstruction" in body:
        found += _content_violations(body["systemInstruction"], "system_instruction", role_required=False)
    config = body.get("generationConfig") or {}
    found += _unknown(config, _CONFIG, "generation_config") + _config_violations(config)
    declared = [f.get("name") for tool in body.get("tools") or () for f in tool.get("functionDeclarations") or ()]
    found += _tools_violations(body.get("tools") or [])
    found += _tool_config_violations(body.get("toolConfig") or {}, declared)
    if body.get("tools") and config.get("responseMimeType") == "application/json":
        found.append("Function calling with a response mime type: 'application/json' is unsupported")
    return found


def _unknown(node: Mapping[str, Any], allowed: frozenset[str], where: str) -> list[str]:
    at = f" at '{where}'" if where else ""
    return [
        f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.' for key in node.keys() - allowed
    ]


def _contents_violations(contents: Any) -> list[str]:
    if not isinstance(contents, list) or not contents:
        return ["* GenerateContentRequest.contents: contents is not specified"]
    return [v for i, content in enumerate(contents) for v in _content_violations(content, f"contents[{i}]")]


def _content_violations(content: Any, where: str, *, role_required: bool = True) -> list[str]:
    if not isinstance(content, Mapping):
        return [f"* GenerateContentRequest.{where}: must be an object"]
    found = _unknown(content, _CONTENT, where)
    if role_required and content.get("role") not in ("user", "model"):
        found.append(f"* GenerateContentRequest.{where}.role: Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return [*found, f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."]
    for j, part in enumerate(parts):
        found += _unknown(part, _PART, f"{where}.parts[{j}]")
        data = [key for key in _PART_DATA if part.get(key)]
        if len(data) != 1:
            found.append(
                f"* GenerateContentRequest.{where}.parts[{j}].data: required oneof field 'data' must have one "
                "initialized field"
            )
    return found


def _config_violations(config: Mapping[str, Any]) -> list[str]:
    found = []
    where = "* GenerateContentRequest.generation_config"
    if "responseSchema" in config and "responseJsonSchema" in config:
        found.append(f"{where}: response_schema and response_json_schema cannot both be set")
    if ("responseSchema" in config or "responseJsonSchema" in config) and (
        config.get("responseMimeType") != "application/json"
    ):
        found.append(f"{where}.response_mime_type: must be application/json to use a response schema")
    if config.get("responseMimeType", "text/plain") not in ("text/plain", "application/json"):
        found.append(f"{where}.response_mime_type: unsupported MIME type {config['responseMimeType']!r}")
    if "responseJsonSchema" in config:
        found += json_schema_violations(config["responseJsonSchema"])
    if "responseSchema" in config:
        found += openapi_schema_violations(config["responseSchema"])
    temperature = config.get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        found.append(f"{where}.temperature: must be between 0 and 2")
    for key in ("maxOutputTokens", "seed"):
        if key in config and (not isinstance(config[key], int) or isinstance(config[key], bool)):
            found.append(f"{where}.{key}: must be an integer")
    if config.get("maxOutputTokens", 1) < 1:
        found.append(f"{where}.max_output_tokens: must be positive")
    thinking = config.get("thinkingConfig") or {}
    if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        found.append(f"{where}.thinking_config: thinking_budget and thinking_level are mutually exclusive")
    return found


def _tools_violations(tools: list[Any]) -> list[str]:
    found = []
    for i, tool in enumerate(tools):
        found += _unknown(tool, _TOOL, f"tools[{i}]")
        for j, function in enumerate(tool.get("functionDeclarations") or ()):
            where = f"tools[{i}].function_declarations[{j}]"
            found += _unknown(function, _FUNCTION, where)
            if not _FUNCTION_NAME.fullmatch(str(function.get("name", ""))):
                found.append(f"* GenerateContentRequest.{where}.name: Invalid function name {function.get('name')!r}")
            if "parameters" in function and "parametersJsonSchema" in function:
                found.append(f"* GenerateContentRequest.{where}: set parameters or parameters_json_schema, not both")
            if "parameters" in function:
                parameters = function["parameters"]
                found += openapi_schema_violations(parameters, f"{where}.parameters")
                if parameters.get("type") != "OBJECT":
                    found.append(f"* GenerateContentRequest.{where}.parameters.type: must be OBJECT")
    return found


def _tool_config_violations(tool_config: Mapping[str, Any], declared: list[Any]) -> list[str]:
    found = _unknown(tool_config, frozenset({"functionCallingConfig"}), "tool_config")
    calling = tool_config.get("functionCallingConfig") or {}
    where = "* GenerateContentRequest.tool_config.function_calling_config"
    found += _unknown(calling, frozenset({"mode", "allowedFunctionNames"}), "tool_config.function_calling_config")
    if "mode" in calling and calling["mode"] not in _CALLING_MODES:
        found.append(f"{where}.mode: Invalid value {calling['mode']!r}")
    names = calling.get("allowedFunctionNames")
    if names is not None and calling.get("mode") not in ("ANY", "VALIDATED"):
        found.append(f"{where}.allowed_function_names: only allowed with mode ANY or VALIDATED")
    found += [
        f"{where}.allowed_function_names: function {n!r} is not declared" for n in names or () if n not in declared
    ]
    return found


# ---------------------------------------------------------------- fixtures


def _no_key_in_the_url(server: GeminiServer) -> None:
    assert all(received.query == "" for received in server.requests)


server = server_fixture(lambda: GeminiServer(api_key=KEY, check=gemini_request_violations), after=_no_key_in_the_url)
make = model_maker(MODEL, api_key=KEY, temperature=0, max_output_tokens=200)


def person_task() -> rp.Task[str, Person]:
    return rp.Task("person", input=str, output=Person, instructions="Extract the person.")


# ---------------------------------------------------------------- output modes


def test_success_with_native_json_schema(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(generate_reply('{"label":"positive"}', prompt_tokens=42, candidates_tokens=4))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(42, 4)
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    (req,) = server.requests
    assert req.path == "/v1beta/models/gemini-flash-latest:generateContent"
    assert req.headers["x-goog-api-key"] == KEY and "authorization" not in req.headers
    body = req.body
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user", "model", "user"]
    assert body["systemInstruction"]["parts"][0]["text"].startswith("Classify the sentiment")
    config = body["generationConfig"]
    assert config["maxOutputTokens"] == 200 and config["temperature"] == 0
    assert config["responseMimeType"] == "application/json" and "responseSchema" not in config
    assert config["responseJsonSchema"]["properties"]["label"]["enum"] == ["positive", "negative", "neutral"]


def test_thoughts_are_skipped_in_the_answer_and_billed_as_output(server: GeminiServer, client: httpx.Client) -> None:
    reply = generate_reply('{"label":"negative"}', thought="The review sounds unhappy.", thoughts_tokens=30)
    server.enqueue(reply)
    run = classify_task().run(Review(text="bad"), model=make(server, client))
    assert run.output == Sentiment(label="negative")
    assert run.attempts[0].raw == '{"label":"negative"}'
    assert run.usage == rp.Usage(10, 5 + 30)


def test_optional_fields_may_be_left_out(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(generate_reply('{"name":"Ann","age":31}'))
    assert person_task()("Ann is 31", model=make(server, client)) == Person(name="Ann", age=31)
    schema = server.requests[0].body["generationConfig"]["responseJsonSchema"]
    assert schema["required"] == ["name", "age"]


def test_tool_call_mode_forces_the_function_with_openapi_parameters(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(generate_reply(None, function_args={"label": "positive"}))
    run = classify_task().run(
        Review(text="ok"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.TOOL_CALL)
    )
    assert run.output == Sentiment(label="positive")
    body = server.requests[0].body
    (function,) = body["tools"][0]["functionDeclarations"]
    assert function["name"] == "classify"
    assert function["parameters"]["properties"]["label"] == {
        "enum": ["positive", "negative", "neutral"],
        "type": "STRING",
    }
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["classify"]}}
    assert "responseMimeType" not in body["generationConfig"]


def test_json_object_mode_sets_only_the_mime_type(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(generate_reply('{"label":"neutral"}'))
    classify_task().run(Review(text="ok"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.JSON_OBJECT))
    config = server.requests[0].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in config and "responseSchema" not in config
    assert "JSON Schema" in server.requests[0].body["systemInstruction"]["parts"][0]["text"]


def test_messy_output_in_prompted_mode_is_repaired(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(generate_reply("Here you go:\n```json\n{'label': 'Negative',}\n```"))
    run = classify_task().run(
        Review(text="bad"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.PROMPTED)
    )
    assert run.output == Sentiment(label="negative")
    assert run.attempts[0].repairs
    assert "responseMimeType" not in server.requests[0].body["generationConfig"]


def test_a_model_without_response_json_schema_starts_with_the_function_call(
    server: GeminiServer, client: httpx.Client
) -> None:
    server.enqueue(generate_reply(None, function_args={"label": "neutral"}, model_version="gemini-2.0-flash"))
    run = classify_task().run(Review(text="ok"), model=make(server, client, name="gemini:gemini-2.0-flash"))
    assert run.mode is rp.OutputMode.TOOL_CALL
    assert "tools" in server.requests[0].body


def test_gemini_3_keeps_its_default_temperature(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(generate_reply('{"label":"positive"}', model_version="gemini-3.1-pro-preview"))
    classify_task().run(Review(text="x"), model=make(server, client, name="gemini:gemini-3.1-pro-preview", seed=7))
    config = server.requests[0].body["generationConfig"]
    assert "temperature" not in config and config["seed"] == 7


def test_gemma_gets_its_instructions_in_the_first_user_turn(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(generate_reply('{"label":"positive"}', model_version="gemma-3-27b-it"))
    run = classify_task().run(Review(text="x"), model=make(server, client, name="gemini:gemma-3-27b-it"))
    assert run.mode is rp.OutputMode.PROMPTED
    body = server.requests[0].body
    assert "systemInstruction" not in body and "responseMimeType" not in body["generationConfig"]
    first = body["contents"][0]["parts"]
    assert first[0]["text"].startswith("Classify the sentiment") and first[1]["text"].startswith("Input:")


# ---------------------------------------------------------------- re-asks, refusals, truncation


def test_invalid_answer_is_reasked_once_with_the_errors(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(generate_reply('{"label":"happy"}'), generate_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    contents = server.requests[1].body["contents"]
    assert contents[-2] == {"role": "model", "parts": [{"text": '{"label":"happy"}'}]}
    assert contents[-1]["role"] == "user" and "happy" in contents[-1]["parts"][0]["text"]


def test_truncation_is_reasked(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(
        generate_reply('{"name":"Ann","ag', finish_reason="MAX_TOKENS"),
        generate_reply('{"name":"Ann","age":31}'),
    )
    run = person_task().run("Ann is 31", model=make(server, client), policy=FAST)
    assert run.output == Person(name="Ann", age=31)
    assert run.attempts[0].finish_reason == "length"
    assert "cut off" in server.requests[1].body["contents"][-1]["parts"][0]["text"]


def test_thinking_that_spends_the_whole_budget_is_a_truncation(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(
        generate_reply(None, finish_reason="MAX_TOKENS", candidates_tokens=0, thoughts_tokens=200),
        generate_reply('{"label":"positive"}'),
    )
    run = classify_task().run(Review(text="x"), model=make(server, client, name="gemini:gemini-3.5-flash"), policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].finish_reason == "length" and run.attempts[0].usage == rp.Usage(10, 200)
    # The empty answer has no turn to go in: the input and the feedback share the last user turn.
    assert [len(c["parts"]) for c in server.requests[1].body["contents"]][-2:] == [1, 2]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [(generate_reply(None, finish_reason="SAFETY"), "stopped (SAFETY)"), (blocked_prompt("OTHER"), "blocked (OTHER)")],
)
def test_refusal(server: GeminiServer, client: httpx.Client, reply: Reply, reason: str) -> None:
    server.enqueue(reply)
    with pytest.raises(rp.RefusalError, match=re.escape(reason)) as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.run is not None and info.value.run.attempts[0].finish_reason == "refusal"
    assert len(server.requests) == 1


# ---------------------------------------------------------------- errors


def test_429_waits_for_the_retry_delay_then_succeeds(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(rate_limited(retry_delay=0.3), generate_reply('{"label":"positive"}'))
    start = time.monotonic()
    run = classify_task().run(Review(text="great"), model=make(server, client), policy=FAST)
    assert time.monotonic() - start >= 0.3
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].transport_errors[0].startswith("RateLimitError")


def test_a_daily_quota_is_not_retried(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(rate_limited(retry_delay=0.01, per_day=True), generate_reply('{"label":"negative"}'))
    with pytest.raises(rp.QuotaExceededError, match="exceeded your current quota") as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.code == "RESOURCE_EXHAUSTED"
    assert len(server.requests) == 1


def test_overload_and_server_errors_are_retried(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(overloaded(), server_error(500), generate_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert [e.split(":")[0] for e in run.attempts[0].transport_errors] == ["OverloadedError", "ServerError"]


def test_a_deadline_exceeded_is_retried(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(server_error(504), generate_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.attempts[0].transport_errors[0].startswith("ServerError")


def test_a_cut_off_body_is_retried(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(
        replace(generate_reply('{"label":"positive"}'), fault="truncate"), generate_reply('{"label":"neutral"}')
    )
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="neutral")
    assert run.attempts[0].transport_errors[0].startswith("ProviderConnectionError")


def test_model_not_found_is_permanent(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(model_not_found("gemini-1.5-pro"), generate_reply('{"label":"negative"}'))
    with pytest.raises(rp.ModelNotFoundError, match="is not found for API version v1beta") as info:
        classify_task().run(Review(text="x"), model=make(server, client, name="gemini:gemini-1.5-pro"), policy=FAST)
    assert info.value.status == 404
    assert len(server.requests) == 1


def test_context_too_long_is_permanent(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(context_too_long(1_200_293))
    with pytest.raises(rp.ContextLengthError, match="exceeds the maximum number of tokens"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1


def test_schema_rejected_downgrades_to_the_function_call(server: GeminiServer, client: httpx.Client) -> None:
    server.enqueue(schema_rejected(), generate_reply(None, function_args={"label": "positive"}))
    run = classify_task().run(
        Review(text="x"), model=make(server, client, name="gemini:gemini-flash-lite-latest"), policy=FAST
    )
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.TOOL_CALL]
    assert "tools" in server.requests[1].body


def test_json_mode_not_enabled_downgrades_to_prompted(server: GeminiServer, client: httpx.Client) -> None:
    profile = rp.ModelProfile("gemini", "gemma-3-12b-it", modes=(rp.OutputMode.JSON_OBJECT, rp.OutputMode.PROMPTED))
    server.enqueue(mode_not_enabled("gemma-3-12b-it"), generate_reply('{"label":"positive"}'))
    model = make(server, client, name="gemini:gemma-3-12b-it", profile=profile)
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_OBJECT, rp.OutputMode.PROMPTED]


def test_a_body_the_checker_rejects_gets_geminis_400_and_downgrades() -> None:
    # The same path as a real rejection: the server answers the checker's findings as Gemini would.
    def reject_schemas(body: Any) -> list[str]:
        config = body.get("generationConfig") or {}
        return json_schema_violations({"const": 1}) if "responseJsonSchema" in config else []

    with GeminiServer(api_key=KEY, check=reject_schemas) as srv, httpx.Client() as http:
        srv.enqueue(generate_reply(None, function_args={"label": "positive"}))
        run = classify_task().run(Review(text="x"), model=make(srv, http, name="gemini:gemini-3-flash-preview"))
    assert run.attempts[0].mode is rp.OutputMode.JSON_SCHEMA
    assert "keyword 'const' is not supported" in run.attempts[0].errors[0]
    assert run.output == Sentiment(label="positive")


@pytest.mark.parametrize(("key", "reply"), [("AIza-wrong-planted-777", None), (KEY, permission_denied())])
def test_auth_errors_never_show_the_key(
    server: GeminiServer, client: httpx.Client, key: str, reply: Reply | None
) -> None:
    if reply is not None:  # a valid key without access to the API; a wrong one the server turns away itself
        server.enqueue(reply)
    model = rp.model(MODEL, base_url=server.base_url, api_key=key, http_client=client)
    with pytest.raises(rp.AuthError) as info:
        classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert key not in str(info.value) and key not in repr(info.value.run)
    assert len(server.requests) == 1


def test_a_wrong_base_url_is_permanent_not_a_transport_fault(client: httpx.Client) -> None:
    with GeminiServer(api_key=KEY) as srv:
        model = rp.model(MODEL, base_url=f"{srv.base_url}/v1beta", api_key=KEY, http_client=client)
        with pytest.raises(rp.BadRequestError, match="HTTP 404"):
            classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert len(srv.requests) == 1


def test_the_key_may_come_from_google_api_key(
    server: GeminiServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    server.enqueue(generate_reply('{"label":"positive"}'))
    model = rp.model(MODEL, base_url=server.base_url, http_client=client)
    assert classify_task()(Review(text="x"), model=model) == Sentiment(label="positive")
    assert server.requests[0].headers["x-goog-api-key"] == KEY


def test_async_call_through_the_server(server: GeminiServer) -> None:
    server.enqueue(generate_reply('{"label":"happy"}'), generate_reply('{"label":"neutral"}'))

    async def go() -> rp.Run[Sentiment]:
        async with httpx.AsyncClient() as aclient:
            model = rp.model(MODEL, base_url=server.base_url, api_key=KEY, async_http_client=aclient)
            return await classify_task().arun(Review(text="meh"), model=model, policy=FAST)

    run = asyncio.run(go())
    assert run.output == Sentiment(label="neutral")
    assert len(run.attempts) == 2


# ---------------------------------------------------------------- the adapter alone


PROFILE = rp.ModelProfile("gemini", "gemini-2.5-flash")


def read(reply: Reply) -> rp.Completion:
    return GeminiAdapter().read(reply.status, dict(reply.headers), reply.body, PROFILE)


@pytest.mark.parametrize(
    ("reply", "error", "retryable"),
    [
        (invalid_api_key(), rp.AuthError, False),
        (permission_denied(), rp.AuthError, False),
        (model_not_found("gemini-2.5-flash"), rp.ModelNotFoundError, False),
        (rate_limited(), rp.RateLimitError, True),
        (rate_limited(per_day=True), rp.QuotaExceededError, False),
        (overloaded(), rp.OverloadedError, True),
        (server_error(500), rp.ServerError, True),
        (server_error(504), rp.ServerError, True),
        (context_too_long(2_000_000), rp.ContextLengthError, False),
        (schema_rejected(), rp.SchemaRejectedError, False),
        (mode_not_enabled("gemma-3-27b-it"), rp.SchemaRejectedError, False),
        (
            status_reply(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
            rp.BadRequestError,
            False,
        ),
    ],
)
def test_error_mapping(reply: Reply, error: type[rp.ProviderError], retryable: bool) -> None:
    with pytest.raises(error) as info:
        read(reply)
    assert type(info.value) is error and info.value.retryable is retryable
    assert info.value.provider == "gemini" and info.value.status == reply.status


def test_retry_info_sets_retry_after() -> None:
    with pytest.raises(rp.RateLimitError) as info:
        read(rate_limited(retry_delay=17))
    assert info.value.retry_after == 17.0


def test_a_response_without_candidates_or_block_reason_is_an_error() -> None:
    with pytest.raises(rp.BadRequestError, match="no candidates"):
        read(Reply(200, b'{"usageMetadata": {"promptTokenCount": 3}}'))


def test_an_unreadable_success_body_is_a_transport_fault() -> None:
    with pytest.raises(rp.ProviderConnectionError):
        read(Reply(200, b'{"candidates": [{"content"'))


@pytest.mark.parametrize(
    ("reason", "finish"), [("STOP", "stop"), ("MAX_TOKENS", "length"), ("RECITATION", "refusal"), ("LANGUAGE", "other")]
)
def test_finish_reasons_are_normalised(reason: str, finish: str) -> None:
    completion = read(generate_reply("{}", finish_reason=reason))
    assert completion.finish_reason == finish
    assert completion.model_id == "gemini-2.5-flash"


def test_the_request_carries_the_key_in_a_header_only() -> None:
    prompt = rp.Prompt("Be brief.", (rp.Message("user", "hi"),), rp.OutputSpec("out", {"type": "object"}))
    call = GeminiAdapter().prepare(prompt, PROFILE, rp.Settings(), Endpoint("https://example.test", KEY))
    assert call.url == "https://example.test/v1beta/models/gemini-2.5-flash:generateContent"
    assert call.headers["x-goog-api-key"] == KEY
    assert KEY not in repr(call)


def test_the_checker_catches_what_gemini_rejects() -> None:
    body = {
        "contents": [{"role": "assistant", "parts": [{"text": "hi"}]}],
        "generation_config": {},
        "generationConfig": {"responseSchema": {"type": "OBJECT"}, "responseJsonSchema": {"type": "object"}},
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["g"]}},
    }
    found = "\n".join(gemini_request_violations(body))
    for expected in (
        'Unknown name "generation_config"',
        "valid role: user, model",
        "cannot both be set",
        "must be application/json",
        "should be non-empty for OBJECT type",
        "only allowed with mode ANY",
        "'g' is not declared",
    ):
        assert expected in found


def test_catalog_replacements_are_in_the_catalog() -> None:
    from robustprompt import _catalog

    profiles = [p for p in _catalog.all_profiles() if p.provider == "gemini"]
    assert {p.model_id for p in profiles} >= {"gemini-2.5-flash", "gemini-3.1-pro-preview", "gemini-2.0-flash"}
    for profile in profiles:
        assert profile.replacement is None or _catalog.lookup(profile.replacement) is not None
        assert rp.OutputMode.PROMPTED in profile.modes
