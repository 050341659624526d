"""The Bedrock Converse adapter end to end, against a loopback server speaking the real wire format.

The server recomputes every SigV4 signature with botocore from the raw request and the test secret, and checks
every body against the field lists of PROVIDERS.md §6, botocore's own `bedrock-runtime` service model, and
Claude's structured-output schema rules; a violating request gets Bedrock's 400, so a bad body cannot pass.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import robustprompt as rp
from robustprompt._catalog import all_profiles
from robustprompt._profile import Settings
from robustprompt._prompt import Message, OutputMode, OutputSpec, Prompt
from robustprompt.adapters import Endpoint
from robustprompt.adapters.bedrock import BedrockAdapter
from robustprompt.testing._bedrock_server import (
    BedrockServer,
    access_denied,
    context_too_long,
    converse_reply,
    end_of_life,
    error_reply,
    internal_error,
    invalid_model_id,
    model_not_ready,
    model_timeout,
    needs_inference_profile,
    schema_rejected,
    service_unavailable,
    throttled,
    tool_choice_unsupported,
)
from robustprompt.testing._server import Reply
from tests.loopback import model_maker, server_fixture
from tests.models import Person, Review, Sentiment, classify_task
from tests.schema_shapes import Tree, random_models

KEY_ID = "AKIDROBUSTPROMPTTEST"
SECRET = "planted-secret-4f2a9c/never+shown"
TOKEN = "ABSKplanted-bedrock-api-key-9d1e"
REGION = "us-east-1"
CLAUDE = "bedrock:global.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "bedrock:amazon.nova-pro-v1:0"
LLAMA = "bedrock:us.meta.llama3-3-70b-instruct-v1:0"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)


# ---------------------------------------------------------------- the request checker (PROVIDERS.md §6)

_TOP = frozenset({"messages", "system", "inferenceConfig", "toolConfig", "outputConfig"})
_INFERENCE = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
_TOOL_SPEC = frozenset({"name", "description", "inputSchema", "strict"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Claude's structured-output subset (PROVIDERS.md §3, option A), checked independently of the transform.
_CLAUDE_KEYWORDS = frozenset(
    {"type", "anyOf", "allOf", "enum", "description", "title", "properties", "required", "additionalProperties"}
    | {"$defs", "$ref", "format", "items", "minItems"}
)
_CLAUDE_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)


def converse_request_violations(body: Any) -> list[str]:
    """Every way `body` breaks the Converse request rules, phrased like Bedrock's own messages."""
    if not isinstance(body, dict):
        return ["Malformed input request: the request body must be a JSON object"]
    found = [f"extraneous key [{key}] is not permitted" for key in sorted(body.keys() - _TOP)]
    found += _messages_violations(body.get("messages"))
    found += _text_blocks("system", body.get("system", [{"text": "-"}]))
    found += _inference_violations(body.get("inferenceConfig", {}))
    if "toolConfig" in body:
        found += _tool_violations(body["toolConfig"])
    if "outputConfig" in body:
        found += _output_violations(body["outputConfig"])
    return found + _service_model_violations(body)


def _messages_violations(messages: Any) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return ["Value at 'messages' failed to satisfy constraint: Member must not be null or empty"]
    found: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            found.append(f"Value at 'messages.{i + 1}.member' must have exactly the keys role and content")
            continue
        if message["role"] not in ("user", "assistant"):
            found.append(f"Value at 'messages.{i + 1}.member.role' must satisfy enum value set: [user, assistant]")
        found += _text_blocks(f"messages.{i + 1}.member.content", message["content"])
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if roles[:1] != ["user"]:
        found.append("A conversation must start with a user message.")
    if any(a == b for a, b in itertools.pairwise(roles)):
        found.append("A conversation must alternate between user and assistant roles.")
    if roles[-1:] != ["user"]:
        found.append("The conversation must end with a user message.")
    return found


def _text_blocks(where: str, blocks: Any) -> list[str]:
    if not isinstance(blocks, list) or not blocks:
        return [f"Value at '{where}' failed to satisfy constraint: Member must have length greater than or equal to 1"]
    return [
        f"Value at '{where}.{i + 1}.member' must be a single non-blank text block"
        for i, block in enumerate(blocks)
        if not isinstance(block, dict) or set(block) != {"text"} or not str(block["text"]).strip()
    ]


