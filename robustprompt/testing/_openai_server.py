"""A loopback server that answers like OpenAI's Chat Completions API, for tests with no network.

Script it with replies (`chat_reply`, `error_reply` and the ready-made error shapes), point a client at
`base_url`, then look at what it received:

    with OpenAIServer(api_key="sk-test") as server:
        server.enqueue(rate_limited(retry_after=0.1), chat_reply('{"answer": 42}'))
        ...  # call server.base_url with the key
        assert len(server.requests) == 2

Bodies follow the OpenAI spec's `CreateChatCompletionResponse` and `ErrorResponse`, with the messages the
real API sends.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from robustprompt.testing._server import BearerWire, Headers, LoopbackServer, Reply, json_reply, text_pieces

__all__ = [
    "OpenAIServer",
    "OpenAIWire",
    "chat_reply",
    "chat_stream",
    "context_too_long",
    "error_reply",
    "insufficient_quota",
    "invalid_api_key",
    "model_not_found",
    "rate_limited",
    "schema_rejected",
    "server_error",
    "stream_error",
]

CHAT_PATH = "/v1/chat/completions"
_SCHEMA_REJECTED = "Invalid schema for response_format"


# ---------------------------------------------------------------- replies


def chat_reply(
    content: str | None,
    *,
    finish_reason: str = "stop",
    refusal: str | None = None,
    model: str = "gpt-4.1-mini-2025-04-14",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    tool_arguments: str | None = None,
    tool_name: str = "output",
    headers: Headers = (),
) -> Reply:
    """A chat completion. With `tool_arguments`, the answer is a forced call of the tool `tool_name` (whose
    finish reason stays "stop", as it does when a named tool is forced) and `content` is null."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal, "annotations": []}
    if tool_arguments is not None:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": tool_name, "arguments": tool_arguments},
            }
        ]
    payload = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_robustprompt",
    }
    return json_reply(200, payload, headers)


def chat_stream(
    content: str,
    *,
    pieces: int | None = None,
    split: list[int] | None = None,
    finish_reason: str = "stop",
    tool: bool = False,
    usage: bool = True,
    model: str = "gpt-4.1-mini-2025-04-14",
    chunk_delay: float = 0.0,
    error: dict[str, Any] | None = None,
    cut: bool = False,
) -> Reply:
    """A streamed chat completion as the API sends it (PROVIDERS.md §11.1): a role chunk, `content` (or, with
    `tool`, a forced call's `arguments`) cut into `pieces` deltas (default: about 8 characters each) or at the
    offsets in `split`, a finish chunk, the usage chunk with no choices (`usage`), and `data: [DONE]`. Each
    event is its own HTTP chunk. With `error`, that object arrives as `data: {"error": ...}` after the first
    half of the deltas and the stream stops, as OpenAI's does; with `cut`, the connection drops mid-stream."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
    texts = text_pieces(content, pieces, split)

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        body |= {"system_fingerprint": "fp_robustprompt", "choices": choices, **extra}
        return f"data: {json.dumps(body, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()

    first: dict[str, Any] = {"role": "assistant", "content": None if tool else "", "refusal": None}
    if tool:
        call = {"index": 0, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "function"}
        first["tool_calls"] = [call | {"function": {"name": "output", "arguments": ""}}]
    events = [chunk(first)]
    for text in texts:
        delta = {"tool_calls": [{"index": 0, "function": {"arguments": text}}]} if tool else {"content": text}
        events.append(chunk(delta, obfuscation="x" * (len(text) % 5)))  # the padding real chunks carry
    if error is not None:
        events = [*events[: 1 + len(texts) // 2], f"data: {json.dumps({'error': error})}\n\n".encode()]
        return Reply(200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay)
    events.append(chunk({}, finish_reason))
    if usage:
        events.append(chunk(None, usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}))
    events.append(b"data: [DONE]\n\n")
    return Reply(
        200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay, fault="truncate" if cut else None
    )


def stream_error(
    message: str = "The server had an error while processing your request.", *, type: str = "server_error"
) -> dict[str, Any]:
    """The error object OpenAI sends inside a 200 stream, for `chat_stream(error=...)`."""
    return {"message": message, "type": type, "param": None, "code": None}


_STREAM_HEADERS = (("content-type", "text/event-stream; charset=utf-8"),)


def error_reply(
    status: int,
    message: str,
    *,
    type: str,
    code: str | None = None,
    param: str | None = None,
    headers: Headers = (),
) -> Reply:
    """An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""
    return json_reply(status, {"error": {"message": message, "type": type, "param": param, "code": code}}, headers)


