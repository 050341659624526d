"""A loopback server that answers like Anthropic's Messages API, for tests with no network.

Script it with replies (`message_reply`, `error_reply` and the ready-made error shapes), point a client at
`base_url` (the API root: requests go to `{base_url}/v1/messages`), then look at what it received:

    with AnthropicServer(api_key="sk-ant-test") as server:
        server.enqueue(overloaded(), message_reply('{"answer": 42}'))
        ...  # POST {server.base_url}/v1/messages with the x-api-key header
        assert len(server.requests) == 2

Bodies follow the Messages API as PROVIDERS.md §3 and §7 document it (the SDK's `Message`, `Usage` and error
types), with the messages the real API sends where they are known.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from robustprompt.testing._server import Headers, LoopbackServer, Received, Reply, json_reply, text_pieces

__all__ = [
    "AnthropicServer",
    "AnthropicWire",
    "credit_balance_too_low",
    "error_reply",
    "invalid_api_key",
    "message_reply",
    "message_stream",
    "model_not_found",
    "overloaded",
    "permission_denied",
    "prompt_too_long",
    "rate_limited",
    "refusal_reply",
    "request_too_large",
    "schema_rejected",
    "server_error",
]

MESSAGES_PATH = "/v1/messages"
GRAMMAR_TOO_LARGE = (
    "The compiled grammar is too large, which would cause performance issues. Simplify your tool schemas or "
    "reduce the number of strict tools."
)


def _id(prefix: str) -> str:
    return f"{prefix}_01{secrets.token_hex(11)}"


# ---------------------------------------------------------------- replies


def message_stream(
    text: str,
    *,
    pieces: int | None = None,
    split: list[int] | None = None,
    tool: bool = False,
    tool_name: str = "output",
    stop_reason: str | None = None,
    model: str = "claude-sonnet-4-5-20250929",
    chunk_delay: float = 0.0,
    error: str | None = None,
    cut: bool = False,
) -> Reply:
    """A streamed message as the API sends it (PROVIDERS.md §11.4): `message_start`, one block (text, or with
    `tool` a `tool_use` block whose input arrives as `input_json_delta`), a `ping`, the deltas, `message_delta`
    with cumulative usage, `message_stop`. With `error` (an error type such as "overloaded_error"), an `error`
    event follows half the deltas and the stream ends there; with `cut`, the connection drops mid-stream."""

    def event(name: str, **data: Any) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data}, separators=(',', ':'))}\n\n".encode()

    message: dict[str, Any] = {"id": _id("msg"), "type": "message", "role": "assistant", "content": [], "model": model}
    message |= {"stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}
    if tool:
        block: dict[str, Any] = {"type": "tool_use", "id": _id("toolu"), "name": tool_name, "input": {}}
    else:
        block = {"type": "text", "text": ""}
    texts = text_pieces(text, pieces, split)
    deltas = [
        event(
            "content_block_delta",
            index=0,
            delta={"type": "input_json_delta", "partial_json": t} if tool else {"type": "text_delta", "text": t},
        )
        for t in ([""] if tool else []) + texts
    ]
    events = [event("message_start", message=message), event("content_block_start", index=0, content_block=block)]
    events.append(b'event: ping\ndata: {"type": "ping"}\n\n')
    if error is not None:
        events += deltas[: len(deltas) // 2]
        events.append(event("error", error={"type": error, "message": error.replace("_error", "").capitalize()}))
        return Reply(200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay)
    stop = stop_reason or ("tool_use" if tool else "end_turn")
    events += [*deltas, event("content_block_stop", index=0)]
    events.append(
        event("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage={"output_tokens": 5})
    )
    events.append(event("message_stop"))
    return Reply(
        200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay, fault="truncate" if cut else None
    )


_STREAM_HEADERS = (("content-type", "text/event-stream; charset=utf-8"),)


def message_reply(
    text: str | None = None,
    *,
    tool_input: Any = None,
    tool_name: str = "output",
    stop_reason: str | None = None,
    thinking: str | None = None,
    stop_details: Mapping[str, Any] | None = None,
    model: str = "claude-sonnet-4-5-20250929",
    input_tokens: int = 10,
    output_tokens: int = 5,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    headers: Headers = (),
) -> Reply:
    """A message. Content is an optional `thinking` block, then the `text` block, then a `tool_use` block of
    `tool_name` when `tool_input` is given. `stop_reason` defaults to "tool_use" with a tool call and to
    "end_turn" otherwise; pass "max_tokens" for a truncated answer."""
    content: list[dict[str, Any]] = []
    if thinking is not None:
        content.append({"type": "thinking", "thinking": thinking, "signature": secrets.token_hex(16)})
    if text is not None:
        content.append({"type": "text", "text": text})
    if tool_input is not None:
        content.append({"type": "tool_use", "id": _id("toolu"), "name": tool_name, "input": tool_input})
    payload: dict[str, Any] = {
        "id": _id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_input is not None else "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        },
    }
    if stop_details is not None:
        payload["stop_details"] = dict(stop_details)
    return json_reply(200, payload, [("request-id", _id("req")), *headers])


def refusal_reply(
    text: str = "", *, category: str | None = None, explanation: str | None = None, model: str = "claude-fable-5"
) -> Reply:
    """A message the safety classifiers stopped: `stop_reason: "refusal"`, with structured `stop_details`."""
    details = {"type": "refusal", "category": category, "explanation": explanation}
    return message_reply(text or None, stop_reason="refusal", stop_details=details, model=model)


def error_reply(status: int, type: str, message: str, *, headers: Headers = ()) -> Reply:
    """An error in Anthropic's shape: `{"type": "error", "error": {"type", "message"}, "request_id"}`."""
    request_id = _id("req")
    payload = {"type": "error", "error": {"type": type, "message": message}, "request_id": request_id}
    return json_reply(status, payload, [("request-id", request_id), *headers])


