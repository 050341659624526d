"""A loopback HTTP server for tests with no network: scripted replies, every request recorded.

One `LoopbackServer` serves any API; a `Wire` gives it that API's paths, auth and error shapes. Replies are
scripted in order (`enqueue`), or computed by a `responder` once the script is empty; a `check` can reject a
request body with the API's own 400, as the real server would.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["MAX_DELAY", "Headers", "LoopbackServer", "Received", "Reply", "Wire", "json_reply", "text_pieces"]

MAX_DELAY = 30.0  # seconds: a scripted delay never holds a test longer than this
_READ_TIMEOUT = 5.0  # seconds a silent client may hold a handler thread (and so the shutdown)

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before answering, capped at MAX_DELAY
    # Drop the connection unanswered, cut the body short, or send the headers (or the body) one byte every
    # `interval` seconds until the client gives up: a slow server no per-read timeout ever catches.
    fault: Literal["reset", "truncate", "trickle_headers", "trickle_body"] | None = None
    interval: float = 1.0
    # A streamed body: each piece sent as its own HTTP chunk and flushed, `chunk_delay` seconds apart. With
    # fault="truncate", only the first half of the pieces is sent and the connection closes mid-body.
    chunks: tuple[bytes, ...] = ()
    chunk_delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the parsed JSON, or the raw text when it is not JSON
    raw: bytes = field(default=b"", repr=False)  # the body's exact bytes (signatures cover bytes)


def json_reply(status: int, payload: Any, headers: Headers = ()) -> Reply:
    return Reply(status, json.dumps(payload).encode(), tuple(headers))


def text_pieces(text: str, pieces: int | None = None, split: Sequence[int] | None = None) -> list[str]:
    """`text` cut for a streamed reply: at the offsets in `split`, else into `pieces` (default: 8 characters each)."""
    if split is None:
        size = max(1, len(text) // pieces) if pieces else 8
        split = range(size, len(text), size)
    bounds = [0, *sorted(set(split)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


class Wire(Protocol):
    """What makes a LoopbackServer speak one API."""

    @property
    def base_path(self) -> str:
        """Appended to the server's address to form base_url, e.g. "/v1"."""
        ...

    @property
    def response_headers(self) -> Mapping[str, str]:
        """Sent with every reply."""
        ...

    def serves(self, method: str, path: str) -> bool: ...

    def authorized(self, received: Received, api_key: str) -> bool: ...

    def unauthorized(self) -> Reply: ...

    def not_found(self, method: str, path: str) -> Reply: ...

    def invalid_json(self) -> Reply: ...

    def rejected(self, violations: list[str]) -> Reply: ...

    def server_error(self, message: str) -> Reply: ...


class BearerWire:
    """What most APIs share, for a Wire to build on: POSTs to `paths`, `Authorization: Bearer <key>`, no header
    added to the replies. A Wire names its paths and words its own errors."""

    base_path: ClassVar[str] = ""
    response_headers: ClassVar[Mapping[str, str]] = {}
    paths: ClassVar[tuple[str, ...]] = ()

    def serves(self, method: str, path: str) -> bool:
        return method == "POST" and path in self.paths

    def authorized(self, received: Received, api_key: str) -> bool:
        return received.headers.get("authorization") == f"Bearer {api_key}"


_Server = TypeVar("_Server", bound="LoopbackServer")


