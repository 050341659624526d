"""A loopback server that answers like Ollama's native chat API (`POST /api/chat`), for tests with no network.

    with OllamaServer() as server:
        server.enqueue(queue_full(), chat_reply('{"answer": 42}'))
        ...  # call server.base_url (no key: a local Ollama has no auth)

Bodies follow `ChatResponse` and `ErrorResponse` of Ollama's OpenAPI spec (`{"error": "<message>"}`), with the
statuses and messages the server sends [spec: server/routes.go, server/sched.go, llm/server.go]. Pass `api_key`
to play Ollama Cloud, which wants a Bearer key.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, ClassVar

from robustprompt.testing._server import BearerWire, Headers, LoopbackServer, Reply, json_reply, text_pieces

__all__ = [
    "OllamaServer",
    "OllamaWire",
    "chat_reply",
    "chat_stream",
    "error_reply",
    "model_not_found",
    "queue_full",
    "rate_limited",
    "schema_rejected",
    "server_error",
]

CHAT_PATH = "/api/chat"


# ---------------------------------------------------------------- replies


def chat_reply(
    content: str,
    *,
    done_reason: str = "stop",
    model: str = "llama3.2",
    prompt_eval_count: int | None = 26,
    eval_count: int = 12,
    thinking: str | None = None,
    headers: Headers = (),
) -> Reply:
    """A finished chat answer (`stream: false`). `prompt_eval_count=None` leaves it out, as Ollama does when the
    whole prompt came from its cache."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    payload: dict[str, Any] = {
        "model": model,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "message": message,
        "done": True,
        "done_reason": done_reason,
        "total_duration": 4_883_583_458,
        "load_duration": 1_334_875,
        "prompt_eval_duration": 342_546_000,
        "eval_count": eval_count,
        "eval_duration": 4_535_599_000,
    }
    if prompt_eval_count is not None:
        payload["prompt_eval_count"] = prompt_eval_count
    return json_reply(200, payload, headers)


def chat_stream(
    content: str,
    *,
    pieces: int | None = None,
    split: list[int] | None = None,
    done_reason: str = "stop",
    model: str = "llama3.2",
    chunk_delay: float = 0.0,
    error: str | None = None,
    cut: bool = False,
) -> Reply:
    """A streamed chat answer (PROVIDERS.md §11.8): `application/x-ndjson`, one object a line with a piece of
    `message.content`, then the `"done": true` line with the stop reason and counts. With `error`, the line
    `{"error": ...}` follows half the pieces and the stream ends; with `cut`, the connection drops mid-stream."""
    created = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")

    def line(text: str, **extra: Any) -> bytes:
        body = {"model": model, "created_at": created, "message": {"role": "assistant", "content": text}, **extra}
        return (json.dumps(body) + "\n").encode()

    texts = text_pieces(content, pieces, split)
    lines = [line(text, done=False) for text in texts]
    if error is not None:
        lines = [*lines[: len(lines) // 2], (json.dumps({"error": error}) + "\n").encode()]
        return Reply(200, headers=_STREAM_HEADERS, chunks=tuple(lines), chunk_delay=chunk_delay)
    counts = {"total_duration": 4_883_583_458, "prompt_eval_count": 26, "eval_count": len(texts)}
    lines.append(line("", done=True, done_reason=done_reason, **counts))
    return Reply(
        200, headers=_STREAM_HEADERS, chunks=tuple(lines), chunk_delay=chunk_delay, fault="truncate" if cut else None
    )


_STREAM_HEADERS = (("content-type", "application/x-ndjson"),)


def error_reply(status: int, message: str, headers: Headers = ()) -> Reply:
    """An error in Ollama's shape: `{"error": "<message>"}`."""
    return json_reply(status, {"error": message}, headers)


def model_not_found(model: str, *, pulled_hint: bool = False) -> Reply:
    """404 for a model that is not pulled; the scheduler's wording adds "try pulling it first"."""
    if pulled_hint:
        return error_reply(404, f'model "{model}" not found, try pulling it first')
    return error_reply(404, f"model '{model}' not found")


def queue_full() -> Reply:
    """503 when more requests wait than OLLAMA_MAX_QUEUE allows (ErrMaxQueue)."""
    return error_reply(503, "server busy, please try again.  maximum pending requests exceeded")


def schema_rejected() -> Reply:
    """The grammar converter refusing the `format` schema; the non-streaming handler sends it as a 500."""
    return error_reply(500, "invalid JSON schema in format")


def server_error(message: str = "an error was encountered while running the model") -> Reply:
    return error_reply(500, message)


def rate_limited(retry_after: float | None = None) -> Reply:
    """429 from an Ollama Cloud model (the body wording is not documented; the shape is Ollama's)."""
    headers = [("retry-after", f"{retry_after:g}")] if retry_after is not None else []
    return error_reply(429, "too many requests", headers)


# ---------------------------------------------------------------- the server


class OllamaWire(BearerWire):
    """Ollama's path, optional Bearer auth and error shapes for a LoopbackServer."""

    paths: ClassVar[tuple[str, ...]] = (CHAT_PATH,)

    def unauthorized(self) -> Reply:
        return error_reply(401, "unauthorized")

    def not_found(self, method: str, path: str) -> Reply:
        # gin's own answer for an unknown route: plain text, not JSON.
        return Reply(404, b"404 page not found", (("content-type", "text/plain"),))

    def invalid_json(self) -> Reply:
        return error_reply(400, "invalid character 'x' looking for beginning of value")

    def rejected(self, violations: list[str]) -> Reply:
        return error_reply(400, "; ".join(violations))

    def server_error(self, message: str) -> Reply:
        return error_reply(500, message)


class OllamaServer(LoopbackServer):
    """`/api/chat` on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    wire_factory = OllamaWire
