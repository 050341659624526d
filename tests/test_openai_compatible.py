"""The OpenAI-compatible adapter against loopback servers that answer as third-party servers do.

Three flavours: one that follows OpenAI's spec (vLLM, llama.cpp's llama-server: nested `json_schema` works), one
that answers like llama-cpp-python's server (only `text` / `json_object`, and a refused body comes back as a 500
carrying pydantic's validation error, observed on llama-cpp-python 0.3.36), and one that refuses a response
format with a 400 (Groq's wording). tests/test_llama_server.py runs the real llama-cpp-python server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import pytest

import robustprompt as rp
from robustprompt.testing import Reply
from robustprompt.testing._openai_server import OpenAIWire, chat_reply, error_reply, server_error
from robustprompt.testing._server import LoopbackServer, json_reply
from tests.loopback import model_maker, server_fixture
from tests.models import Review, Sentiment, classify_task
from tests.spec_check import chat_request_violations

FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)
_LLAMA_CPP_ROLES = ("system", "user", "assistant", "tool", "function")


# ---------------------------------------------------------------- llama-cpp-python's server, as observed


def llama_cpp_python_violations(body: Mapping[str, Any]) -> list[str]:
    """pydantic's errors for what llama-cpp-python's `CreateChatCompletionRequest` refuses; unknown fields pass."""
    found: list[str] = []
    kind = (body.get("response_format") or {}).get("type", "text")
    if kind not in ("text", "json_object"):
        found.append(
            "{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be "
            f"'text' or 'json_object'\", 'input': {kind!r}, 'ctx': {{'expected': \"'text' or 'json_object'\"}}}}"
        )
    for i, message in enumerate(body.get("messages") or ()):
        if message.get("role") not in _LLAMA_CPP_ROLES:
            found.append(
                f"{{'type': 'union_tag_invalid', 'loc': ('body', 'messages', {i}), 'msg': \"Input tag "
                f"'{message.get('role')}' found using 'role' does not match any of the expected tags\"}}"
            )
    return found


class LlamaCppPythonWire(OpenAIWire):
    """llama-cpp-python wraps a request-validation failure as an internal server error (its RouteErrorHandler)."""

    paths: ClassVar[tuple[str, ...]] = ("/v1/chat/completions",)

    def authorized(self, received: Any, api_key: str) -> bool:
        return True

    def rejected(self, violations: list[str]) -> Reply:
        count = f"{len(violations)} validation error{'s' if len(violations) > 1 else ''}"
        message = (
            f"{count}:\n  "
            + "\n  ".join(violations)
            + '\n\n  File "llama_cpp/server/app.py", line 376, in create_chat_completion\n    POST /v1/chat/completions'
        )
        return error_reply(500, message, type="internal_server_error")


# Neither fixture checked its requests once the test was over: some tests send what the server refuses.
llama_cpp_python = server_fixture(
    lambda: LoopbackServer(LlamaCppPythonWire(), check=llama_cpp_python_violations),
    recheck=False,
    name="llama_cpp_python",
)
openai_like = server_fixture(
    lambda: LoopbackServer(OpenAIWire(), check=chat_request_violations), recheck=False, name="openai_like"
)
make = model_maker("", prefix="openai-compatible:", temperature=0, max_output_tokens=100)


def classify(model: rp.Model, policy: rp.Policy = FAST) -> rp.Run[Sentiment]:
    return classify_task().run(Review(text="great"), model=model, policy=policy)


# ---------------------------------------------------------------- the request


def test_a_spec_following_server_gets_the_nested_json_schema(openai_like: LoopbackServer, client: httpx.Client) -> None:
    openai_like.enqueue(chat_reply('{"label":"positive"}', prompt_tokens=20, completion_tokens=3))
    run = classify(make(openai_like, client, "qwen2.5-7b-instruct"))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(20, 3)
    (req,) = openai_like.requests
    body = req.body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert "schema" not in fmt  # the flat form some READMEs show is silently ignored by llama-server
    assert body["max_tokens"] == 100 and "max_completion_tokens" not in body
    assert body["messages"][0]["role"] == "system"
    assert "authorization" not in req.headers


def test_always_the_system_role(openai_like: LoopbackServer, client: httpx.Client) -> None:
    profile = rp.ModelProfile("openai-compatible", "o3-mini-proxy", system_role="developer", reasoning=True)
    openai_like.enqueue(chat_reply('{"label":"positive"}'))
    classify(make(openai_like, client, "o3-mini-proxy", profile=profile))
    body = openai_like.requests[0].body
    assert body["messages"][0]["role"] == "system"
    assert "temperature" not in body


def test_json_object_mode_carries_the_schema(openai_like: LoopbackServer, client: httpx.Client) -> None:
    openai_like.enqueue(chat_reply('{"label":"neutral"}'))
    model = make(openai_like, client, "json-object-only")
    run = classify(model, rp.Policy(mode=rp.OutputMode.JSON_OBJECT))
    assert run.output == Sentiment(label="neutral")
    fmt = openai_like.requests[0].body["response_format"]
    assert fmt == {"type": "json_object", "schema": classify_task().spec.schema}
    assert "JSON Schema" in openai_like.requests[0].body["messages"][0]["content"]


def test_the_key_is_optional_and_sent_as_bearer_when_set(
    openai_like: LoopbackServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "gsk-planted-key")
    openai_like.enqueue(chat_reply('{"label":"positive"}'))
    classify(make(openai_like, client, "keyed"))
    assert openai_like.requests[0].headers["authorization"] == "Bearer gsk-planted-key"


def test_the_base_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_COMPATIBLE_BASE_URL", raising=False)
    with pytest.raises(rp.ConfigError, match="OPENAI_COMPATIBLE_BASE_URL"):
        rp.model("openai-compatible:anything")


def test_default_profile() -> None:
    from robustprompt.adapters.openai_compatible import OpenAICompatibleAdapter

    profile = OpenAICompatibleAdapter().default_profile("m")
    assert profile.modes == (rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT, rp.OutputMode.PROMPTED)
    assert profile.tokenizer == "estimate" and profile.system_role == "system"


# ---------------------------------------------------------------- downgrades


def test_llama_cpp_python_refusal_of_json_schema_downgrades_and_is_remembered(
    llama_cpp_python: LoopbackServer, client: httpx.Client
) -> None:
    llama_cpp_python.enqueue(chat_reply('{"label":"positive"}'), chat_reply('{"label":"negative"}'))
    model = make(llama_cpp_python, client, "llama-cpp-python-flavour")
    first = classify(model)
    assert first.output == Sentiment(label="positive")
    assert [a.mode for a in first.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT]
    assert first.attempts[0].errors[0].startswith("SchemaRejectedError")
    assert first.attempts[0].transport_errors == ()  # the 500 was not retried
    second = classify(model)
    assert [a.mode for a in second.attempts] == [rp.OutputMode.JSON_OBJECT]
    bodies = [r.body for r in llama_cpp_python.requests]
    assert [b["response_format"]["type"] for b in bodies] == ["json_schema", "json_object", "json_object"]
    assert bodies[1]["response_format"]["schema"] == classify_task().spec.schema


def test_a_400_naming_the_response_format_downgrades_twice(openai_like: LoopbackServer, client: httpx.Client) -> None:
    groq = "This model does not support response format `json_schema`. See supported models at https://x/docs"
    json_mode = "response_format json_object is not supported by this model"
    openai_like.enqueue(
        error_reply(400, groq, type="invalid_request_error"),
        error_reply(400, json_mode, type="invalid_request_error"),
        chat_reply('Sure! {"label": "positive"}'),
    )
    run = classify(make(openai_like, client, "groq-flavour"))
    assert run.output == Sentiment(label="positive")
    modes = [a.mode for a in run.attempts]
    assert modes == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT, rp.OutputMode.PROMPTED]
    assert "response_format" not in openai_like.requests[2].body


def test_a_fastapi_422_on_the_response_format_downgrades(openai_like: LoopbackServer, client: httpx.Client) -> None:
    detail = {"detail": [{"type": "literal_error", "loc": ["body", "response_format", "type"], "msg": "bad"}]}
    openai_like.enqueue(json_reply(422, detail), chat_reply('{"label":"positive"}'))
    run = classify(make(openai_like, client, "fastapi-flavour"))
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT]


# ---------------------------------------------------------------- other errors


def test_a_validation_500_on_another_field_is_permanent(llama_cpp_python: LoopbackServer, client: httpx.Client) -> None:
    message = "1 validation error:\n  {'type': 'int_parsing', 'loc': ('body', 'seed'), 'msg': 'bad'}"
    llama_cpp_python.enqueue(error_reply(500, message, type="internal_server_error"), chat_reply("{}"))
    with pytest.raises(rp.BadRequestError, match="validation error"):
        classify(make(llama_cpp_python, client, "bad-seed"), rp.Policy(mode=rp.OutputMode.JSON_OBJECT))
    assert len(llama_cpp_python.requests) == 1


def test_a_plain_500_is_still_retried(openai_like: LoopbackServer, client: httpx.Client) -> None:
    openai_like.enqueue(server_error(500), server_error(503), chat_reply('{"label":"negative"}'))
    run = classify(make(openai_like, client, "flaky"))
    assert run.output == Sentiment(label="negative")
    assert len(run.attempts[0].transport_errors) == 2


def test_an_unknown_model_is_not_found(openai_like: LoopbackServer, client: httpx.Client) -> None:
    vllm = "The model `nope` does not exist."
    openai_like.enqueue(error_reply(404, vllm, type="NotFoundError", code="404"), chat_reply("{}"))
    with pytest.raises(rp.ModelNotFoundError):
        classify(make(openai_like, client, "nope"))
    assert len(openai_like.requests) == 1


def test_only_the_error_location_counts_not_the_echoed_input(
    llama_cpp_python: LoopbackServer, client: httpx.Client
) -> None:
    # pydantic echoes the refused input, which may quote anything, "response_format" included.
    message = (
        "1 validation error:\n  {'type': 'union_tag_invalid', 'loc': ('body', 'messages', 0), "
        "'input': {'role': 'developer', 'content': 'set response_format to json'}}"
    )
    llama_cpp_python.enqueue(error_reply(500, message, type="internal_server_error"), chat_reply("{}"))
    with pytest.raises(rp.BadRequestError):
        classify(make(llama_cpp_python, client, "echo"), rp.Policy(mode=rp.OutputMode.JSON_OBJECT))
    assert len(llama_cpp_python.requests) == 1