class LoopbackServer:
    """An API on 127.0.0.1, answering from a FIFO script of replies; a context manager."""

    wire_factory: ClassVar[Callable[[], Wire] | None] = None  # a subclass for one API names its Wire here
    raw_paths: ClassVar[tuple[str, ...]] = ()  # paths whose bodies are not JSON (a multipart file upload)

    def __init__(
        self,
        wire: Wire | None = None,
        *,
        api_key: str | None = None,
        check: Callable[[Any], list[str]] | None = None,
        responder: Callable[[Received], Reply] | None = None,
    ) -> None:
        if wire is None:
            factory = type(self).wire_factory  # read from the class: a plain function would bind to self
            if factory is None:
                raise TypeError(f"{type(self).__name__} needs a wire: LoopbackServer(wire, ...) or a wire_factory")
            wire = factory()
        self.wire = wire
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

    def __enter__(self: _Server) -> _Server:
        self._closing.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}{self.wire.base_path}"
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
        url = urlsplit(target)
        try:
            body, parsed = json.loads(raw) if raw else None, True
        except ValueError:  # UnicodeDecodeError included
            body, parsed = raw.decode("utf-8", errors="replace"), False
        received = Received(method, url.path, url.query, headers, body, raw)
        with self._lock:
            self.requests.append(received)
        if not self.wire.serves(method, url.path):
            return self.wire.not_found(method, url.path)
        if self.api_key is not None and not self.wire.authorized(received, self.api_key):
            return self.wire.unauthorized()
        if not parsed and url.path not in self.raw_paths:
            return self.wire.invalid_json()
        violations = self.check(body) if self.check is not None else []
        return self.wire.rejected(violations) if violations else self.next_reply(received)

    def next_reply(self, received: Received) -> Reply:
        """The reply to an authorised, well-formed request: the script's next, else the responder's. A subclass
        may override it to refuse requests first, as some APIs check more than the body."""
        with self._lock:
            scripted = self._script.popleft() if self._script else None
            count = len(self.requests)
        if scripted is not None:
            return scripted
        if self.responder is not None:
            return self.responder(received)
        return self.wire.server_error(
            f"{type(self).__name__}: the script ran out at request {count}; enqueue more replies or pass a responder"
        )

    def _wait(self, delay: float) -> None:
        self._closing.wait(min(max(delay, 0.0), MAX_DELAY))


class _HTTPServer(ThreadingHTTPServer):
    # Non-daemon handler threads, so server_close() joins them and nothing outlives the `with` block.
    daemon_threads = False
    block_on_close = True

    def __init__(self, owner: LoopbackServer) -> None:
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
            reply = owner.wire.server_error(f"{type(owner).__name__}: {exc!r}")
        owner._wait(reply.delay)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.chunks:
            self._send_chunked(reply)
            return
        if reply.fault == "reset":
            # Linger 0: closing sends RST, as a crashed peer or a middlebox cutting the connection does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        headers = {"content-type": "application/json", "content-length": str(len(reply.body))}
        headers |= dict(self.server.owner.wire.response_headers)
        headers |= {name.lower(): value for name, value in reply.headers}
        headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")
        if reply.fault in ("trickle_headers", "trickle_body"):
            self._trickle(reply, headers)
            return
        try:
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.fault == "truncate":  # the promised content-length never arrives
                self.wfile.write(reply.body[: len(reply.body) // 2])
                self.close_connection = True
                return
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first, as a timeout test does

    def _trickle(self, reply: Reply, headers: dict[str, str]) -> None:
        head = f"HTTP/1.1 {reply.status} OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        whole = reply.fault == "trickle_headers"
        slow, fast = (head.encode() + reply.body, b"") if whole else (reply.body, head.encode())
        self.close_connection = True
        owner = self.server.owner
        try:
            self.wfile.write(fast)
            self.wfile.flush()
            for byte in slow:  # ends when the client hangs up (a write fails) or the server closes
                if owner._closing.wait(min(reply.interval, MAX_DELAY)):
                    return
                self.wfile.write(bytes((byte,)))
                self.wfile.flush()
        except OSError:
            pass

    def _send_chunked(self, reply: Reply) -> None:
        owner = self.server.owner
        headers = dict(owner.wire.response_headers) | {name.lower(): value for name, value in reply.headers}
        headers |= {"transfer-encoding": "chunked", "connection": "close"}
        headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")
        chunks = reply.chunks[: len(reply.chunks) // 2] if reply.fault == "truncate" else reply.chunks
        self.protocol_version = "HTTP/1.1"  # chunked framing needs it; the connection still closes after
        self.close_connection = True
        try:
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            for index, chunk in enumerate(chunks):
                if index:
                    owner._wait(reply.chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            if reply.fault != "truncate":
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left the stream, as a consumer breaking out of its loop does

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read `LoopbackServer.requests` instead of a log."""
