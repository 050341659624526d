"""Wire facts shared by HTTP APIs: Retry-After parsing, the status-to-error mapping and the error itself."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from robustprompt._errors import (
    AuthError,
    BadRequestError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from robustprompt._prompt import OutputSpec
from robustprompt.adapters._sse import SseDecoder

if TYPE_CHECKING:
    from robustprompt.adapters import Endpoint, HttpAnswer

__all__ = [
    "MAX_ERROR_BODY",
    "Headers",
    "PerSpec",
    "SseEventReader",
    "StreamReader",
    "answer_error",
    "answer_object",
    "error_for_status",
    "json_body",
    "provider_error",
    "retry_after",
]

MAX_ERROR_BODY = 2000  # keep error bodies short: they travel in exceptions and logs

Headers: TypeAlias = "Callable[[Endpoint], dict[str, str]]"  # an adapter's request headers for an endpoint

T = TypeVar("T")


class PerSpec(Generic[T]):
    """What a dialect makes of an output spec's schema, made once per spec rather than once per request (a schema
    transform walks the whole schema). Keyed by identity: a spec lives as long as its task."""

    def __init__(self, limit: int = 256) -> None:
        self._limit = limit
        self._items: dict[tuple[int, str], tuple[OutputSpec, T]] = {}

    def get(self, spec: OutputSpec, make: Callable[[], T], variant: str = "") -> T:
        hit = self._items.get((id(spec), variant))
        if hit is not None and hit[0] is spec:
            return hit[1]
        value = make()
        if len(self._items) >= self._limit:
            self._items.clear()
        self._items[(id(spec), variant)] = (spec, value)
        return value


_DAY_NAMES = frozenset({"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"})


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, then `retry-after` (seconds or an HTTP date).

    None when neither says anything usable (nan, inf, a negative number, a date that does not parse): normal
    backoff applies then. A date already past means "now" (RFC 9110), so 0.
    """
    if (ms := _seconds(headers.get("retry-after-ms"))) is not None:
        return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    if (seconds := _seconds(value)) is not None:
        return seconds
    day, comma, _ = value.partition(",")
    if comma and day.strip() not in _DAY_NAMES:  # the parser ignores the day name: "Zun, 29 Sep ..." is no date
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_for_status(status: int, headers: Mapping[str, str]) -> type[ProviderError]:
    """The error class a status implies before the body is read; `x-should-retry` overrides the guess."""
    should = headers.get("x-should-retry")
    if should == "true":
        return ServerError
    cls: type[ProviderError]
    if status in (401, 403):
        cls = AuthError
    elif status == 429:
        cls = RateLimitError
    elif status in (503, 529):
        cls = OverloadedError
    elif status in (408, 409) or status >= 500:
        cls = ServerError
    else:
        cls = BadRequestError
    if should == "false" and cls.retryable:
        return BadRequestError
    return cls


def provider_error(
    cls: type[ProviderError],
    message: str,
    provider: str,
    model: str,
    status: int,
    body: bytes,
    *,
    code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The error an answer amounts to, carrying the start of the body as the provider sent it."""
    excerpt = body[:MAX_ERROR_BODY].decode("utf-8", "replace")
    return cls(message, provider=provider, model=model, status=status, code=code, retry_after=retry_after, body=excerpt)


def json_body(body: bytes, *, provider: str, model: str, status: int) -> Any:
    """The decoded JSON body. An error status with a body that is not JSON (a proxy's HTML page, a gateway's
    plain text) gives None: the status then decides the error. A success that cannot be read is a transport fault
    (truncated or garbled), so retryable; one nested absurdly deep is not a blip, so not retryable."""
    try:
        return json.loads(body)
    except RecursionError:
        if not 200 <= status < 300:
            return None
        raise ProviderError(
            f"response body nested too deeply to read ({len(body)} bytes)",
            provider=provider,
            model=model,
            status=status,
        ) from None
    except (ValueError, UnicodeDecodeError):
        if not 200 <= status < 300:
            return None
        snippet = body[:200].decode("utf-8", "replace")
        raise ProviderConnectionError(
            f"unreadable response body ({len(body)} bytes): {snippet!r}", provider=provider, model=model, status=status
        ) from None


class StreamReader:
    """What every stream decoder shares: the typed error of a stream that broke off or cannot be read (retryable,
    as a dropped connection is), naming the provider and the model, and one event's JSON object."""

    def __init__(self, provider: str, model_id: str) -> None:
        self._provider = provider
        self._model_id = model_id

    def _cut(self, why: str) -> ProviderError:
        return ProviderConnectionError(why, provider=self._provider, model=self._model_id, status=200)

    def _object(self, data: str | bytes, what: str) -> dict[str, Any] | None:
        """`data` as a JSON object; None for JSON that is not one (nothing in it to read)."""
        try:
            value = json.loads(data)
        except ValueError:
            raise self._cut(f"{what} that is not JSON: {data[:200]!r}") from None
        return value if isinstance(value, dict) else None


class SseEventReader(StreamReader):
    """A decoder of SSE whose every event is one JSON object read on its own (named events: Anthropic, the
    Responses API, Cohere): events after the stream's end, and a bare `data: [DONE]`, are not read."""

    def __init__(self, provider: str, model_id: str) -> None:
        super().__init__(provider, model_id)
        self._sse = SseDecoder()

    def feed(self, data: bytes) -> list[str]:
        pieces: list[str] = []
        for event in self._sse.feed(data):
            if not self._ended():
                pieces += self._event(event.data)
        return pieces

    def _event(self, data: str) -> list[str]:
        if data.startswith("[DONE]"):
            return []
        payload = self._object(data, "a stream event")
        return [] if payload is None else self._payload(payload, data)

    def _pending(self) -> None:
        """Read an event the stream left without its blank line: an error sent last still names the error."""
        if pending := self._sse.pending():
            self._event(pending)

    def _ended(self) -> bool:
        raise NotImplementedError

    def _payload(self, payload: dict[str, Any], data: str) -> list[str]:
        """The answer's pieces in one event (`data` is its text, for errors that quote it)."""
        raise NotImplementedError


def answer_object(answer: HttpAnswer, what: str, provider: str, code_key: str) -> dict[str, Any]:
    """The JSON object of a batch protocol's 2xx answer; the typed error for anything else (`what` says which
    step it was, `code_key` which field of the error object holds the provider's code)."""
    if not 200 <= answer.status < 300:
        raise answer_error(answer, what, provider, code_key)
    data = json_body(answer.body, provider=provider, model="", status=answer.status)
    if not isinstance(data, dict):
        message = f"{what}: the answer is not a JSON object"
        raise provider_error(ProviderError, message, provider, "", answer.status, answer.body)
    return data


def answer_error(answer: HttpAnswer, what: str, provider: str, code_key: str) -> ProviderError:
    """A batch protocol's error answer (`{"error": {"message", code_key}}`, as both APIs nest it), typed by status."""
    data = json_body(answer.body, provider=provider, model="", status=answer.status)
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else {}
    message = f"{what}: {err.get('message') or f'HTTP {answer.status}'}"
    cls = error_for_status(answer.status, answer.headers)
    code = err.get(code_key)
    return provider_error(
        cls, message, provider, "", answer.status, answer.body, code=code, retry_after=retry_after(answer.headers)
    )