def rate_limited(retry_after: float | None = None, retry_after_ms: int | None = None) -> Reply:
    """429 rate limit (retryable), with `retry-after` / `retry-after-ms` headers when given."""
    headers = [("x-ratelimit-limit-requests", "500"), ("x-ratelimit-remaining-requests", "0")]
    if retry_after is not None:
        headers.append(("retry-after", f"{retry_after:g}"))
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", str(retry_after_ms)))
    wait = f"{retry_after:g}s" if retry_after is not None else f"{retry_after_ms or 20}ms"
    message = (
        "Rate limit reached for gpt-4.1-mini in organization org-test on requests per min (RPM): "
        f"Limit 500, Used 500, Requested 1. Please try again in {wait}. "
        "Visit https://platform.openai.com/account/rate-limits to learn more."
    )
    return error_reply(429, message, type="requests", code="rate_limit_exceeded", headers=headers)


def insufficient_quota() -> Reply:
    """429 out of credit: not retryable, unlike a rate limit."""
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
    )
    return error_reply(429, message, type="insufficient_quota", code="insufficient_quota")


def model_not_found(model: str) -> Reply:
    """404 for an unknown or retired model."""
    message = f"The model `{model}` does not exist or you do not have access to it."
    return error_reply(404, message, type="invalid_request_error", code="model_not_found")


def server_error(status: int = 500) -> Reply:
    """A 5xx; 503 says the engine is overloaded, as OpenAI's does."""
    if status == 503:
        return error_reply(503, "The engine is currently overloaded, please try again later.", type="server_error")
    message = "The server had an error while processing your request. Sorry about that!"
    return error_reply(status, message, type="server_error")


def context_too_long(limit: int, got: int) -> Reply:
    """400 when the prompt does not fit the context window."""
    message = (
        f"This model's maximum context length is {limit} tokens. However, your messages resulted in {got} "
        "tokens. Please reduce the length of the messages."
    )
    return error_reply(400, message, type="invalid_request_error", code="context_length_exceeded", param="messages")


def schema_rejected(name: str, reason: str) -> Reply:
    """400 when strict mode rejects the response_format schema, e.g. with the reason
    "In context=(), 'additionalProperties' is required to be supplied and to be false"."""
    message = f"{_SCHEMA_REJECTED} '{name}': {reason}"
    return error_reply(400, message, type="invalid_request_error", param="response_format")


def invalid_api_key() -> Reply:
    """401 for a wrong key. OpenAI masks the key it quotes; this never quotes it at all."""
    message = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
    return error_reply(401, message, type="invalid_request_error", code="invalid_api_key")


# ---------------------------------------------------------------- the server


class OpenAIWire(BearerWire):
    """OpenAI's paths, auth and error shapes for a LoopbackServer."""

    base_path: ClassVar[str] = "/v1"
    response_headers: ClassVar[Mapping[str, str]] = {"openai-processing-ms": "1"}
    paths: ClassVar[tuple[str, ...]] = (CHAT_PATH,)

    def unauthorized(self) -> Reply:
        return invalid_api_key()

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, f"Invalid URL ({method} {path})", type="invalid_request_error")

    def invalid_json(self) -> Reply:
        message = (
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
            "JSON.)"
        )
        return error_reply(400, message, type="invalid_request_error")

    def rejected(self, violations: list[str]) -> Reply:
        # A schema problem goes first so the message starts as OpenAI's does and clients can tell it apart.
        ordered = sorted(violations, key=lambda v: not v.startswith(_SCHEMA_REJECTED))
        param = "response_format" if ordered[0].startswith(_SCHEMA_REJECTED) else None
        return error_reply(400, "; ".join(ordered), type="invalid_request_error", param=param)

    def server_error(self, message: str) -> Reply:
        return error_reply(500, message, type="server_error")


class OpenAIServer(LoopbackServer):
    """Chat Completions on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    wire_factory = OpenAIWire
