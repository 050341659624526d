"""The Cohere v2 adapter end to end, against a loopback server speaking Cohere's `/v2/chat` wire format, and its
schema transform (examples, then random pydantic models).

Every request body is checked against the fields of Cohere's v2 chat request (its SDK's `V2Client.chat`
parameters) and every `json_schema` against Cohere's documented schema rules, by a checker written apart from
the transform; a violating body gets Cohere's 400 and the test fails.
"""

from __future__ import annotations

import copy
import enum
import time
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field, TypeAdapter, create_model

import robustprompt as rp
from robustprompt.adapters import Endpoint
from robustprompt.adapters._cohere_schema import to_cohere_schema
from robustprompt.adapters.cohere import CohereAdapter
from robustprompt.testing._cohere_server import (
    CohereServer,
    chat_reply,
    error_reply,
    model_not_found,
    payment_required,
    rate_limited,
    schema_rejected,
    server_error,
    too_many_tokens,
)
from tests.loopback import model_maker, server_fixture
from tests.models import Person, Review, Sentiment, classify_task
from tests.schema_shapes import Tree, random_models

KEY = "co-test-planted-2a9f"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)

# ---------------------------------------------------------------- the request check

_NUMBER = (int, float)
_TOP: dict[str, Any] = {
    "model": str,
    "messages": list,
    "tools": list,
    "strict_tools": bool,
    "documents": list,
    "citation_options": dict,
    "response_format": dict,
    "safety_mode": str,
    "max_tokens": int,
    "stop_sequences": list,
    "temperature": _NUMBER,
    "seed": int,
    "frequency_penalty": _NUMBER,
    "presence_penalty": _NUMBER,
    "k": int,
    "p": _NUMBER,
    "logprobs": bool,
    "tool_choice": str,
    "thinking": dict,
    "stream": bool,
}
_MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "tool_plan", "citations"},
    "tool": {"role", "tool_call_id", "content"},
}
# Cohere's unsupported schema features (docs: Structured Outputs, "Unsupported schema features").
_UNSUPPORTED = frozenset(
    {"allOf", "oneOf", "not", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
    | {"minItems", "maxItems", "minLength", "maxLength", "uniqueItems"}
)
_FORMATS = {"date-time", "uuid", "date", "time"}
_TYPED = {"type", "$ref", "anyOf", "enum", "const"}


def chat_request_violations(body: Any) -> list[str]:
    """What Cohere would refuse in a v2 chat body, worded like its 400 messages."""
    if not isinstance(body, Mapping):
        return ["body must be an object"]
    found = [f"{name} is required" for name in ("model", "messages") if name not in body]
    for name, value in body.items():
        if name not in _TOP:
            found.append(f"unknown field: parameter {name} is not a valid field")
        elif not isinstance(value, _TOP[name]) or (_TOP[name] is int and isinstance(value, bool)):
            found.append(f"{name} has the wrong type")
    for i, message in enumerate(body.get("messages") or ()):
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in _MESSAGE_FIELDS:
            found.append(f"message at index {i} has an invalid role {role!r}")
            continue
        found += [f"message at index {i}: unknown field {k}" for k in message if k not in _MESSAGE_FIELDS[role]]
        if role in ("system", "user") and not (isinstance(message.get("content"), str) and message["content"]):
            found.append("message must not be empty in a turn")
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping):
        found += _response_format_violations(fmt, body)
    return found


