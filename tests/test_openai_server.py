"""The loopback OpenAI server: its bodies match the pinned spec, and it behaves like the real endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from robustprompt.testing import _server
from robustprompt.testing._openai_server import (
    OpenAIServer,
    Reply,
    chat_reply,
    context_too_long,
    error_reply,
    insufficient_quota,
    invalid_api_key,
    model_not_found,
    rate_limited,
    schema_rejected,
    server_error,
)
from robustprompt.testing._server import Received
from tests.loopback import server_fixture
from tests.spec_check import chat_request_violations, needs_specs, openapi_errors

KEY = "sk-test-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
STRICT_SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def chat_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4.1-mini",
        "messages": [
            {"role": "developer", "content": "Classify the review."},
            {"role": "user", "content": "Great phone."},
        ],
        **extra,
    }


def json_schema_format(schema: dict[str, Any], name: str = "classify") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


server = server_fixture(lambda: OpenAIServer(api_key=KEY, check=chat_request_violations), recheck=False)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def post(client: httpx.Client, server: OpenAIServer, body: Any, headers: dict[str, str] = AUTH) -> httpx.Response:
    return client.post(f"{server.base_url}/chat/completions", json=body, headers=headers)


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert openapi_errors(response.json(), "ErrorResponse") == []
    error: dict[str, Any] = response.json()["error"]
    return error


# ---------------------------------------------------------------- bodies against the spec


@pytest.mark.parametrize(
    "reply",
    [
        chat_reply('{"label":"positive"}'),
        chat_reply('{"label":"pos', finish_reason="length"),
        chat_reply(None, refusal="I'm sorry, I can't assist with that."),
        chat_reply(None, tool_arguments='{"label":"positive"}', tool_name="classify"),
        chat_reply("", finish_reason="content_filter"),
    ],
)
def test_chat_replies_match_the_spec(reply: Reply) -> None:
    assert reply.status == 200
    assert openapi_errors(json.loads(reply.body), "CreateChatCompletionResponse") == []


def test_chat_reply_fields() -> None:
    body = json.loads(chat_reply("hi", prompt_tokens=7, completion_tokens=3, model="gpt-x").body)
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-x"
    assert body["usage"]["total_tokens"] == 10
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi", "refusal": None, "annotations": []}
    call = json.loads(chat_reply("ignored", tool_arguments="{}", tool_name="classify").body)["choices"][0]
    assert call["message"]["content"] is None
    assert call["message"]["tool_calls"][0]["function"] == {"name": "classify", "arguments": "{}"}
    assert call["finish_reason"] == "stop"  # what OpenAI sends when a named tool is forced


@pytest.mark.parametrize(
    ("reply", "status", "kind", "code"),
    [
        (rate_limited(retry_after=1.5), 429, "requests", "rate_limit_exceeded"),
        (insufficient_quota(), 429, "insufficient_quota", "insufficient_quota"),
        (model_not_found("gpt-9"), 404, "invalid_request_error", "model_not_found"),
        (server_error(), 500, "server_error", None),
        (server_error(503), 503, "server_error", None),
        (context_too_long(128000, 130001), 400, "invalid_request_error", "context_length_exceeded"),
        (schema_rejected("classify", "In context=(), 'default' is not permitted"), 400, "invalid_request_error", None),
        (invalid_api_key(), 401, "invalid_request_error", "invalid_api_key"),
        (error_reply(403, "Country not supported", type="request_forbidden"), 403, "request_forbidden", None),
    ],
)
def test_error_shapes_match_the_spec(reply: Reply, status: int, kind: str, code: str | None) -> None:
    body = json.loads(reply.body)
    assert openapi_errors(body, "ErrorResponse") == []
    assert (reply.status, body["error"]["type"], body["error"]["code"]) == (status, kind, code)


def test_error_messages_are_the_ones_clients_recognise() -> None:
    assert json.loads(model_not_found("gpt-9").body)["error"]["message"] == (
        "The model `gpt-9` does not exist or you do not have access to it."
    )
    too_long = json.loads(context_too_long(8192, 9000).body)["error"]
    assert too_long["message"].startswith("This model's maximum context length is 8192 tokens.")
    assert "9000 tokens" in too_long["message"]
    assert too_long["param"] == "messages"
    rejected = json.loads(schema_rejected("classify", "bad").body)["error"]
    assert rejected["message"] == "Invalid schema for response_format 'classify': bad"
    assert rejected["param"] == "response_format"


def test_rate_limit_headers() -> None:
    assert ("retry-after", "1.5") in rate_limited(retry_after=1.5).headers
    assert ("retry-after-ms", "250") in rate_limited(retry_after_ms=250).headers
    assert not any(name.startswith("retry-after") for name, _ in rate_limited().headers)


def test_the_checker_rejects_a_wrong_response_body() -> None:
    errors = openapi_errors(
        {"id": "x", "object": "chat.completion", "model": "m", "choices": []}, "CreateChatCompletionResponse"
    )
    assert errors == ["$: 'created' is a required property"]


# ---------------------------------------------------------------- over HTTP


def test_a_request_gets_the_scripted_reply_and_is_recorded(server: OpenAIServer, client: httpx.Client) -> None:
    reply = chat_reply('{"label":"positive"}')
    server.enqueue(reply)
    body = chat_body(response_format=json_schema_format(STRICT_SCHEMA))
    response = post(client, server, body, headers={**AUTH, "X-Custom": "1"})
    assert response.status_code == 200
    assert response.content == reply.body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    (received,) = server.requests
    assert received.path == "/v1/chat/completions"
    assert received.body == body
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.headers["x-custom"] == "1"


def test_replies_come_in_order_then_the_responder_answers(client: httpx.Client) -> None:
    def responder(received: Received) -> Reply:
        return chat_reply(f"echo {received.body['messages'][-1]['content']}")

    with OpenAIServer(responder=responder) as server:
        server.enqueue(server_error(503), chat_reply("second"))
        statuses = [post(client, server, chat_body()).status_code for _ in range(2)]
        last = post(client, server, chat_body()).json()
    assert statuses == [503, 200]
    assert last["choices"][0]["message"]["content"] == "echo Great phone."


def test_an_empty_script_answers_500_saying_so(client: httpx.Client) -> None:
    with OpenAIServer() as server:
        response = post(client, server, chat_body())
    assert response.status_code == 500
    assert "script ran out" in error_of(response)["message"]


def test_a_wrong_key_is_401_and_the_key_is_never_echoed(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply("unused"))
    wrong = post(client, server, chat_body(), headers={"Authorization": "Bearer sk-wrong-planted-777"})
    missing = post(client, server, chat_body(), headers={})
    for response in (wrong, missing):
        assert response.status_code == 401
        error = error_of(response)
        assert error["code"] == "invalid_api_key"
        assert error["message"].startswith("Incorrect API key provided.")
    assert "planted" not in wrong.text
    assert "sk-" not in wrong.text


@needs_specs
def test_a_body_the_checker_refuses_is_400(server: OpenAIServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply("unused"))
    response = post(client, server, chat_body(messages=[]))
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert "should be non-empty" in error["message"]
    assert len(server.requests) == 1  # recorded, but the script was not consumed:
    assert post(client, server, chat_body()).status_code == 200


def test_a_schema_violation_reads_like_openais(server: OpenAIServer, client: httpx.Client) -> None:
    loose = {"type": "object", "properties": {"label": {"type": "string", "default": "x"}}, "required": ["label"]}
    response = post(client, server, chat_body(response_format=json_schema_format(loose), temperature="hot"))
    assert response.status_code == 400
    error = error_of(response)
    assert error["message"].startswith("Invalid schema for response_format 'classify': ")
    assert "'additionalProperties' is required to be supplied and to be false" in error["message"]
    assert "'default' is not permitted" in error["message"]
    assert "temperature" in error["message"]  # the envelope violation is reported too, after it
    assert error["param"] == "response_format"


def test_a_body_that_is_not_json_is_400(server: OpenAIServer, client: httpx.Client) -> None:
    response = client.post(f"{server.base_url}/chat/completions", content=b"{not json", headers=AUTH)
    assert response.status_code == 400
    assert "could not parse the JSON body" in error_of(response)["message"]
    assert server.requests[0].body == "{not json"


@pytest.mark.parametrize(("method", "path"), [("POST", "/responses"), ("GET", "/chat/completions"), ("GET", "/models")])
def test_other_endpoints_are_404(server: OpenAIServer, client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, f"{server.base_url}{path}", headers=AUTH, json={} if method == "POST" else None)
    assert response.status_code == 404
    assert error_of(response)["message"] == f"Invalid URL ({method} /v1{path})"


def test_a_failing_responder_is_reported_as_500(client: httpx.Client) -> None:
    def responder(received: Received) -> Reply:
        raise RuntimeError("boom")

    with OpenAIServer(responder=responder) as server:
        response = post(client, server, chat_body())
    assert response.status_code == 500
    assert "RuntimeError('boom')" in error_of(response)["message"]


def test_reply_headers_override_the_defaults(client: httpx.Client) -> None:
    with OpenAIServer() as server:
        server.enqueue(Reply(502, b"<html>Bad gateway</html>", headers=(("Content-Type", "text/html"),)))
        response = post(client, server, chat_body())
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert response.text == "<html>Bad gateway</html>"


# ---------------------------------------------------------------- timing


def test_a_delayed_reply_waits(client: httpx.Client) -> None:
    with OpenAIServer() as server:
        server.enqueue(Reply(200, b"{}", delay=0.3))
        start = time.monotonic()
        response = post(client, server, chat_body())
    assert response.status_code == 200
    assert time.monotonic() - start >= 0.3


def test_delays_are_capped(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_server, "MAX_DELAY", 0.1)
    with OpenAIServer() as server:
        server.enqueue(Reply(200, b"{}", delay=60))
        start = time.monotonic()
        assert post(client, server, chat_body()).status_code == 200
    assert time.monotonic() - start < 5


def test_a_client_timeout_fires_while_the_reply_is_delayed() -> None:
    with OpenAIServer() as server, httpx.Client(timeout=0.2) as client:
        server.enqueue(Reply(200, b"{}", delay=5))
        with pytest.raises(httpx.ReadTimeout):
            post(client, server, chat_body())


def test_shutdown_is_fast_with_a_delayed_reply_pending() -> None:
    outcome: list[int | str] = []

    def call(url: str) -> None:
        try:
            with httpx.Client(timeout=10) as client:
                outcome.append(client.post(f"{url}/chat/completions", json=chat_body()).status_code)
        except httpx.HTTPError as exc:
            outcome.append(type(exc).__name__)

    with OpenAIServer() as server:
        server.enqueue(Reply(200, b"{}", delay=30))
        caller = threading.Thread(target=call, args=(server.base_url,))
        caller.start()
        deadline = time.monotonic() + 5
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
    assert time.monotonic() - start < 2
    caller.join(timeout=5)
    assert outcome == [200]


# ---------------------------------------------------------------- the request checker


def test_a_minimal_valid_request_passes() -> None:
    assert chat_request_violations(chat_body()) == []
    assert chat_request_violations(chat_body(response_format=json_schema_format(STRICT_SCHEMA))) == []
    tool = {"type": "function", "function": {"name": "classify", "parameters": STRICT_SCHEMA, "strict": True}}
    forced = {"type": "function", "function": {"name": "classify"}}
    assert chat_request_violations(chat_body(tools=[tool], tool_choice=forced, parallel_tool_calls=False)) == []
    json_mode = chat_body(response_format={"type": "json_object"})
    json_mode["messages"][0]["content"] = "Answer in JSON."
    assert chat_request_violations(json_mode) == []


@needs_specs
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (chat_body(messages=[]), "should be non-empty"),
        (chat_body(messages=[{"role": "robot", "content": "hi"}]), "$.messages[0]"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "'model' is a required property"),
        (
            chat_body(response_format=json_schema_format({**STRICT_SCHEMA, "additionalProperties": True})),
            "Invalid schema for response_format 'classify': In context=(), 'additionalProperties'",
        ),
        (chat_body(response_format=json_schema_format(STRICT_SCHEMA, name="bad name")), "Invalid response_format name"),
        (chat_body(response_format={"type": "json_object"}), "must contain the word 'json'"),
        (
            chat_body(
                tools=[
                    {"type": "function", "function": {"name": "f", "strict": True, "parameters": {"type": "object"}}}
                ]
            ),
            "Invalid schema for function 'f'",
        ),
    ],
)
def test_invalid_requests_are_caught(body: dict[str, Any], expected: str) -> None:
    violations = chat_request_violations(body)
    assert any(expected in violation for violation in violations), violations


def test_a_non_strict_schema_is_only_checked_by_the_spec() -> None:
    loose = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert chat_request_violations(chat_body(response_format=loose)) == []


def test_nullable_spec_fields_accept_null() -> None:
    # The spec keeps OpenAPI 3.0's `nullable: true` on fields such as max_completion_tokens; the API takes null.
    assert chat_request_violations(chat_body(max_completion_tokens=None)) == []


def test_responses_api_bodies_are_checked_too() -> None:
    text_format = {"format": {"type": "json_schema", "name": "x", "schema": STRICT_SCHEMA, "strict": True}}
    assert openapi_errors({"model": "gpt-4.1-mini", "input": "hi", "text": text_format}, "CreateResponse") == []
    assert openapi_errors({"model": "gpt-4.1-mini", "input": 5}, "CreateResponse") != []