def _inference_violations(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return ["Value at 'inferenceConfig' must be an object"]
    found = [f"extraneous key [inferenceConfig.{key}] is not permitted" for key in sorted(config.keys() - _INFERENCE)]
    if "maxTokens" in config and not (isinstance(config["maxTokens"], int) and config["maxTokens"] >= 1):
        found.append("Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must be >= 1")
    if "temperature" in config and not 0 <= config["temperature"] <= 1:
        found.append("Value at 'inferenceConfig.temperature' failed to satisfy constraint: Member must be <= 1")
    return found


def _tool_violations(config: Any) -> list[str]:
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        return ["Value at 'toolConfig.tools' failed to satisfy constraint: Member must have length >= 1"]
    found = [
        f"extraneous key [toolConfig.{key}] is not permitted" for key in sorted(config.keys() - {"tools", "toolChoice"})
    ]
    names = []
    for i, tool in enumerate(tools):
        spec = tool.get("toolSpec") if isinstance(tool, dict) and set(tool) == {"toolSpec"} else None
        if not isinstance(spec, dict) or not {"name", "inputSchema"} <= spec.keys() <= _TOOL_SPEC:
            found.append(f"Value at 'toolConfig.tools.{i + 1}.member.toolSpec' is malformed")
            continue
        names.append(spec["name"])
        if not _TOOL_NAME.fullmatch(str(spec["name"])):
            found.append(f"Value at 'toolConfig.tools.{i + 1}.member.toolSpec.name' must match [a-zA-Z0-9_-]+")
        wrapper = spec["inputSchema"]
        schema = wrapper.get("json") if isinstance(wrapper, dict) and set(wrapper) == {"json"} else None
        if not isinstance(schema, dict) or schema.get("type") != "object":
            found.append(f"The value at toolConfig.tools.{i}.toolSpec.inputSchema.json.type must be object.")
    choice = config.get("toolChoice", {"auto": {}})
    if not isinstance(choice, dict) or len(choice) != 1 or not choice.keys() <= {"auto", "any", "tool"}:
        found.append("Value at 'toolConfig.toolChoice' must set exactly one of auto, any, tool")
    elif "tool" in choice and (set(choice["tool"]) != {"name"} or choice["tool"]["name"] not in names):
        found.append("Value at 'toolConfig.toolChoice.tool' must name one of toolConfig.tools")
    return found


def _output_violations(config: Any) -> list[str]:
    text_format = config.get("textFormat") if isinstance(config, dict) and set(config) == {"textFormat"} else None
    structure = text_format.get("structure") if isinstance(text_format, dict) else None
    if text_format is None or set(text_format) != {"type", "structure"} or text_format["type"] != "json_schema":
        return ["Value at 'outputConfig.textFormat' must be {type: json_schema, structure}"]
    definition = (
        structure.get("jsonSchema") if isinstance(structure, dict) and set(structure) == {"jsonSchema"} else None
    )
    if not isinstance(definition, dict) or not {"schema"} <= definition.keys() <= {"schema", "name", "description"}:
        return ["Value at 'outputConfig.textFormat.structure.jsonSchema' is malformed"]
    if not isinstance(definition["schema"], str):  # the schema is a serialised string, not an object
        return ["Value at 'outputConfig.textFormat.structure.jsonSchema.schema' must be a string"]
    try:
        schema = json.loads(definition["schema"])
        Draft202012Validator.check_schema(schema)
    except Exception as exc:
        return [f"The provided JSON schema is invalid: {exc}"]
    return [
        f"The model returned the following errors: output_config.format.schema{p}" for p in _claude_problems(schema, "")
    ]


def _claude_problems(node: Any, path: str) -> Iterator[str]:
    if not isinstance(node, dict):
        return
    for key in sorted(node.keys() - _CLAUDE_KEYWORDS):
        yield f"{path}.{key}: Extra inputs are not permitted"
    kind = node.get("type")
    if (kind == "object" or (isinstance(kind, list) and "object" in kind)) and node.get(
        "additionalProperties"
    ) is not False:
        yield f"{path}: For 'object' type, 'additionalProperties' must be explicitly set to false"
    if node.get("minItems", 0) not in (0, 1):
        yield f"{path}.minItems: only 0 or 1 are supported"
    if "format" in node and node["format"] not in _CLAUDE_FORMATS:
        yield f"{path}.format: '{node['format']}' is not supported"
    for key in ("properties", "$defs"):
        for name, sub in node.get(key, {}).items():
            yield from _claude_problems(sub, f"{path}.{key}.{name}")
    for i, sub in enumerate(node.get("anyOf", []) + node.get("allOf", [])):
        yield from _claude_problems(sub, f"{path}.anyOf.{i}")
    yield from _claude_problems(node.get("items"), f"{path}.items")


@functools.cache
def _converse_shape() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("Converse").input_shape


def _service_model_violations(body: dict[str, Any]) -> list[str]:
    """The request against botocore's bedrock-runtime model: types, enums, lengths and unknown members."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate({"modelId": "m", **body}, _converse_shape())
    return [report.generate_report()] if report.has_errors() else []


# ---------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test credentials only: no profile, config file or instance metadata can leak in."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", REGION)


def _no_secrets(server: BedrockServer) -> None:
    for received in server.requests:
        assert SECRET not in repr(received)


server = server_fixture(
    lambda: BedrockServer(
        access_key_id=KEY_ID, secret_access_key=SECRET, region=REGION, check=converse_request_violations
    ),
    after=_no_secrets,
)
keyed_server = server_fixture(
    lambda: BedrockServer(bearer_token=TOKEN, region=REGION, check=converse_request_violations),
    after=_no_secrets,
    name="keyed_server",
)
make = model_maker(CLAUDE, temperature=0, max_output_tokens=200)


def _prompt(mode: OutputMode = OutputMode.PROMPTED) -> Prompt:
    return Prompt(
        "Classify.", (Message("user", "Input:\n{}"),), OutputSpec("classify", Sentiment.model_json_schema()), mode
    )


# ---------------------------------------------------------------- success per mode


def test_native_json_schema_signed_with_sigv4(server: BedrockServer, client: httpx.Client) -> None:
    server.enqueue(converse_reply('{"label":"positive"}', input_tokens=42, output_tokens=4))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(42, 4)
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    (req,) = server.requests
    assert req.path == "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert req.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert f"/{REGION}/bedrock/aws4_request" in req.headers["authorization"]
    body = req.body
    assert body["system"][0]["text"].startswith("Classify the sentiment")
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert body["inferenceConfig"] == {"maxTokens": 200, "temperature": 0}
    fmt = body["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema"
    schema = json.loads(fmt["structure"]["jsonSchema"]["schema"])  # a string on the wire
    assert schema["additionalProperties"] is False
    assert fmt["structure"]["jsonSchema"]["name"] == "classify"


def test_constraints_claude_cannot_decode_move_into_descriptions(server: BedrockServer, client: httpx.Client) -> None:
    server.enqueue(converse_reply('{"name":"Ann","age":31}'))
    task = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    assert task("Ann is 31", model=make(server, client)) == Person(name="Ann", age=31)
    schema = json.loads(server.requests[0].body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"])
    age = schema["properties"]["age"]
    assert "minimum" not in age and "maximum" not in age
    assert "minimum: 0" in age["description"] and "maximum: 150" in age["description"]


def test_forced_tool_call_on_nova(server: BedrockServer, client: httpx.Client) -> None:
    server.enqueue(converse_reply(None, tool_input={"label": "negative"}, tool_name="classify", stop_reason="tool_use"))
    run = classify_task().run(Review(text="bad"), model=make(server, client, NOVA))
    assert run.output == Sentiment(label="negative")
    assert run.mode is rp.OutputMode.TOOL_CALL
    assert run.attempts[0].finish_reason == "stop"
    tool_config = server.requests[0].body["toolConfig"]
    assert tool_config["toolChoice"] == {"tool": {"name": "classify"}}
    assert tool_config["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"] == "object"
    assert "outputConfig" not in server.requests[0].body


def test_prompted_mode_puts_the_schema_in_the_system_text(server: BedrockServer, client: httpx.Client) -> None:
    server.enqueue(converse_reply("Sure:\n```json\n{'label': 'Neutral',}\n```"))
    run = classify_task().run(Review(text="ok"), model=make(server, client, LLAMA))
    assert run.output == Sentiment(label="neutral")
    body = server.requests[0].body
    assert "toolConfig" not in body and "outputConfig" not in body
    assert "JSON Schema" in body["system"][0]["text"]


def test_converse_has_no_json_mode() -> None:
    with pytest.raises(rp.ConfigError, match="json_object"):
        BedrockAdapter().prepare(_prompt(OutputMode.JSON_OBJECT), _profile(), Settings(), Endpoint("http://x", "k"))


def test_temperature_outside_bedrock_range_is_a_config_error() -> None:
    with pytest.raises(rp.ConfigError, match="between 0 and 1"):
        BedrockAdapter().prepare(_prompt(), _profile(), Settings(temperature=1.5), Endpoint("http://x", "k"))


def test_invalid_answer_is_reasked_with_the_errors(server: BedrockServer, client: httpx.Client) -> None:
    server.enqueue(converse_reply('{"label":"happy"}'), converse_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    second = server.requests[1].body["messages"]
    assert second[-2] == {"role": "assistant", "content": [{"text": '{"label":"happy"}'}]}
    assert "happy" in second[-1]["content"][0]["text"]


def test_async_call(server: BedrockServer) -> None:
    server.enqueue(converse_reply('{"label":"neutral"}'))

    async def go() -> rp.Run[Sentiment]:
        async with httpx.AsyncClient() as aclient:
            model = rp.model(CLAUDE, base_url=server.base_url, async_http_client=aclient)
            return await classify_task().arun(Review(text="meh"), model=model, policy=FAST)

    assert asyncio.run(go()).output == Sentiment(label="neutral")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (throttled(), "RateLimitError"),
        (model_not_ready(), "OverloadedError"),
        (service_unavailable(), "OverloadedError"),
        (internal_error(), "ServerError"),
        (model_timeout(), "ProviderTimeout"),
    ],
)
def test_transient_errors_are_retried(server: BedrockServer, client: httpx.Client, reply: Reply, error: str) -> None:
    server.enqueue(reply, converse_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert len(server.requests) == 2
    assert run.attempts[0].transport_errors[0].startswith(error)


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (invalid_model_id(), rp.ModelNotFoundError, "model identifier is invalid"),
        (end_of_life(), rp.ModelNotFoundError, "end of its life"),
        (needs_inference_profile("anthropic.claude-x"), rp.ModelNotFoundError, "inference profile id"),
        (access_denied(), rp.AuthError, "don't have access"),
        (context_too_long(), rp.ContextLengthError, "too long"),
        (error_reply(400, "ValidationException", "temperature: bad"), rp.BadRequestError, "temperature"),
    ],
)
def test_permanent_errors_are_not_retried(
    server: BedrockServer, client: httpx.Client, reply: Reply, error: type[Exception], words: str
) -> None:
    server.enqueue(reply, converse_reply('{"label":"negative"}'))
    with pytest.raises(error, match=words) as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1
    assert isinstance(info.value, rp.ProviderError) and info.value.code is not None


def test_schema_rejection_downgrades_to_the_forced_tool(server: BedrockServer, client: httpx.Client) -> None:
    server.enqueue(schema_rejected(), converse_reply(None, tool_input={"label": "positive"}, stop_reason="tool_use"))
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.TOOL_CALL]
    assert "toolConfig" in server.requests[1].body and "outputConfig" not in server.requests[1].body


def test_a_model_that_cannot_be_forced_to_a_tool_falls_back_to_prompting(
    server: BedrockServer, client: httpx.Client
) -> None:
    server.enqueue(tool_choice_unsupported(), converse_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="x"), model=make(server, client, NOVA), policy=FAST)
    assert [a.mode for a in run.attempts] == [rp.OutputMode.TOOL_CALL, rp.OutputMode.PROMPTED]
    assert "toolConfig" not in server.requests[1].body


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (converse_reply("Sorry, the model cannot answer this.", stop_reason="guardrail_intervened"), "cannot answer"),
        (converse_reply(None, stop_reason="content_filtered"), "content_filtered"),
    ],
)
def test_guardrails_and_filters_are_refusals(
    server: BedrockServer, client: httpx.Client, reply: Reply, words: str
) -> None:
    server.enqueue(reply)
    with pytest.raises(rp.RefusalError, match=words) as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.run is not None and info.value.run.attempts[0].finish_reason == "refusal"


def test_truncation_is_reasked(server: BedrockServer, client: httpx.Client) -> None:
    task = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    server.enqueue(
        converse_reply('{"name":"Ann","ag', stop_reason="max_tokens"), converse_reply('{"name":"Ann","age":31}')
    )
    run = task.run("Ann is 31", model=make(server, client), policy=FAST)
    assert run.output == Person(name="Ann", age=31)
    assert run.attempts[0].finish_reason == "length"
    assert "cut off" in server.requests[1].body["messages"][-1]["content"][0]["text"]


def test_error_type_from_a_json_protocol_body() -> None:
    body = b'{"__type":"com.amazon.coral.service#UnrecognizedClientException","Message":"bad token"}'
    with pytest.raises(rp.AuthError, match="bad token") as info:
        BedrockAdapter().read(403, {}, body, _profile())
    assert info.value.code == "UnrecognizedClientException"


# ---------------------------------------------------------------- auth and secrets


def test_a_wrong_secret_is_refused_by_signature_and_never_shown(
    server: BedrockServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-planted-777")
    with pytest.raises(rp.AuthError, match="signature we calculated does not match") as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1
    for text in (str(info.value), repr(info.value.run), repr(server.requests)):
        assert "wrong-secret-planted-777" not in text and SECRET not in text


def test_an_unknown_access_key_is_an_auth_error(
    server: BedrockServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSOMEONEELSE")
    with pytest.raises(rp.AuthError, match="security token included in the request is invalid"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


def test_a_signature_for_another_region_is_refused(
    server: BedrockServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the loopback endpoint's host names no region
    with pytest.raises(rp.AuthError, match="scoped to a valid region"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


def test_the_server_checks_the_signature_over_the_bytes_sent(server: BedrockServer, client: httpx.Client) -> None:
    call = BedrockAdapter().prepare(_prompt(), _profile(), Settings(), Endpoint(server.base_url))
    server.enqueue(converse_reply('{"label":"neutral"}'))
    assert client.post(call.url, headers=call.headers, content=call.content).status_code == 200
    tampered = client.post(call.url, headers=call.headers, json={**call.body, "inferenceConfig": {"maxTokens": 9}})
    assert tampered.status_code == 403
    assert tampered.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")


def test_temporary_credentials_send_a_signed_session_token(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-planted")
    with BedrockServer(
        access_key_id=KEY_ID, secret_access_key=SECRET, session_token="session-token-planted", region=REGION
    ) as srv:
        srv.enqueue(converse_reply('{"label":"positive"}'))
        classify_task().run(Review(text="x"), model=make(srv, client))
    (req,) = srv.requests
    assert req.headers["x-amz-security-token"] == "session-token-planted"
    assert "x-amz-security-token" in req.headers["authorization"]


def test_a_bedrock_api_key_is_sent_as_bearer(keyed_server: BedrockServer, client: httpx.Client) -> None:
    keyed_server.enqueue(converse_reply('{"label":"positive"}'))
    classify_task().run(Review(text="x"), model=make(keyed_server, client, api_key=TOKEN))
    (req,) = keyed_server.requests
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert "x-amz-date" not in req.headers


def test_the_api_key_comes_from_the_environment(
    keyed_server: BedrockServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", TOKEN)
    keyed_server.enqueue(converse_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="x"), model=make(keyed_server, client))
    assert run.output == Sentiment(label="positive")


def test_an_api_key_needs_no_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore", None)
    monkeypatch.setitem(sys.modules, "botocore.session", None)
    endpoint = Endpoint(BedrockAdapter.default_base_url, TOKEN)
    call = BedrockAdapter().prepare(_prompt(), _profile(), Settings(), endpoint)
    assert call.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_wrong_api_key_is_an_auth_error_that_never_shows_the_key(
    keyed_server: BedrockServer, client: httpx.Client
) -> None:
    with pytest.raises(rp.AuthError, match="API Key is valid") as info:
        classify_task().run(
            Review(text="x"), model=make(keyed_server, client, api_key="ABSKwrong-planted"), policy=FAST
        )
    assert "ABSKwrong-planted" not in str(info.value) and "ABSKwrong-planted" not in repr(info.value.run)


def test_missing_botocore_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore", None)
    monkeypatch.setitem(sys.modules, "botocore.session", None)
    with pytest.raises(rp.ConfigError, match=re.escape("pip install 'robustprompt[bedrock]'")):
        BedrockAdapter().prepare(_prompt(), _profile(), Settings(), Endpoint("http://127.0.0.1:9"))


def test_no_credentials_is_a_config_error_naming_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(rp.ConfigError, match=r"AWS_ACCESS_KEY_ID.*AWS_BEARER_TOKEN_BEDROCK"):
        BedrockAdapter().prepare(_prompt(), _profile(), Settings(), Endpoint("http://127.0.0.1:9"))


# ---------------------------------------------------------------- region and endpoint


def test_the_default_endpoint_is_filled_with_the_region() -> None:
    endpoint = Endpoint(BedrockAdapter.default_base_url)
    call = BedrockAdapter().prepare(_prompt(), _profile("amazon.nova-pro-v1:0"), Settings(), endpoint)
    assert call.url == "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse"


def test_the_endpoint_host_names_the_signing_region() -> None:
    endpoint = Endpoint("https://bedrock-runtime.eu-west-1.amazonaws.com")
    call = BedrockAdapter().prepare(_prompt(), _profile(), Settings(), endpoint)
    assert "/eu-west-1/bedrock/aws4_request" in call.headers["authorization"]


def test_no_region_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(rp.ConfigError, match="AWS_REGION"):
        BedrockAdapter().prepare(_prompt(), _profile(), Settings(), Endpoint(BedrockAdapter.default_base_url, "k"))


def test_the_endpoint_url_environment_variable_is_used(
    server: BedrockServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.base_url)
    server.enqueue(converse_reply('{"label":"positive"}'))
    assert classify_task()(Review(text="x"), model=rp.model(CLAUDE, http_client=client)) == Sentiment(label="positive")


# ---------------------------------------------------------------- profiles


@pytest.mark.parametrize(
    ("model_id", "modes"),
    [
        ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", ("json_schema", "tool_call", "prompted")),
        ("anthropic.claude-opus-4-6-v1", ("json_schema", "tool_call", "prompted")),
        ("jp.anthropic.claude-sonnet-5", ("json_schema", "tool_call", "prompted")),
        ("anthropic.claude-sonnet-4-20250514-v1:0", ("tool_call", "prompted")),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", ("tool_call", "prompted")),
        ("anthropic.claude-opus-4-1-20250805-v1:0", ("tool_call", "prompted")),
        ("us.amazon.nova-premier-v1:0", ("tool_call", "prompted")),
        ("mistral.mistral-large-2407-v1:0", ("prompted",)),
    ],
)
def test_default_profiles_by_family(model_id: str, modes: tuple[str, ...]) -> None:
    assert tuple(m.value for m in BedrockAdapter().default_profile(model_id).modes) == modes


def test_catalog_models_resolve_with_native_schema_only_on_claude() -> None:
    profiles = [p for p in all_profiles() if p.provider == "bedrock"]
    assert len(profiles) >= 5
    for profile in profiles:
        native = OutputMode.JSON_SCHEMA in profile.modes
        assert native == ("anthropic.claude" in profile.model_id), profile.name
        assert rp.model(profile.name, api_key="k").profile == profile


# ---------------------------------------------------------------- random schemas


def _profile(model_id: str = "global.anthropic.claude-sonnet-4-5-20250929-v1:0") -> rp.ModelProfile:
    return BedrockAdapter().default_profile(model_id)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models, data=st.data())
def test_random_models_make_bodies_bedrock_accepts(tree: Tree, data: st.DataObject) -> None:
    adapter, spec = BedrockAdapter(), OutputSpec("out", tree.annotation.model_json_schema())
    endpoint = Endpoint("http://127.0.0.1:9", "k")
    prompt = Prompt("Extract.", (Message("user", "Input:\n{}"),), spec, OutputMode.JSON_SCHEMA)
    if tree.has_dict:  # a free-form dict has no closed schema: refused, naming the field
        with pytest.raises(rp.ConfigError, match="dict"):
            adapter.prepare(prompt, _profile(), Settings(), endpoint)
        return
    call = adapter.prepare(prompt, _profile(), Settings(max_output_tokens=50), endpoint)
    assert converse_request_violations(call.body) == []
    schema = json.loads(call.body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"])
    instance = data.draw(tree.values)
    Draft202012Validator(schema).validate(instance.model_dump(mode="json", by_alias=True, exclude_unset=True))
    tool_call = adapter.prepare(
        Prompt(prompt.system, prompt.messages, spec, OutputMode.TOOL_CALL), _profile(), Settings(), endpoint
    )
    assert converse_request_violations(tool_call.body) == []