def _response_format_violations(fmt: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
    found = [f"response_format: unknown field {k}" for k in fmt if k not in ("type", "json_schema")]
    if fmt.get("type") not in ("text", "json_object"):
        found.append("response_format type must be one of 'text' or 'json_object'")
    if body.get("documents") or body.get("tools"):
        found.append("response_format is not supported with RAG or tools")
    if "json_schema" in fmt:
        if fmt.get("type") != "json_object":
            found.append("json_schema must not be specified when the type is 'text'")
        found += cohere_schema_violations(fmt["json_schema"])
    return found


def cohere_schema_violations(schema: Any) -> list[str]:
    """Every way `schema` breaks Cohere's documented schema rules."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return ["schema must be an object"]
    return [problem for node in _nodes(schema) for problem in _problems(node)]


def _nodes(node: Any) -> Iterator[Any]:
    yield node
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions"):
            for sub in value.values():
                yield from _nodes(sub)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for sub in value:
                yield from _nodes(sub)
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, Mapping)):
            yield from _nodes(value)


def _problems(node: Any) -> Iterator[str]:
    if not isinstance(node, Mapping):
        yield f"schema node must be an object, not {node!r}"
        return
    for key in sorted(_UNSUPPORTED & node.keys()):
        yield f"'{key}' is not supported"
    if "format" in node and node["format"] not in _FORMATS:
        yield f"format '{node['format']}' is not supported"
    if isinstance(node.get("pattern"), str) and any(t in node["pattern"] for t in ("^", "$", "?=", "?!")):
        yield f"pattern {node['pattern']!r} uses an unsupported construct"
    properties = node.get("properties") or {}
    for name, sub in properties.items():
        if not isinstance(sub, Mapping) or not _TYPED & sub.keys():
            yield f"property {name} must have a type"
    kind = node.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind):
        required = node.get("required") or []
        if not required:
            yield "every object must have at least one required field"
        yield from (f"required field {name} not found in properties" for name in required if name not in properties)


# ---------------------------------------------------------------- fixtures


server = server_fixture(lambda: CohereServer(api_key=KEY, check=chat_request_violations))
make = model_maker("cohere:command-a-03-2025", api_key=KEY, temperature=0, max_output_tokens=200, seed=5)


def person_task() -> rp.Task[str, Person]:
    return rp.Task("person", input=str, output=Person, instructions="Extract the person.")


# ---------------------------------------------------------------- output modes


def test_native_schema_mode(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"positive"}', input_tokens=40, output_tokens=6))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(40, 6)  # the billed units, not the template-inflated token counts
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    (req,) = server.requests
    assert req.path == "/v2/chat"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    body = req.body
    assert body["stream"] is False
    assert body["max_tokens"] == 200 and body["seed"] == 5 and body["temperature"] == 0
    fmt = body["response_format"]
    assert fmt["type"] == "json_object" and "schema" not in fmt
    assert fmt["json_schema"]["properties"]["label"]["enum"] == ["positive", "negative", "neutral"]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_optional_fields_keep_their_defaults(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"name":"Ann","age":31}'))
    assert person_task()("Ann is 31", model=make(server, client)) == Person(name="Ann", age=31)
    schema = server.requests[0].body["response_format"]["json_schema"]
    assert schema["required"] == ["name", "age"]
    assert "minimum: 0" in schema["properties"]["age"]["description"]  # moved out of the schema, still told


def test_json_mode_puts_the_schema_in_the_prompt(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"neutral"}'))
    policy = rp.Policy(mode=rp.OutputMode.JSON_OBJECT)
    classify_task().run(Review(text="ok"), model=make(server, client), policy=policy)
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_object"}
    assert "JSON" in body["messages"][0]["content"]  # Cohere's docs: JSON mode must be asked for in words


def test_prompted_mode_repairs_prose(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply("Sure! ```json\n{'label': 'Negative',}\n```"))
    policy = rp.Policy(mode=rp.OutputMode.PROMPTED)
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=policy)
    assert run.output == Sentiment(label="negative")
    assert "response_format" not in server.requests[0].body


@pytest.mark.parametrize("mode", [rp.OutputMode.TOOL_CALL, rp.OutputMode.GRAMMAR])
def test_modes_cohere_is_not_offered_are_config_errors(mode: rp.OutputMode) -> None:
    adapter = CohereAdapter()
    prompt = rp.Prompt("sys", (rp.Message("user", "hi"),), rp.OutputSpec("out", {"type": "object"}), mode)
    with pytest.raises(rp.ConfigError, match="not available"):
        adapter.prepare(prompt, adapter.default_profile("command-a-03-2025"), rp.Settings(), Endpoint("https://x"))


# ---------------------------------------------------------------- answers


def test_max_tokens_is_truncation_and_is_reasked(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(
        chat_reply('{"name":"Ann","ag', finish_reason="MAX_TOKENS"),
        chat_reply('{"name":"Ann","age":31}'),
    )
    run = person_task().run("Ann is 31", model=make(server, client), policy=FAST)
    assert run.output == Person(name="Ann", age=31)
    assert run.attempts[0].finish_reason == "length"
    assert "cut off" in server.requests[1].body["messages"][-1]["content"]


def test_thinking_items_are_not_the_answer(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"positive"}', thinking="Loved it means positive."))
    run = classify_task().run(
        Review(text="great"), model=make(server, client, name="cohere:command-a-reasoning-08-2025")
    )
    assert run.attempts[0].raw == '{"label":"positive"}'


def test_usage_falls_back_to_token_counts(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"positive"}', input_tokens=10, output_tokens=5, billed=False))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.usage == rp.Usage(510, 7)


def test_invalid_answer_is_reasked(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"happy"}'), chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert server.requests[1].body["messages"][-2] == {"role": "assistant", "content": '{"label":"happy"}'}


# ---------------------------------------------------------------- errors


def test_429_waits_for_retry_after(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(rate_limited(retry_after=0.3), chat_reply('{"label":"positive"}'))
    start = time.monotonic()
    run = classify_task().run(Review(text="great"), model=make(server, client), policy=FAST)
    assert time.monotonic() - start >= 0.3
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].transport_errors[0].startswith("RateLimitError")


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (server_error(500), "ServerError"),
        (error_reply(499, "request cancelled"), "ServerError"),
        (server_error(503), "OverloadedError"),
    ],
)
def test_server_faults_are_retried(server: CohereServer, client: httpx.Client, reply: Any, error: str) -> None:
    server.enqueue(reply, chat_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert run.attempts[0].transport_errors[0].startswith(error)


def test_model_not_found_is_permanent(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(model_not_found("command-a-03-2025"), chat_reply('{"label":"negative"}'))
    with pytest.raises(rp.ModelNotFoundError, match="not found") as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.status == 404
    assert len(server.requests) == 1


def test_a_spent_billing_limit_is_not_retried(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(payment_required(), chat_reply('{"label":"negative"}'))
    with pytest.raises(rp.QuotaExceededError, match="payment method"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1


def test_too_many_tokens_is_a_context_length_error(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(too_many_tokens())
    with pytest.raises(rp.ContextLengthError, match="too many tokens"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)


def test_a_refused_schema_downgrades_to_json_mode(server: CohereServer, client: httpx.Client) -> None:
    server.enqueue(schema_rejected(), chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT]
    assert server.requests[1].body["response_format"] == {"type": "json_object"}


def test_a_wrong_key_is_an_auth_error_that_never_shows_the_key(server: CohereServer, client: httpx.Client) -> None:
    model = rp.model(
        "cohere:command-a-03-2025", base_url=server.base_url, api_key="co-wrong-planted-3", http_client=client
    )
    with pytest.raises(rp.AuthError, match="invalid api token") as info:
        classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert "co-wrong-planted-3" not in str(info.value)
    assert "co-wrong-planted-3" not in repr(info.value.run)


def test_key_and_address_come_from_cohere_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CO_API_KEY", "from-env")
    monkeypatch.setenv("CO_API_URL", "https://cohere-proxy.example/")
    model = rp.model("cohere:command-a-03-2025")
    assert model.backend.base_url == "https://cohere-proxy.example"  # type: ignore[attr-defined]
    monkeypatch.delenv("CO_API_KEY")
    with pytest.raises(rp.ConfigError, match="CO_API_KEY"):
        rp.model("cohere:command-a-03-2025")


# ---------------------------------------------------------------- the schema transform


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str = ""
    city: str = "Paris"


class Order(BaseModel):
    ship_to: Address
    quantity: int = Field(ge=1, le=10)
    code: str = Field(pattern=r"^[A-Z]{3}$", min_length=3, max_length=3)
    sku: str = Field(pattern=r"[A-Z]+-\d+")
    placed: str = Field(json_schema_extra={"format": "date-time"})
    site: str = Field(json_schema_extra={"format": "uri"})
    tags: set[str] = set()
    items: list[int] = Field(min_length=1)
    anything: list = []  # type: ignore[type-arg]
    color: Color | None = None
    kind: Literal["a", "b"] = "a"


def cohere(model: type[BaseModel]) -> dict[str, Any]:
    out = to_cohere_schema(model.model_json_schema())
    assert cohere_schema_violations(out) == []
    Draft202012Validator.check_schema(out)
    return out


def test_an_object_with_no_required_field_gets_its_first_field_required() -> None:
    out = cohere(Order)
    assert out["$defs"]["Address"]["required"] == ["street"]
    assert "title" not in repr(out) and "'default'" not in repr(out)


def test_unsupported_constraints_move_into_descriptions() -> None:
    props = cohere(Order)["properties"]
    assert props["quantity"] == {"type": "integer", "description": "maximum: 10; minimum: 1"}
    assert props["code"]["description"] == "maxLength: 3; minLength: 3; pattern: ^[A-Z]{3}$"
    assert "pattern" not in props["code"]
    assert props["sku"]["pattern"] == r"[A-Z]+-\d+"  # no anchors: Cohere enforces it
    assert props["placed"]["format"] == "date-time"
    assert props["site"] == {"type": "string", "description": "format: uri"}
    assert props["tags"]["description"] == "uniqueItems: true"
    assert props["items"]["description"] == "minItems: 1"
    assert props["anything"] == {"type": "array"}  # a bare list: no item type, which Cohere takes


def test_unions_refs_and_enums_are_kept() -> None:
    props = cohere(Order)["properties"]
    assert props["color"] == {"anyOf": [{"$ref": "#/$defs/Color"}, {"type": "null"}]}
    assert props["ship_to"] == {"$ref": "#/$defs/Address"}
    assert props["kind"] == {"enum": ["a", "b"], "type": "string"}


def test_a_discriminated_union_becomes_any_of() -> None:
    class Cat(BaseModel):
        pet: Literal["cat"]

    class Dog(BaseModel):
        pet: Literal["dog"]

    class Owner(BaseModel):
        animal: Annotated[Cat | Dog, Field(discriminator="pet")]

    assert cohere(Owner)["properties"]["animal"] == {"anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]}


def test_a_recursive_root_is_inlined() -> None:
    class Node(BaseModel):
        value: int
        children: list[Node] = []

    out = cohere(Node)
    assert out["type"] == "object" and out["$defs"]["Node"]["required"] == ["value"]


def test_the_input_is_left_alone() -> None:
    schema = Order.model_json_schema()
    before = copy.deepcopy(schema)
    to_cohere_schema(schema)
    assert schema == before


def test_a_dict_field_names_the_field_and_the_fix() -> None:
    class Report(BaseModel):
        scores: dict[str, int]

    with pytest.raises(rp.ConfigError) as caught:
        to_cohere_schema(Report.model_json_schema())
    message = str(caught.value)
    assert "field 'scores'" in message and "#/properties/scores" in message
    assert "Cohere" in message and "key/value models" in message and "json_object" in message


def test_a_model_without_fields_is_refused() -> None:
    with pytest.raises(rp.ConfigError, match="no fields"):
        to_cohere_schema(create_model("Empty").model_json_schema())


@pytest.mark.parametrize(("annotation", "expected"), [(list[int], "array"), (int, "integer")])
def test_a_root_that_is_not_an_object_is_refused(annotation: Any, expected: str) -> None:
    with pytest.raises(rp.ConfigError, match=f'root schema is of type "{expected}"'):
        to_cohere_schema(TypeAdapter(annotation).json_schema())


def test_an_untyped_field_is_refused() -> None:
    loose = create_model("Loose", value=(Any, ...))
    with pytest.raises(rp.ConfigError, match="field 'value' has no type"):
        to_cohere_schema(loose.model_json_schema())


def _fieldless(schema: Any) -> bool:
    return any(
        isinstance(node, Mapping) and node.get("type") == "object" and not node.get("properties")
        for node in _nodes(schema)
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models, data=st.data())
def test_random_models_become_cohere_schemas_their_instances_still_match(tree: Tree, data: st.DataObject) -> None:
    assume(tree.depth <= 9)
    schema = tree.annotation.model_json_schema()
    before = copy.deepcopy(schema)
    try:
        out = to_cohere_schema(schema)
    except rp.ConfigError:
        assert _fieldless(schema)
        return
    assert not _fieldless(schema)
    assert schema == before
    assert cohere_schema_violations(out) == []
    instance = data.draw(tree.values)
    Draft202012Validator(out).validate(instance.model_dump(mode="json", by_alias=True))
