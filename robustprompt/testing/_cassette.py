"""Cassettes: record the HTTP exchanges of a run to a file once, then replay them offline, deterministically.

    from robustprompt.testing import cassette

    with cassette("tests/cassettes/classify.json"):  # records if the file is missing, else replays
        run = task.run(review, model="openai:gpt-4.1-mini")

While the block runs, every robustprompt HTTP call in the process (any adapter, sync or async, from any thread,
whatever httpx client the model was given) goes through the cassette's transport. Modes:

- "once" (default): record when the file does not exist, else replay.
- "record": call the real APIs and (over)write the file when the block ends.
- "replay": answer from the file only; a request with no recording raises `CassetteError`, never a network call.
- "none": the cassette is off; calls go to the network and nothing is written.

Replay matches a request on its method, its URL (credentials in the query scrubbed) and its canonical body (JSON
with sorted keys); identical requests are answered in the order they were recorded, each recording once.

The file is indented JSON, one line per field so that a diff of two recordings reads like a diff of the payloads:
`{"robustprompt_cassette": 1, "exchanges": [{"request": {method, url, headers, body}, "response": {status,
headers, body}}, ...]}`, sorted by request so that concurrent calls record to the same file every time. Bodies
are kept as JSON when they are JSON, else as text, else as base64. A streamed response (server-sent events,
NDJSON, AWS event-stream frames) keeps its body as sent, text or base64, and the sizes of the chunks it arrived
in (`chunks`): replay hands it over in the same chunks, so a streamed call shows the same partials. While
recording, a streamed body is read whole before the caller sees it: partials come once it has arrived.

Nothing secret is written: credential headers and query parameters (Authorization, x-api-key, api-key,
x-goog-api-key, x-amz-security-token, cookies, and any name that says key, token or secret) become "SCRUBBED",
and the values seen in them are scrubbed wherever else they appear (a provider echoing the key in an error), with
their masked tails ("sk-...abcd") and their ends shown bare.
"""

from __future__ import annotations

import base64
import difflib
import json
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import httpx

from robustprompt._errors import ConfigError, Uncontained
from robustprompt._secrets import scrub
from robustprompt._state import state

if TYPE_CHECKING:
    from os import PathLike
    from types import TracebackType

__all__ = ["SCRUBBED", "Cassette", "CassetteError", "Mode", "cassette"]

Mode = Literal["once", "record", "replay", "none"]
SCRUBBED = "SCRUBBED"  # plain letters: a URL query keeps it unescaped

_VERSION = 1
_SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# A name is a credential when one of its parts is one of these: x-api-key, x-goog-api-key, x-amz-security-token,
# access_token, client_secret. Whole parts only, so x-ratelimit-remaining-tokens keeps its value.
_SECRET_PARTS = frozenset({"key", "apikey", "token", "secret", "password", "signature", "sig", "credential"})
# These describe how the body travelled, not what it says: replay serves the decoded body and frames it afresh.
_FRAMING = frozenset({"content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive"})
# Media types of streamed bodies (matched by prefix, parameters may follow), kept as sent and in their chunks.
_STREAMED = ("text/event-stream", "application/x-ndjson", "application/vnd.amazon.eventstream")
_MIN_SECRET = 8  # shorter credential values are not hunted in bodies: they would scrub ordinary words
_DIFF_LINES = 20

_Record = dict[str, Any]  # one side of an exchange, as the file keeps it
_Key = tuple[str, str, str]


class CassetteError(Uncontained):
    """A cassette cannot serve the run: a request has no recording, or the file is not a cassette.

    Deliberately outside `RobustPromptError`, and never one call's outcome: code that recovers from model failures
    (fallbacks, defaults, `Task.map`) must not turn a test's missing recording into a passing value.
    """


# ---------------------------------------------------------------- scrubbing (pure)


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_NAMES or not _SECRET_PARTS.isdisjoint(re.split(r"[-_.]", lowered))


def _secrets_in(request: httpx.Request) -> set[str]:
    """The credential values a request carries, each also without its scheme ("Bearer sk-..." -> "sk-...")."""
    values = [value for name, value in request.headers.multi_items() if _is_secret_name(name)]
    values += [value for name, value in request.url.params.multi_items() if _is_secret_name(name)]
    found = set(values) | {value.partition(" ")[2].strip() for value in values}
    return {value for value in found if len(value) >= _MIN_SECRET}


def _scrub(text: str, secrets: Iterable[str]) -> str:
    ordered = sorted(secrets, key=len, reverse=True)  # "Bearer sk-..." goes whole before "sk-..." alone
    for secret in ordered:
        text = text.replace(secret, SCRUBBED)
    for secret in ordered:
        if " " not in secret:  # a key itself, not "Bearer <key>": its masked tail, or its end shown bare
            text = scrub(text, secret)
    # The placeholder can complete a secret with the text beside it (a key "Dk3y..." then "k3y..."): too rare to
    # deserve more than dropping the whole text, which keeps the guarantee.
    return SCRUBBED if any(secret in text for secret in ordered) else text


