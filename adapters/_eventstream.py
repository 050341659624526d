"""AWS event-stream framing (`application/vnd.amazon.eventstream`, PROVIDERS.md §11.9), decoded incrementally.

A frame is length-prefixed, so it is read whole before anything in it is trusted: the prelude's CRC-32 is checked
as soon as its 12 bytes are in (a corrupted length must not make the reader wait for bytes that never come), the
message CRC once the frame is complete. Limits are botocore's: headers up to 128 KiB, a payload up to 24 MiB, no
header named twice.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

__all__ = ["Frame", "FrameDecoder", "FrameError", "HeaderValue"]

HeaderValue = bool | int | bytes | str | uuid.UUID

_PRELUDE = 12
_MAX_HEADERS = 128 * 1024
_MAX_PAYLOAD = 24 * 1024 * 1024
_INTS = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}  # 8 is a timestamp, milliseconds since the epoch


class FrameError(ValueError):
    """Bytes that are not a well-formed frame: a bad CRC, an impossible length, a malformed header."""


@dataclass(frozen=True, slots=True)
class Frame:
    headers: dict[str, HeaderValue]
    payload: bytes

    def text(self, name: str) -> str:
        """A string header, "" when absent."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else ""


class FrameDecoder:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length: int | None = None  # the current frame's total length, once its prelude checked out

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet complete (at the end of a stream: a truncated frame)."""
        return len(self._buffer)

    def _next(self) -> Frame | None:
        if self._length is None:
            if len(self._buffer) < _PRELUDE:
                return None
            self._length = _prelude(bytes(self._buffer[:_PRELUDE]))
        if len(self._buffer) < self._length:
            return None
        raw, length = bytes(self._buffer[: self._length]), self._length
        del self._buffer[:length]
        self._length = None
        (expected,) = struct.unpack(">I", raw[-4:])
        if zlib.crc32(raw[:-4]) != expected:
            raise FrameError(f"a frame's message CRC does not match ({length} bytes)")
        (headers_length,) = struct.unpack(">I", raw[4:8])
        headers = _headers(raw[_PRELUDE : _PRELUDE + headers_length])
        return Frame(headers, raw[_PRELUDE + headers_length : -4])


def _prelude(prelude: bytes) -> int:
    total, headers, crc = struct.unpack(">III", prelude)
    if zlib.crc32(prelude[:8]) != crc:
        raise FrameError("a frame's prelude CRC does not match")
    if total < _PRELUDE + 4 or headers > total - _PRELUDE - 4:
        raise FrameError(f"a frame of {total} bytes cannot hold {headers} bytes of headers")
    if headers > _MAX_HEADERS or total - headers - _PRELUDE - 4 > _MAX_PAYLOAD:
        raise FrameError(f"a frame over the limits: {headers} bytes of headers, {total} in all")
    return int(total)


def _headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(data):
            size = data[at]
            name = data[at + 1 : at + 1 + size].decode("utf-8")
            at += 1 + size
            value, at = _value(data, data[at], at + 1)
            if name in headers:
                raise FrameError(f"the header {name!r} is sent twice")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        raise FrameError("a frame's headers are malformed") from None
    return headers


def _value(data: bytes, kind: int, at: int) -> tuple[HeaderValue, int]:
    if kind in (0, 1):
        return kind == 0, at
    if kind in _INTS:
        fmt = _INTS[kind]
        (number,) = struct.unpack_from(fmt, data, at)
        return int(number), at + struct.calcsize(fmt)
    if kind in (6, 7):
        (size,) = struct.unpack_from(">H", data, at)
        raw = data[at + 2 : at + 2 + size]
        if len(raw) != size:
            raise IndexError
        return (raw.decode("utf-8") if kind == 7 else raw), at + 2 + size
    if kind == 9:
        raw = data[at : at + 16]
        if len(raw) != 16:
            raise IndexError
        return uuid.UUID(bytes=raw), at + 16
    raise FrameError(f"a header of unknown type {kind}")
