"""A loopback server that answers like Mistral's Chat Completions API, for tests with no network.

    with MistralServer(api_key="mistral-test") as server:
        server.enqueue(rate_limited(retry_after=0.1), chat_reply('{"answer": 42}'))
        ...  # call server.base_url with the key

Success bodies follow Mistral's SDK (`ChatCompletionResponse`: `prompt_tokens`/`completion_tokens` usage, string
or chunked `content`, `finish_reason` including `model_length`). Error bodies are the shapes observed from the
real API: `{"object": "error", "message", "type", "param", "code"}` (400 `invalid_model` code "1500", 429
`rate_limited` code "1300", 400 `invalid_request_error` for a refused schema), FastAPI's `{"detail": [...]}` for a
body it refuses (422, `extra_forbidden` for an unknown field) and `{"detail": "Unauthorized"}` for a bad key.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from typing import Any, ClassVar

from robustprompt.testing._server import BearerWire, Headers, LoopbackServer, Reply, json_reply, text_pieces

__all__ = [
    "MistralServer",
    "MistralWire",
    "chat_reply",
    "chat_stream",
    "error_reply",
    "invalid_model",
    "rate_limited",
    "schema_rejected",
    "server_error",
    "validation_error",
]

CHAT_PATH = "/v1/chat/completions"
# A checker's violation that the real API answers with a 400 naming the schema, not with a 422.
SCHEMA_VIOLATION = "Invalid schema"


# ---------------------------------------------------------------- replies


def chat_reply(
    content: str | None,
    *,
    finish_reason: str = "stop",
    model: str = "mistral-small-2506",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    tool_arguments: str | None = None,
    tool_name: str = "output",
    thinking: str | None = None,
    headers: Headers = (),
) -> Reply:
    """A chat completion. With `tool_arguments` the answer is a call of `tool_name` (finish reason "tool_calls");
    with `thinking`, content comes as chunks, a thinking chunk then a text chunk, as reasoning models send it."""
    message: dict[str, Any] = {"role": "assistant", "tool_calls": None, "content": content}
    if thinking is not None:
        message["content"] = [
            {"type": "thinking", "thinking": [{"type": "text", "text": thinking}]},
            {"type": "text", "text": content or ""},
        ]
    if tool_arguments is not None:
        message["content"] = ""
        call_id = "".join(random.choices(string.ascii_letters + string.digits, k=9))
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": tool_name, "arguments": tool_arguments},
                "index": 0,
            }
        ]
        finish_reason = "tool_calls"
    payload = {
        "id": uuid.uuid4().hex,
        "object": "chat.completion",
        "model": model,
        "created": int(time.time()),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return json_reply(200, payload, headers)


def chat_stream(
    content: str,
    *,
    pieces: int | None = None,
    split: list[int] | None = None,
    finish_reason: str = "stop",
    tool: bool = False,
    thinking: str | None = None,
    model: str = "mistral-small-2506",
    chunk_delay: float = 0.0,
    error: bool = False,
    cut: bool = False,
) -> Reply:
    """A streamed chat completion as Mistral sends it (PROVIDERS.md §11.6): OpenAI-shaped `data:` chunks and
    `data: [DONE]`, no `obfuscation`, a role chunk with `content: ""`, the content cut into deltas (with
    `thinking`, the first is a list of chunks, thinking then text), the usage on the last content chunk together
    with the finish reason, no empty-choices chunk. With `tool`, the call arrives whole in one delta. With
    `error`, a chunk with `finish_reason: "error"` follows half the deltas; with `cut`, the connection drops."""
    ident, created = uuid.uuid4().hex, int(time.time())
    usage = {"prompt_tokens": 10, "total_tokens": 15, "completion_tokens": 5}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        return f"data: {json.dumps(body | {'choices': [choice]} | extra, separators=(',', ':'))}\n\n".encode()

    if tool:
        call_id = "".join(random.choices(string.ascii_letters + string.digits, k=9))
        function = {"name": "output", "arguments": content}
        deltas: list[dict[str, Any]] = [
            {"content": "", "tool_calls": [{"id": call_id, "function": function, "index": 0}]}
        ]
        finish_reason = "tool_calls"
    else:
        deltas = [{"content": text} for text in text_pieces(content, pieces, split)]
        if thinking is not None:
            first = [{"type": "thinking", "thinking": [{"type": "text", "text": thinking}]}]
            deltas[0] = {"content": [*first, {"type": "text", "text": deltas[0]["content"]}]}
    events = [chunk({"role": "assistant", "content": ""})]
    if error:
        events += [chunk(delta) for delta in deltas[: len(deltas) // 2]]
        events += [chunk({"content": ""}, "error", usage=usage), b"data: [DONE]\n\n"]
        return Reply(200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay)
    events += [chunk(delta) for delta in deltas[:-1]]
    events += [chunk(deltas[-1], finish_reason, usage=usage), b"data: [DONE]\n\n"]
    return Reply(
        200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay, fault="truncate" if cut else None
    )


_STREAM_HEADERS = (("content-type", "text/event-stream; charset=utf-8"),)


def error_reply(
    status: int, message: Any, *, type: str, code: str | None = None, param: str | None = None, headers: Headers = ()
) -> Reply:
    """An error in Mistral's API shape: `{"object": "error", "message", "type", "param", "code"}`."""
    payload = {"object": "error", "message": message, "type": type, "param": param, "code": code}
    return json_reply(status, payload, headers)


