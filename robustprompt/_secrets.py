"""API keys kept out of what a provider sends back, before any of it is cut, parsed, kept or logged.

Some APIs echo the presented key in an error body, an error code or a header, whole, without its prefix, or masked
down to its tail ("sk-...abcd", "key ending in abcd"). A key straddling a cut (an error body kept to 2,000
characters, a 200-byte snippet) would leave a piece no later search for the whole key finds: so the raw response is
scrubbed first.
httpcore logs response headers at DEBUG, so the keys in use are also scrubbed from its log records.
"""

from __future__ import annotations

import functools
import logging
import re
import threading

__all__ = ["MASK", "keep_out_of_logs", "scrub", "scrub_bytes"]

MASK = "***"
_MIN_TAIL = 4  # a masked key shows at least this much of its end
_MIN_BARE = 12  # a piece of a key's end this long is the key, even bare (an echo that dropped the "sk-..." prefix)
_MASKED = r"(?:\*{2,}|\.{3}|…|ending in\s+|ends with\s+)"  # what precedes the tail a masked echo shows


@functools.lru_cache(maxsize=64)
def _pattern(key: str) -> re.Pattern[str]:
    tails = "|".join(re.escape(key[-n:]) for n in range(len(key), _MIN_TAIL - 1, -1))
    bare = "".join(f"|{re.escape(key[-n:])}" for n in range(len(key) - 1, _MIN_BARE - 1, -1))
    return re.compile(rf"{re.escape(key)}|(?P<lead>{_MASKED})(?:{tails}){bare}")


def scrub(text: str, key: str) -> str:
    """`text` with `key`, any masked echo of its tail, and its end shown bare (12 characters or more), replaced
    by MASK."""
    if not key or len(key) < _MIN_TAIL:
        return text
    if key[-_MIN_TAIL:] not in text:  # the common case: nothing to find, no regex run
        return text
    return _pattern(key).sub(lambda m: (m["lead"] or "") + MASK, text)


def scrub_bytes(data: bytes, key: str) -> bytes:
    if not key or len(key) < _MIN_TAIL or key[-_MIN_TAIL:].encode() not in data:
        return data
    return scrub(data.decode("utf-8", "surrogateescape"), key).encode("utf-8", "surrogateescape")


class _LogScrubber(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = message
        for key in list(self.keys):
            scrubbed = scrub(scrubbed, key)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True


# httpcore logs on these (not on "httpcore" itself): a logger's filter sees only its own records.
_HTTP_LOGGERS = ("httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpx")
_scrubber = _LogScrubber()
_installed = threading.Lock()


def keep_out_of_logs(key: str) -> None:
    """Scrub `key` from every record the HTTP libraries log (at DEBUG, httpcore writes response headers)."""
    with _installed:
        if not _scrubber.keys:
            for name in _HTTP_LOGGERS:
                logging.getLogger(name).addFilter(_scrubber)
        _scrubber.keys.add(key)
