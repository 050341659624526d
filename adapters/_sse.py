"""Server-sent events, decoded incrementally (WHATWG rules, PROVIDERS.md §11.0), and newline-delimited JSON.

Bytes are split into lines on CR, LF or CRLF before any UTF-8 decoding: none of these bytes occurs inside a
multi-byte sequence, so a character cut between two reads is whole again by the time its line is decoded. A CRLF
cut between two reads is one line end, not two. An event is dispatched at the empty line after it; one still open
at the end of the stream is dropped, as a conforming client drops it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Lines", "SseDecoder", "SseEvent"]


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" when the server named none
    data: str


class Lines:
    """Complete lines out of a byte stream, each decoded as UTF-8 (invalid bytes are an error of the server)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._after_cr = False

    def feed(self, data: bytes) -> list[str]:
        if self._after_cr and data.startswith(b"\n"):
            data = data[1:]  # the LF of a CRLF cut between two reads
        self._after_cr = False
        buffer = self._buffer + data
        lines = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buffer = lines.pop()
        if buffer.endswith(b"\r"):
            self._after_cr = True
        return [line.decode("utf-8") for line in lines]

    def rest(self) -> str:
        """What followed the last line end (a last line a server sent without one)."""
        rest, self._buffer = self._buffer, b""
        return rest.decode("utf-8")


class SseDecoder:
    def __init__(self) -> None:
        self._lines = Lines()
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[SseEvent]:
        return [event for line in self._lines.feed(data) if (event := self.line(line)) is not None]

    def line(self, line: str) -> SseEvent | None:
        """One decoded line: the event it completes, if it is the empty line after one (for a decoder that
        splits the lines itself, to read what a server sends outside the SSE framing)."""
        if line:
            self._field(line)
            return None
        event = SseEvent(self._event or "message", "\n".join(self._data)) if self._data else None
        self._event, self._data = "", []
        return event

    def _field(self, line: str) -> None:
        if line.startswith(":"):
            return  # a comment: a keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value

    def pending(self) -> str:
        """The data of an event the stream left unterminated (dropped from the events), for error messages."""
        if rest := self._lines.rest():
            self._field(rest)
        return "\n".join(self._data)
