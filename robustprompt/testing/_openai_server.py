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
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "OpenAIServer",
    "Received",
    "Reply",
    "chat_reply",
    "context_too_long",
    "error_reply",
    "insufficient_quota",
    "invalid_api_key",
    "model_not_found",
    "rate_limited",
    "schema_rejected",
    "server_error",
]

CHAT_PATH = "/v1/chat/completions"
MAX_DELAY = 30.0  # seconds: a scripted delay never holds a test longer than this
_READ_TIMEOUT = 5.0  # seconds a silent client may hold a handler thread (and so the shutdown)
_SCHEMA_REJECTED = "Invalid schema for response_format"

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before answering, capped at MAX_DELAY


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the parsed JSON, or the raw text when it is not JSON


# ---------------------------------------------------------------- replies


def _json_reply(status: int, payload: Any, headers: Headers) -> Reply:
    return Reply(status, json.dumps(payload).encode(), tuple(headers))


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
    return _json_reply(200, payload, headers)


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
    return _json_reply(status, {"error": {"message": message, "type": type, "param": param, "code": code}}, headers)


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


def _invalid_url(method: str, path: str) -> Reply:
    return error_reply(404, f"Invalid URL ({method} {path})", type="invalid_request_error")


def _invalid_json() -> Reply:
    message = (
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
        "JSON.)"
    )
    return error_reply(400, message, type="invalid_request_error")


def _rejected(violations: list[str]) -> Reply:
    # A schema problem goes first so the message starts as OpenAI's does and clients can tell it apart.
    ordered = sorted(violations, key=lambda v: not v.startswith(_SCHEMA_REJECTED))
    param = "response_format" if ordered[0].startswith(_SCHEMA_REJECTED) else None
    return error_reply(400, "; ".join(ordered), type="invalid_request_error", param=param)


# ---------------------------------------------------------------- the server


class OpenAIServer:
    """Chat Completions on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        check: Callable[[Any], list[str]] | None = None,
        responder: Callable[[Received], Reply] | None = None,
    ) -> None:
        self.api_key = api_key
        self.check = check
        self.responder = responder
        self.base_url = ""
        self.requests: list[Received] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def enqueue(self, *replies: Reply) -> None:
        """Append replies to the script; each request takes the oldest."""
        with self._lock:
            self._script.extend(replies)

    def __enter__(self) -> OpenAIServer:
        self._closing.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()  # wakes the handlers sleeping on a delay
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()  # joins the handler threads
            self._thread.join()
        self._httpd = self._thread = None

    def _answer(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        path = urlsplit(target).path
        try:
            body, parsed = json.loads(raw), True
        except ValueError:  # UnicodeDecodeError included
            body, parsed = raw.decode("utf-8", errors="replace"), False
        received = Received(path, headers, body)
        with self._lock:
            self.requests.append(received)
        if method != "POST" or path != CHAT_PATH:
            return _invalid_url(method, path)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return invalid_api_key()
        if not parsed:
            return _invalid_json()
        violations = self.check(body) if self.check is not None else []
        return _rejected(violations) if violations else self._next(received)

    def _next(self, received: Received) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
            count = len(self.requests)
        if scripted is not None:
            return scripted
        if self.responder is not None:
            return self.responder(received)
        message = f"OpenAIServer: the script ran out at request {count}; enqueue more replies or pass a responder"
        return error_reply(500, message, type="server_error")

    def _wait(self, delay: float) -> None:
        self._closing.wait(min(max(delay, 0.0), MAX_DELAY))


class _HTTPServer(ThreadingHTTPServer):
    # Non-daemon handler threads, so server_close() joins them and nothing outlives the `with` block.
    daemon_threads = False
    block_on_close = True

    def __init__(self, owner: OpenAIServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = _READ_TIMEOUT

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        owner = self.server.owner
        try:
            reply = owner._answer(method, self.path, headers, raw)
        except Exception as exc:  # a failing check or responder: tell the test, do not drop the connection
            reply = error_reply(500, f"OpenAIServer: {exc!r}", type="server_error")
        owner._wait(reply.delay)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        headers = {"content-type": "application/json", "x-request-id": f"req_{uuid.uuid4().hex}"}
        headers |= {"openai-processing-ms": "1", "content-length": str(len(reply.body))}
        headers |= {name.lower(): value for name, value in reply.headers}
        try:
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first, as a timeout test does

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read `OpenAIServer.requests` instead of a log."""
