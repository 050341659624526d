"""A loopback server that answers like Cohere's Chat API v2 (`POST /v2/chat`), for tests with no network.

    with CohereServer(api_key="co-test") as server:
        server.enqueue(rate_limited(retry_after=0.1), chat_reply('{"answer": 42}'))
        ...  # call server.base_url with the key

Success bodies follow Cohere's SDK (`V2ChatResponse`: `message.content` items, `finish_reason`, `usage` with
`billed_units` and `tokens`, no model name). Errors are `{"id", "message"}` with the statuses and wording of
Cohere's errors reference (400 "invalid request: ...", "too many tokens: ...", 401 "invalid api token", 402, 404
"model 'x' not found, ...", 429, 499, 500).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar

from robustprompt.testing._server import BearerWire, Headers, LoopbackServer, Reply, json_reply, text_pieces

__all__ = [
    "CohereServer",
    "CohereWire",
    "chat_reply",
    "chat_stream",
    "error_reply",
    "model_not_found",
    "payment_required",
    "rate_limited",
    "schema_rejected",
    "server_error",
    "too_many_tokens",
]

CHAT_PATH = "/v2/chat"


# ---------------------------------------------------------------- replies


def chat_reply(
    text: str,
    *,
    finish_reason: str = "COMPLETE",
    input_tokens: int = 10,
    output_tokens: int = 5,
    thinking: str | None = None,
    billed: bool = True,
    headers: Headers = (),
) -> Reply:
    """A chat answer. With `thinking`, a thinking item comes before the text, as reasoning models send it;
    `billed=False` leaves `billed_units` out of the usage. `tokens` counts include Cohere's prompt template."""
    content: list[dict[str, str]] = [{"type": "text", "text": text}]
    if thinking is not None:
        content.insert(0, {"type": "thinking", "thinking": thinking})
    usage: dict[str, Any] = {"tokens": {"input_tokens": input_tokens + 500, "output_tokens": output_tokens + 2}}
    if billed:
        usage["billed_units"] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    payload = {
        "id": str(uuid.uuid4()),
        "message": {"role": "assistant", "content": content},
        "finish_reason": finish_reason,
        "usage": usage,
    }
    return json_reply(200, payload, headers)


def chat_stream(
    text: str,
    *,
    pieces: int | None = None,
    split: list[int] | None = None,
    finish_reason: str = "COMPLETE",
    thinking: str | None = None,
    chunk_delay: float = 0.0,
    error: str | None = None,
    cut: bool = False,
) -> Reply:
    """A streamed v2 chat answer as Cohere sends it (PROVIDERS.md §11.7): `message-start`, `content-start`, the
    text in `content-delta` events (after a thinking block's deltas, with `thinking`), `content-end`,
    `message-end` with the finish reason and usage, then a bare `data: [DONE]`. With `error`, `message-end`
    comes after half the deltas with `finish_reason: "ERROR"` and that `error` string; with `cut`, the
    connection drops mid-stream."""

    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data}, separators=(',', ':'))}\n\n".encode()

    def content(index: int, **item: str) -> dict[str, Any]:
        return {"index": index, "delta": {"message": {"content": item}}}

    start = {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}
    events = [event("message-start", id=str(uuid.uuid4()), delta=start)]
    index = 0
    if thinking is not None:
        events.append(event("content-start", **content(0, type="thinking", thinking="")))
        events.append(event("content-delta", **content(0, thinking=thinking)))
        events.append(event("content-end", index=0))
        index = 1
    texts = text_pieces(text, pieces, split)
    deltas = [event("content-delta", **content(index, text=piece)) for piece in texts]
    events.append(event("content-start", **content(index, type="text", text="")))
    usage = {
        "billed_units": {"input_tokens": 10, "output_tokens": 5},
        "tokens": {"input_tokens": 510, "output_tokens": 7},
    }
    if error is not None:
        events += deltas[: len(deltas) // 2]
        events.append(event("message-end", delta={"finish_reason": "ERROR", "error": error, "usage": usage}))
        return Reply(200, headers=_STREAM_HEADERS, chunks=(*events, b"data: [DONE]\n\n"), chunk_delay=chunk_delay)
    events += [*deltas, event("content-end", index=index)]
    events.append(event("message-end", delta={"finish_reason": finish_reason, "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return Reply(
        200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay, fault="truncate" if cut else None
    )


_STREAM_HEADERS = (("content-type", "text/event-stream"),)


def error_reply(status: int, message: str, headers: Headers = ()) -> Reply:
    """An error in Cohere's shape: `{"id": ..., "message": ...}`."""
    return json_reply(status, {"id": str(uuid.uuid4()), "message": message}, headers)


def model_not_found(model: str) -> Reply:
    return error_reply(
        404,
        f"model '{model}' not found, make sure the correct model ID was used and that you have access to the model.",
    )


def rate_limited(retry_after: float | None = None) -> Reply:
    headers = [("retry-after", f"{retry_after:g}")] if retry_after is not None else []
    return error_reply(429, "You are past the per minute request limit, please wait and try again later.", headers)


def payment_required() -> Reply:
    return error_reply(
        402,
        "Please add or update your payment method at https://dashboard.cohere.com/billing?tab=payment to continue",
    )


def too_many_tokens(limit: int = 4081, got: int = 4292) -> Reply:
    return error_reply(
        400,
        f"too many tokens: total number of tokens in the prompt cannot exceed {limit} - received {got}. Try using "
        "a shorter prompt, or enabling prompt truncating. See https://docs.cohere.com/reference/generate for more "
        "details.",
    )


def schema_rejected(message: str = "required field name not found in properties") -> Reply:
    """400 for a schema Cohere refuses (the default is a wording from its errors reference)."""
    return error_reply(400, message)


def server_error(status: int = 500) -> Reply:
    """A 5xx (the reference gives no wording for these; the shape is Cohere's)."""
    return error_reply(status, "internal server error")


# ---------------------------------------------------------------- the server


class CohereWire(BearerWire):
    """Cohere's path, Bearer auth and error shapes for a LoopbackServer."""

    paths: ClassVar[tuple[str, ...]] = (CHAT_PATH,)

    def unauthorized(self) -> Reply:
        return error_reply(401, "invalid api token")

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, "404 page not found")

    def invalid_json(self) -> Reply:
        return error_reply(400, "invalid json syntax: invalid character 'x' looking for beginning of value")

    def rejected(self, violations: list[str]) -> Reply:
        return error_reply(400, "invalid request: " + "; ".join(violations))

    def server_error(self, message: str) -> Reply:
        return error_reply(500, message)


class CohereServer(LoopbackServer):
    """`/v2/chat` on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    wire_factory = CohereWire