def _url(url: httpx.URL, secrets: Iterable[str]) -> str:
    params = [(name, SCRUBBED if _is_secret_name(name) else value) for name, value in url.params.multi_items()]
    return _scrub(str(url.copy_with(params=params) if params else url), secrets)


def _headers(headers: httpx.Headers, secrets: Iterable[str]) -> dict[str, str]:
    """Sorted by name (repeated ones joined, as HTTP allows), credentials scrubbed, framing left out."""
    return {
        name: SCRUBBED if _is_secret_name(name) else _scrub(value, secrets)
        for name, value in sorted(headers.items())
        if name not in _FRAMING
    }


def _body_record(raw: bytes, secrets: Iterable[str], *, verbatim: bool = False) -> _Record:
    """A body as the file keeps it: JSON as JSON (readable, diffable), else text, else base64; `verbatim`
    bodies (streams, whose chunk sizes count their bytes) as text or base64 only."""
    try:
        text = _scrub(raw.decode(), secrets)
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}
    if verbatim:
        return {"text": text}
    try:
        value = json.loads(text)
        json.dumps(value, allow_nan=False)  # NaN or 1e999 would not come back as they were: keep those as text
    except ValueError:
        return {"text": text}
    return {"json": value}


def _body_bytes(record: _Record) -> bytes:
    if "json" in record:
        return json.dumps(record["json"], ensure_ascii=False).encode()
    if "text" in record:
        return str(record["text"]).encode()
    return base64.b64decode(record["base64"])


def _request_record(request: httpx.Request, secrets: Iterable[str]) -> _Record:
    return {
        "method": request.method,
        "url": _url(request.url, secrets),
        "headers": _headers(request.headers, secrets),
        "body": _body_record(request.content, secrets),
    }


def _streamed(headers: httpx.Headers) -> bool:
    return str(headers.get("content-type", "")).lower().startswith(_STREAMED)


def _response_record(status: int, headers: httpx.Headers, chunks: list[bytes], secrets: Iterable[str]) -> _Record:
    body, streamed = b"".join(chunks), _streamed(headers)
    record = {
        "status": status,
        "headers": _headers(headers, secrets),
        "body": _body_record(body, secrets, verbatim=streamed),
    }
    if streamed:
        record["chunks"] = [len(chunk) for chunk in chunks if chunk]
    return record


def _canonical(body: _Record) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _key(request: _Record) -> _Key:
    return (request["method"], request["url"], _canonical(request["body"]))


def _response(record: _Record) -> httpx.Response:
    body = _body_bytes(record["body"])
    if "chunks" not in record:
        return httpx.Response(record["status"], headers=record["headers"], content=body)
    return httpx.Response(record["status"], headers=record["headers"], stream=_Chunks(_split(body, record["chunks"])))


def _split(body: bytes, sizes: list[int]) -> list[bytes]:
    """The body in its recorded chunks; what scrubbing made longer or shorter goes to the last one."""
    chunks, at = [], 0
    for size in sizes[:-1]:
        chunks.append(body[at : at + size])
        at += size
    return [chunk for chunk in [*chunks, body[at:]] if chunk]


class _Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A replayed stream's body, in the chunks it was recorded in."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


# ---------------------------------------------------------------- the file


def _dumps(exchanges: list[_Record]) -> str:
    ordered = sorted(exchanges, key=lambda exchange: _key(exchange["request"]))  # stable: repeats keep their order
    return json.dumps({"robustprompt_cassette": _VERSION, "exchanges": ordered}, indent=2, ensure_ascii=False) + "\n"


