"""A loopback server that answers like Gemini's generateContent API, for tests with no network.

Script it with replies (`generate_reply`, `status_reply` and the ready-made error shapes), point a client at
`base_url` (the API root: requests go to `/v1beta/models/{model}:generateContent`), then look at what it
received:

    with GeminiServer(api_key="AIza-test") as server:
        server.enqueue(overloaded(), generate_reply('{"answer": 42}'))
        ...  # call server.base_url with the key in x-goog-api-key
        assert len(server.requests) == 2

Errors are google.rpc Status bodies (`{"error": {"code", "message", "status", "details"}}`) with the messages
the real API sends (PROVIDERS.md §7). A wrong key gets the real 400 `API_KEY_INVALID`; the 403 the API gives
to a request with no key at all is available as `permission_denied()`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs

from robustprompt.testing._server import Headers, LoopbackServer, Received, Reply, json_reply, text_pieces

__all__ = [
    "GENERATE_PATH",
    "TOO_MANY_STATES",
    "GeminiServer",
    "GeminiWire",
    "blocked_prompt",
    "context_too_long",
    "generate_reply",
    "generate_stream",
    "invalid_api_key",
    "mode_not_enabled",
    "model_not_found",
    "overloaded",
    "permission_denied",
    "rate_limited",
    "schema_rejected",
    "server_error",
    "status_reply",
]

GENERATE_PATH = re.compile(r"/v1beta/models/(?P<model>[^/:]+):(?:streamGenerateContent|generateContent)")
TOO_MANY_STATES = (
    "The specified schema produces a constraint that has too many states for serving.  Typical causes of this "
    "error are schemas with lots of text (for example, very long property or enum names), schemas with long "
    "array length limits (especially when nested), or schemas using complex value matchers (for example, "
    "integers or numbers with minimum/maximum bounds or strings with complex formats like date-time)"
)
_RPC = "type.googleapis.com/google.rpc."
_REFUSALS = frozenset({"SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"})
_RATINGS = ("HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_HARASSMENT")


# ---------------------------------------------------------------- replies


def generate_reply(
    text: str | None,
    *,
    finish_reason: str = "STOP",
    function_args: Mapping[str, Any] | None = None,
    function_name: str = "classify",
    thought: str | None = None,
    prompt_tokens: int = 10,
    candidates_tokens: int = 5,
    thoughts_tokens: int = 0,
    model_version: str = "gemini-2.5-flash",
    headers: Headers = (),
) -> Reply:
    """A `GenerateContentResponse` with one candidate.

    With `function_args` the answer is a `functionCall` part (what `mode: ANY` forces); with `thought` a thought
    summary part comes first. A refusal finish reason (`SAFETY`, ...) with no text has no content at all, and
    any other finish with no text an empty one, as a thinking model that spent its budget returns.
    """
    parts: list[dict[str, Any]] = [{"text": thought, "thought": True}] if thought is not None else []
    if text is not None:
        parts.append({"text": text})
    if function_args is not None:
        parts.append({"functionCall": {"name": function_name, "args": dict(function_args)}})
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    elif finish_reason not in _REFUSALS:
        candidate["content"] = {"role": "model"}
    if finish_reason in _REFUSALS:
        candidate["safetyRatings"] = _ratings(blocked=finish_reason == "SAFETY")
    payload = {
        "candidates": [candidate],
        "usageMetadata": _usage(prompt_tokens, candidates_tokens, thoughts_tokens),
        "modelVersion": model_version,
        "responseId": uuid.uuid4().hex[:22],
    }
    return json_reply(200, payload, headers)


def generate_stream(
    text: str,
    *,
    pieces: int | None = None,
    split: list[int] | None = None,
    finish_reason: str = "STOP",
    function_args: Mapping[str, Any] | None = None,
    function_name: str = "classify",
    thought: str | None = None,
    crlf: bool = False,
    model_version: str = "gemini-2.5-flash",
    chunk_delay: float = 0.0,
    error: Literal["data", "raw"] | None = None,
    cut: bool = False,
) -> Reply:
    """`streamGenerateContent?alt=sse` as the API sends it (PROVIDERS.md §11.5): `data:` lines only, each a whole
    `GenerateContentResponse` with Google's `": "` spacing, the text cut into parts (a `thought` part first), the
    cumulative `usageMetadata` on every chunk, the `finishReason` on the last, and no `[DONE]`. With
    `function_args` the answer is one chunk holding the whole `functionCall`. `crlf` frames the events as Vertex
    and some proxies do. With `error`, a 429 Status follows half the chunks, as a `data:` payload or as raw
    pretty-printed JSON outside the framing, and the stream ends; with `cut`, the connection drops mid-stream."""
    end = "\r\n" if crlf else "\n"
    response_id = uuid.uuid4().hex[:22]
    parts: list[dict[str, Any]] = [{"text": thought, "thought": True}] if thought is not None else []
    if function_args is not None:
        parts.append({"functionCall": {"name": function_name, "args": dict(function_args)}})
    else:
        parts += [{"text": piece} for piece in text_pieces(text, pieces, split)]

    def chunk(index: int, part: dict[str, Any]) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}}
        last = index == len(parts) - 1
        if last:
            candidate |= {"finishReason": finish_reason, "index": 0}
        payload = {
            "candidates": [candidate],
            "usageMetadata": _usage(10, index + 1 if last else 0, 0),
            "modelVersion": model_version,
            "responseId": response_id,
        }
        return f"data: {json.dumps(payload, separators=(',', ': '), ensure_ascii=False)}{end}{end}".encode()

    events = [chunk(index, part) for index, part in enumerate(parts)]
    if error is not None:
        status = {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
        }
        body = {"error": status}
        raw = json.dumps(body, indent=2) + "\n" if error == "raw" else f"data: {json.dumps(body)}{end}{end}"
        events = [*events[: len(events) // 2], raw.encode()]
        return Reply(200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay)
    return Reply(
        200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay, fault="truncate" if cut else None
    )


_STREAM_HEADERS = (("content-type", "text/event-stream"),)


def blocked_prompt(
    reason: str = "SAFETY", *, prompt_tokens: int = 10, model_version: str = "gemini-2.5-flash"
) -> Reply:
    """200 with no candidates: the prompt itself was blocked (`promptFeedback.blockReason`)."""
    payload = {
        "promptFeedback": {"blockReason": reason, "safetyRatings": _ratings(blocked=reason == "SAFETY")},
        "usageMetadata": _usage(prompt_tokens, 0, 0),
        "modelVersion": model_version,
        "responseId": uuid.uuid4().hex[:22],
    }
    return json_reply(200, payload)


def status_reply(
    code: int, status: str, message: str, *, details: Sequence[Mapping[str, Any]] = (), headers: Headers = ()
) -> Reply:
    """An error as a google.rpc Status: `{"error": {"code", "message", "status", "details"?}}`."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = [dict(d) for d in details]
    return json_reply(code, {"error": error}, headers)


