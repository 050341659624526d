"""A loopback server that answers like OpenAI's Responses API (`POST /v1/responses`), for tests with no network.

Errors have the same shapes as on Chat Completions, so the builders of `_openai_server` (`rate_limited`,
`model_not_found`, `server_error`, ...) serve here too; this module adds the Responses bodies:

    with ResponsesServer(api_key="sk-test") as server:
        server.enqueue(rate_limited(retry_after=0.1), response_reply('{"answer": 42}'))
        ...  # POST {server.base_url}/responses with the key

Bodies follow the OpenAI spec's `Response` and `ErrorResponse`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, ClassVar, Literal

from robustprompt.testing._openai_server import OpenAIWire, error_reply
from robustprompt.testing._server import Headers, LoopbackServer, Reply, json_reply, text_pieces

__all__ = [
    "RESPONSES_PATH",
    "ResponsesServer",
    "ResponsesWire",
    "failed_reply",
    "format_schema_rejected",
    "response_reply",
    "response_stream",
]

RESPONSES_PATH = "/v1/responses"
_SCHEMA_REJECTED = "Invalid schema for response_format"
_FUNCTION_REJECTED = "Invalid schema for function"
_UNKNOWN = re.compile(r"Unknown parameter: '(?P<name>[^']+)'")


def response_reply(
    text: str | None,
    *,
    status: str = "completed",
    incomplete_reason: str | None = None,
    refusal: str | None = None,
    function_arguments: str | None = None,
    function_name: str = "output",
    reasoning: bool = False,
    model: str = "gpt-4.1-mini-2025-04-14",
    input_tokens: int = 10,
    output_tokens: int = 5,
    headers: Headers = (),
) -> Reply:
    """A response. `text` and `refusal` become the parts of one assistant message; `function_arguments` makes the
    answer a function call instead; `reasoning` puts a reasoning item first, as reasoning models do."""
    output: list[dict[str, Any]] = []
    if reasoning:
        output.append({"id": f"rs_{uuid.uuid4().hex}", "type": "reasoning", "summary": []})
    if function_arguments is not None:
        output.append(_function_call(function_name, function_arguments, status))
    parts = [_text_part(text)] if text is not None else []
    parts += [{"type": "refusal", "refusal": refusal}] if refusal is not None else []
    if parts:
        output.append(_message(parts, status))
    payload = _response(output, status, model, input_tokens, output_tokens)
    payload["incomplete_details"] = {"reason": incomplete_reason} if incomplete_reason else None
    return json_reply(200, payload, headers)


def response_stream(
    text: str,
    *,
    pieces: int | None = None,
    split: list[int] | None = None,
    function: bool = False,
    status: Literal["completed", "incomplete", "failed"] = "completed",
    model: str = "gpt-4.1-mini-2025-04-14",
    chunk_delay: float = 0.0,
    error: Literal["flat", "nested"] | None = None,
    cut: bool = False,
) -> Reply:
    """A streamed response as the API sends it (PROVIDERS.md §11.2): named events with a `sequence_number` that
    grows by one, `response.created`, `.in_progress`, the output item (a message, or with `function` a function
    call), the text (or arguments) cut into deltas, their `.done` events, and one terminal event (`status`) whose
    `response` holds the whole output and the usage; no `[DONE]`. With `error`, an `event: error` in the spec's
    flat shape or the nested one the live API sends follows half the deltas, and the stream ends there; with
    `cut`, the connection drops mid-stream."""
    sequence = iter(range(1_000_000))
    texts = text_pieces(text, pieces, split)

    def event(kind: str, **data: Any) -> bytes:
        payload = json.dumps({"type": kind, "sequence_number": next(sequence), **data}, separators=(",", ":"))
        return f"event: {kind}\ndata: {payload}\n\n".encode()

    item = _function_call("output", "", "in_progress") if function else _message([], "in_progress")
    item["status"] = "in_progress"
    where = {"item_id": item["id"], "output_index": 0}
    started = _response([], "in_progress", model, 0, 0) | {"usage": None}
    events = [event("response.created", response=started), event("response.in_progress", response=started)]
    events.append(event("response.output_item.added", output_index=0, item=item))
    if not function:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append(event("response.content_part.added", **where, content_index=0, part=part))
    for piece in texts:
        if function:
            events.append(event("response.function_call_arguments.delta", **where, delta=piece, obfuscation="x"))
        else:
            extra = {"content_index": 0, "logprobs": [], "obfuscation": "x" * (len(piece) % 5)}
            events.append(event("response.output_text.delta", **where, **extra, delta=piece))
    if error is not None:
        err = {"type": "too_many_requests", "code": "too_many_requests", "message": "Too Many Requests", "param": None}
        events = events[: len(events) - len(texts) // 2]
        if error == "nested":
            events.append(event("error", error=err))
        else:
            events.append(event("error", **{k: v for k, v in err.items() if k != "type"}))
        return Reply(200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay)
    done = _function_call("output", text, status) if function else _message([_text_part(text)], status)
    done["id"] = item["id"]
    if function:
        events.append(event("response.function_call_arguments.done", **where, name="output", arguments=text))
    else:
        events.append(event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]))
        events.append(event("response.content_part.done", **where, content_index=0, part=_text_part(text)))
    events.append(event("response.output_item.done", output_index=0, item=done))
    final = _response([done], status, model, 10, len(texts))
    if status == "incomplete":
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    if status == "failed":
        final["output"], final["error"] = [], {"code": "server_error", "message": "The model failed."}
    events.append(event(f"response.{status}", response=final))
    return Reply(
        200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay, fault="truncate" if cut else None
    )


_STREAM_HEADERS = (("content-type", "text/event-stream; charset=utf-8"),)


def failed_reply(code: str, message: str, *, model: str = "gpt-4.1-mini-2025-04-14") -> Reply:
    """A 200 whose response failed (`status: "failed"`), with the error object the spec gives it."""
    payload = _response([], "failed", model, 0, 0)
    payload["error"] = {"code": code, "message": message}
    return json_reply(200, payload)


def format_schema_rejected(name: str, reason: str) -> Reply:
    """400 when strict mode rejects the `text.format` schema; the wording is the one Chat Completions uses."""
    message = f"{_SCHEMA_REJECTED} '{name}': {reason}"
    return error_reply(400, message, type="invalid_request_error", param="text.format.schema")


def _response(output: list[dict[str, Any]], status: str, model: str, input_tokens: int, output_tokens: int) -> Any:
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "metadata": {},
    }


def _item_status(status: str) -> str:
    return "incomplete" if status == "incomplete" else "completed"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "status": _item_status(status),
        "content": parts,
    }


def _function_call(name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": f"fc_{uuid.uuid4().hex}",
        "type": "function_call",
        "call_id": f"call_{uuid.uuid4().hex[:24]}",
        "name": name,
        "arguments": arguments,
        "status": _item_status(status),
    }


class ResponsesWire(OpenAIWire):
    """The Responses endpoint: OpenAI's auth and error shapes on `/v1/responses`."""

    paths: ClassVar[tuple[str, ...]] = (RESPONSES_PATH,)

    def rejected(self, violations: list[str]) -> Reply:
        # Schema problems first, so the message starts as OpenAI's does; `param` points into the flat body.
        ordered = sorted(violations, key=lambda v: not v.startswith(_SCHEMA_REJECTED))
        param = code = None
        if ordered[0].startswith(_SCHEMA_REJECTED):
            param = "text.format.schema"
        elif ordered[0].startswith(_FUNCTION_REJECTED):
            param = "tools"
        elif unknown := _UNKNOWN.match(ordered[0]):
            param, code = unknown["name"], "unknown_parameter"
        return error_reply(400, "; ".join(ordered), type="invalid_request_error", param=param, code=code)


class ResponsesServer(LoopbackServer):
    """The Responses API on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    wire_factory = ResponsesWire