def invalid_model(model: str) -> Reply:
    """400 for an unknown or retired model (observed: code "1500")."""
    return error_reply(400, f"Invalid model: {model}", type="invalid_model", code="1500")


def rate_limited(retry_after: float | None = None) -> Reply:
    """429 (observed: code "1300"); the `retry-after` header is sent when given."""
    headers = [("retry-after", f"{retry_after:g}")] if retry_after is not None else []
    return error_reply(429, "Rate limit exceeded", type="rate_limited", code="1300", headers=headers)


def schema_rejected(reason: str = "Grammar error: at 3(11): failed to compile JSON schema") -> Reply:
    """400 for a schema the server cannot compile; the default wording is one observed for `$schema`/`$id`."""
    return error_reply(400, reason, type="invalid_request_error")


def validation_error(loc: list[str | int], msg: str, kind: str = "extra_forbidden", value: Any = None) -> Reply:
    """422 for a body FastAPI refuses, e.g. an unknown field (observed for `store`, `max_completion_tokens`)."""
    return json_reply(422, {"detail": [{"type": kind, "loc": loc, "msg": msg, "input": value}]})


def server_error(status: int = 500) -> Reply:
    """A 5xx (Mistral's wording for these is not documented; the shape is its error shape)."""
    message = "Service unavailable" if status == 503 else "Internal server error"
    return error_reply(status, message, type="internal_server_error")


# ---------------------------------------------------------------- the server


class MistralWire(BearerWire):
    """Mistral's path, Bearer auth and error shapes for a LoopbackServer."""

    base_path: ClassVar[str] = "/v1"
    paths: ClassVar[tuple[str, ...]] = (CHAT_PATH,)

    def unauthorized(self) -> Reply:
        return json_reply(401, {"detail": "Unauthorized"})

    def not_found(self, method: str, path: str) -> Reply:
        return json_reply(404, {"detail": "Not Found"})

    def invalid_json(self) -> Reply:
        return validation_error(["body", 0], "JSON decode error", kind="json_invalid")

    def rejected(self, violations: list[str]) -> Reply:
        """A schema the server cannot take is a 400 naming it; any other problem is FastAPI's 422. Checkers
        write a violation as "body.path: message"."""
        schema = [v for v in violations if v.startswith(SCHEMA_VIOLATION)]
        if schema:
            return error_reply(400, "; ".join(schema), type="invalid_request_error")
        detail = []
        for violation in violations:
            where, _, msg = violation.partition(": ")
            detail.append({"type": "value_error", "loc": where.split("."), "msg": msg, "input": None})
        return json_reply(422, {"detail": detail})

    def server_error(self, message: str) -> Reply:
        return error_reply(500, message, type="internal_server_error")


class MistralServer(LoopbackServer):
    """Chat Completions on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    wire_factory = MistralWire