def rate_limited(retry_after: float | None = None) -> Reply:
    """429 `rate_limit_error` (retryable), with `retry-after` in seconds when given and the
    `anthropic-ratelimit-*` headers (reset times are RFC 3339)."""
    headers = [
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2026-08-21T12:00:30Z"),
    ]
    if retry_after is not None:
        headers.append(("retry-after", f"{retry_after:g}"))
    message = (
        "This request would exceed the rate limit for your organization of 50 requests per minute. For details, "
        "refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current "
        "usage. Please reduce the prompt length or the maximum tokens requested, or try again later."
    )
    return error_reply(429, "rate_limit_error", message, headers=headers)


def overloaded() -> Reply:
    """529 `overloaded_error`: Anthropic as a whole is overloaded (retryable)."""
    return error_reply(529, "overloaded_error", "Overloaded")


def server_error(status: int = 500) -> Reply:
    """500 `api_error`, or 504 `timeout_error`."""
    if status == 504:
        return error_reply(504, "timeout_error", "Request timed out")
    return error_reply(status, "api_error", "Internal server error")


def model_not_found(model: str) -> Reply:
    """404 for an unknown or retired model, as the API sends it: the message is "model: <id>"."""
    return error_reply(404, "not_found_error", f"model: {model}")


def prompt_too_long(tokens: int, maximum: int) -> Reply:
    """400 when the prompt does not fit the context window."""
    return error_reply(400, "invalid_request_error", f"prompt is too long: {tokens} tokens > {maximum} maximum")


def schema_rejected(message: str = GRAMMAR_TOO_LARGE) -> Reply:
    """400 when the structured-output grammar cannot be built from the schema."""
    return error_reply(400, "invalid_request_error", message)


def invalid_api_key() -> Reply:
    """401 for a wrong or missing key; the message never quotes the key."""
    return error_reply(401, "authentication_error", "invalid x-api-key")


def permission_denied() -> Reply:
    """403 when the key may not use the resource (a model the organisation cannot reach)."""
    return error_reply(403, "permission_error", "Your API key does not have permission to use the specified resource.")


def credit_balance_too_low() -> Reply:
    """400 for an account out of credit: permanent, though it comes as an `invalid_request_error`."""
    message = (
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or "
        "purchase credits."
    )
    return error_reply(400, "invalid_request_error", message)


def request_too_large() -> Reply:
    """413 from the front proxy for a body over 32 MB."""
    return error_reply(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")


# ---------------------------------------------------------------- the server


class AnthropicWire:
    """The Messages API's path, auth and error shapes for a LoopbackServer."""

    base_path: ClassVar[str] = ""
    response_headers: ClassVar[Mapping[str, str]] = {
        "anthropic-organization-id": "00000000-0000-0000-0000-000000000000"
    }
    paths: ClassVar[tuple[str, ...]] = (MESSAGES_PATH,)

    def serves(self, method: str, path: str) -> bool:
        return method == "POST" and path in self.paths

    def authorized(self, received: Received, api_key: str) -> bool:
        return received.headers.get("x-api-key") == api_key

    def unauthorized(self) -> Reply:
        return invalid_api_key()

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, "not_found_error", "Not Found")

    def invalid_json(self) -> Reply:
        # The real wording is not documented; the shape and status are.
        return error_reply(400, "invalid_request_error", "The request body is not valid JSON.")

    def rejected(self, violations: list[str]) -> Reply:
        return error_reply(400, "invalid_request_error", "; ".join(violations))

    def server_error(self, message: str) -> Reply:
        return error_reply(500, "api_error", message)


class AnthropicServer(LoopbackServer):
    """The Messages API on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    wire_factory = AnthropicWire