def _loads(path: Path) -> list[_Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CassetteError(f"{path} is not a robustprompt cassette (not JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("robustprompt_cassette") != _VERSION:
        raise CassetteError(f"{path} is not a robustprompt cassette (version {_VERSION}): record it again")
    exchanges: list[_Record] = data.get("exchanges", [])
    return exchanges


# ---------------------------------------------------------------- miss messages (pure)


def _pretty(body: _Record) -> list[str]:
    return json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False).splitlines()


def _hint(sent: _Record, recorded: list[_Record]) -> str:
    """How the request differs from the closest recorded one: a body diff when one shares its method and URL."""
    same = [r for r in recorded if (r["method"], r["url"]) == (sent["method"], sent["url"])]
    if not same:
        known = sorted({f"{r['method']} {r['url']}" for r in recorded})
        return f"recorded requests: {', '.join(known[:5])}" if known else "the cassette holds no requests"
    lines = _pretty(sent["body"])
    closest = max(same, key=lambda r: difflib.SequenceMatcher(None, _pretty(r["body"]), lines).ratio())
    diff = list(difflib.unified_diff(_pretty(closest["body"]), lines, "recorded body", "sent body", n=1, lineterm=""))
    more = [f"... {len(diff) - _DIFF_LINES} more lines"] if len(diff) > _DIFF_LINES else []
    return "\n".join(["the closest recording has another body:", *diff[:_DIFF_LINES], *more])


# ---------------------------------------------------------------- the cassette


class Cassette:
    """An active recording or replay; make one with `cassette(path, mode)` and use it as a context manager.

    `misses` lists the messages of requests that found no recording, even those some code caught.
    """

    def __init__(self, path: Path, mode: Mode) -> None:
        self.path = path
        self.mode = mode
        self.misses: list[str] = []
        self.recording = False
        self._lock = threading.Lock()  # sync calls may come from several threads
        self._secrets: set[str] = set()
        self._kept: list[tuple[httpx.Request, int, httpx.Headers, list[bytes]]] = []
        self._recorded: list[_Record] = []
        self._queues: dict[_Key, deque[_Record]] = {}
        self._route: tuple[httpx.Client, httpx.AsyncClient] | None = None

    def __repr__(self) -> str:
        return f"Cassette({str(self.path)!r}, mode={self.mode!r})"

    def __enter__(self) -> Cassette:
        if self.mode == "none":
            return self
        self.recording = self.mode == "record" or (self.mode == "once" and not self.path.exists())
        if not self.recording and self.path.exists():
            self._load(_loads(self.path))
        transport = _Transport(self)
        self._route = (httpx.Client(transport=transport), httpx.AsyncClient(transport=transport))
        state.routed_clients.append(self._route)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._route is not None:
            state.routed_clients.remove(self._route)
            self._route = None
        if self.recording and (self._kept or self.mode == "record"):  # "once" with no call leaves no empty file
            self._save()

    def _save(self) -> None:
        """Write what was recorded, scrubbed of every credential seen, replacing the file whole."""
        with self._lock:
            exchanges = [
                {
                    "request": _request_record(request, self._secrets),
                    "response": _response_record(status, headers, chunks, self._secrets),
                }
                for request, status, headers, chunks in self._kept
            ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(_dumps(exchanges), encoding="utf-8")
        partial.replace(self.path)

    def _load(self, exchanges: list[_Record]) -> None:
        for exchange in exchanges:
            self._recorded.append(exchange["request"])
            self._queues.setdefault(_key(exchange["request"]), deque()).append(exchange["response"])

    def _keep(self, request: httpx.Request, response: httpx.Response, chunks: list[bytes]) -> httpx.Response:
        """Record an exchange (scrubbed only when written, once every credential is known); answer with it."""
        with self._lock:
            self._secrets |= _secrets_in(request)
            self._kept.append((request, response.status_code, response.headers, chunks))
        headers = [(name, value) for name, value in response.headers.multi_items() if name not in _FRAMING]
        return httpx.Response(response.status_code, headers=headers, stream=_Chunks(chunks))

    def _replay(self, request: httpx.Request) -> httpx.Response:
        sent = _request_record(request, _secrets_in(request))
        key = _key(sent)
        with self._lock:
            queue = self._queues.get(key)
            if queue:
                return _response(queue.popleft())
            message = self._miss(sent, exhausted=queue is not None)
            self.misses.append(message)
        raise CassetteError(message)

    def _miss(self, sent: _Record, *, exhausted: bool) -> str:
        if not self.path.exists():
            why = "the cassette file does not exist"
        elif exhausted:
            why = "every recording of this request was replayed already (it is sent more often than when recorded)"
        else:
            why = _hint(sent, self._recorded)
        return (
            f"no recording for {sent['method']} {sent['url']} in {self.path}: {why}\n"
            'Record it with mode="record" (pytest: --rp-record or ROBUSTPROMPT_RECORD=1).'
        )


class _Transport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Replays from the cassette, or sends to the network and records the answer. The two drivers differ only in
    how they send."""

    def __init__(self, cassette: Cassette) -> None:
        self._cassette = cassette

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        if not self._cassette.recording:
            return self._cassette._replay(request)
        # A transport per request: recording is rare, and it leaves no pool to close.
        with httpx.HTTPTransport() as network:
            response = network.handle_request(request)
            try:
                chunks = list(response.iter_bytes())  # decoded: replay serves the body without its encoding
            finally:
                response.close()
        return self._cassette._keep(request, response, chunks)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if not self._cassette.recording:
            return self._cassette._replay(request)
        # A pool belongs to one event loop, and a cassette may outlive several (asyncio.run twice).
        async with httpx.AsyncHTTPTransport() as network:
            response = await network.handle_async_request(request)
            try:
                chunks = [chunk async for chunk in response.aiter_bytes()]
            finally:
                await response.aclose()
        return self._cassette._keep(request, response, chunks)


def cassette(path: str | PathLike[str], mode: Mode = "once") -> Cassette:
    """A cassette on `path` (a JSON file), to use as a context manager; see the module's documentation."""
    if mode not in get_args(Mode):
        raise ConfigError(f"unknown cassette mode {mode!r}: use one of {', '.join(get_args(Mode))}")
    return Cassette(Path(path), mode)