def invalid_api_key() -> Reply:
    """400 (not 401) for a wrong key, with the ErrorInfo reason clients tell it apart by."""
    message = "API key not valid. Please pass a valid API key."
    details: list[dict[str, Any]] = [
        {
            "@type": f"{_RPC}ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {"@type": f"{_RPC}LocalizedMessage", "locale": "en-US", "message": message},
    ]
    return status_reply(400, "INVALID_ARGUMENT", message, details=details)


def permission_denied() -> Reply:
    """403 for a request that carries no key at all."""
    message = (
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
        "or other form of API consumer identity to call this API."
    )
    return status_reply(403, "PERMISSION_DENIED", message)


def model_not_found(model: str) -> Reply:
    """404 for an unknown or shut-down model."""
    message = (
        f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods."
    )
    return status_reply(404, "NOT_FOUND", message)


def rate_limited(retry_delay: float | None = None, *, per_day: bool = False, model: str = "gemini-2.5-flash") -> Reply:
    """429 `RESOURCE_EXHAUSTED` with a QuotaFailure naming the quota (per minute, or per day when `per_day`:
    not worth retrying before the reset) and, with `retry_delay`, a RetryInfo."""
    period = "PerDay" if per_day else "PerMinute"
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": f"GenerateRequests{period}PerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": "250" if per_day else "10",
    }
    details: list[dict[str, Any]] = [
        {"@type": f"{_RPC}QuotaFailure", "violations": [violation]},
        {
            "@type": f"{_RPC}Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if retry_delay is not None:
        details.append({"@type": f"{_RPC}RetryInfo", "retryDelay": f"{retry_delay:g}s"})
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
    )
    return status_reply(429, "RESOURCE_EXHAUSTED", message, details=details)


def overloaded() -> Reply:
    """503 `UNAVAILABLE`: the model is overloaded (retryable)."""
    return status_reply(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def server_error(status: int = 500) -> Reply:
    """500 `INTERNAL`, or 504 `DEADLINE_EXCEEDED`."""
    if status == 504:
        return status_reply(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")
    message = (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    )
    return status_reply(status, "INTERNAL", message)


def context_too_long(got: int, limit: int = 1_048_576) -> Reply:
    """400 when the prompt does not fit the model's input limit."""
    message = f"The input token count ({got}) exceeds the maximum number of tokens allowed ({limit})."
    return status_reply(400, "INVALID_ARGUMENT", message)


def schema_rejected(message: str = TOO_MANY_STATES) -> Reply:
    """400 for a schema the server will not serve; by default the constraint-complexity rejection."""
    return status_reply(400, "INVALID_ARGUMENT", message)


def mode_not_enabled(model: str, feature: str = "JSON mode") -> Reply:
    """400 from a model without the feature, e.g. "JSON mode is not enabled for models/gemma-3-27b-it"."""
    return status_reply(400, "INVALID_ARGUMENT", f"{feature} is not enabled for models/{model}")


def _usage(prompt: int, candidates: int, thoughts: int) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt + candidates + thoughts
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _ratings(*, blocked: bool) -> list[dict[str, Any]]:
    ratings: list[dict[str, Any]] = [{"category": c, "probability": "NEGLIGIBLE"} for c in _RATINGS]
    if blocked:
        ratings[1] = {"category": _RATINGS[1], "probability": "HIGH", "blocked": True}
    return ratings


# ---------------------------------------------------------------- the server


class GeminiWire:
    """Gemini's paths, auth and error shapes for a LoopbackServer."""

    base_path: ClassVar[str] = ""  # base_url is the API root, as GOOGLE_GEMINI_BASE_URL is
    response_headers: ClassVar[Mapping[str, str]] = {
        "content-type": "application/json; charset=UTF-8",
        "vary": "Origin, X-Origin, Referer",
        "server": "scaffolding on HTTPServer2",
    }

    def serves(self, method: str, path: str) -> bool:
        return method == "POST" and GENERATE_PATH.fullmatch(path) is not None

    def authorized(self, received: Received, api_key: str) -> bool:
        # The real API takes the key from the header or from `?key=`; tests assert the client uses the header.
        return received.headers.get("x-goog-api-key") == api_key or parse_qs(received.query).get("key") == [api_key]

    def unauthorized(self) -> Reply:
        return invalid_api_key()

    def not_found(self, method: str, path: str) -> Reply:
        # Google's front end answers an unknown URL with an HTML page, not a Status.
        page = (
            "<!DOCTYPE html>\n<html lang=en>\n<title>Error 404 (Not Found)!!1</title>\n"
            f"<p><b>404.</b> <ins>That’s an error.</ins>\n<p>The requested URL <code>{path}</code> was not "
            "found on this server.  <ins>That’s all we know.</ins>\n"
        )
        return Reply(404, page.encode(), (("content-type", "text/html; charset=UTF-8"),))

    def invalid_json(self) -> Reply:
        return status_reply(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unexpected token.")

    def rejected(self, violations: list[str]) -> Reply:
        details = [{"@type": f"{_RPC}BadRequest", "fieldViolations": [{"description": v} for v in violations]}]
        return status_reply(400, "INVALID_ARGUMENT", "\n".join(violations), details=details)

    def server_error(self, message: str) -> Reply:
        return status_reply(500, "INTERNAL", message)


class GeminiServer(LoopbackServer):
    """generateContent on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    wire_factory = GeminiWire
