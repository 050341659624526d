"""Response bodies decoded within a size cap, whatever the `Content-Encoding` chain.

httpx inflates each received chunk whole: a 64 KiB gzip chunk can become gigabytes in one step, and each layer of
`gzip, gzip` multiplies that. Here every layer inflates at most `_STEP` bytes at a time into the next, so memory
stays near the cap for any chain, and the body is refused as soon as a layer's output passes it. Only the codings
robustprompt asks for (`ACCEPT_ENCODING`) are read; a server sending another is refused rather than misread.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = ["ACCEPT_ENCODING", "BodyDecoder", "BoundedBody", "TooLarge", "UnknownEncoding"]

ACCEPT_ENCODING = "gzip, deflate"  # sent on every request: httpx would add br or zstd when their modules exist
_STEP = 256 * 1024  # bytes one layer inflates at a time
_MAX_LAYERS = 4  # no server encodes a body more than twice; a longer chain is refused


class TooLarge(Exception):
    pass


class UnknownEncoding(Exception):
    pass


class _Inflater:
    """One zlib layer. `deflate` may come zlib-wrapped or raw (servers differ): its first two bytes, a zlib
    header or not, decide."""

    def __init__(self, coding: str) -> None:
        gzipped = coding in ("gzip", "x-gzip")
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzipped else zlib.MAX_WBITS)
        self._head = b"" if not gzipped else None  # the bytes read while the kind of deflate is unknown

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._head is not None and len(self._head) < 2:
            head, data = data[: 2 - len(self._head)], data[2 - len(self._head) :]
            self._head += head
            try:
                yield from self._steps(head)  # two bytes of a header give no output
            except zlib.error:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib header
                yield from self._steps(self._head)
        if data:
            yield from self._steps(data)

    def _steps(self, data: bytes) -> Iterator[bytes]:
        while True:
            out = self._inflate.decompress(data, _STEP)
            self._started = True
            data = self._inflate.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < _STEP:
                return

    def end(self) -> Iterator[bytes]:
        if out := self._inflate.flush():
            yield out


class BodyDecoder:
    """Feed raw chunks, get decoded ones; raises TooLarge past `limit` bytes at any layer (or of raw input)."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        unknown = sorted({c for c in codings if c not in ("gzip", "x-gzip", "deflate")})
        if unknown:
            raise UnknownEncoding(f"the body came with Content-Encoding {', '.join(unknown)}, which was not asked for")
        if len(codings) > _MAX_LAYERS:
            raise UnknownEncoding(f"the body came encoded {len(codings)} times over (Content-Encoding)")
        self._layers = [_Inflater(c) for c in reversed(codings)]  # the last coding applied comes off first
        self._limit = limit
        self._sizes = [0] * (len(self._layers) + 1)

    @property
    def layers(self) -> int:
        return len(self._layers)

    def feed(self, raw: bytes) -> Iterator[bytes]:
        return self._through(0, self._counted(0, raw))

    def end(self) -> Iterator[bytes]:
        return self._ended(0)

    def _counted(self, layer: int, data: bytes) -> bytes:
        self._sizes[layer] += len(data)
        if self._sizes[layer] > self._limit:
            raise TooLarge
        return data

    def _through(self, layer: int, data: bytes) -> Iterator[bytes]:
        """`data` into `layer`, step by step out of the last one."""
        if layer == len(self._layers):
            yield data
            return
        for chunk in self._layers[layer].feed(data):
            yield from self._through(layer + 1, self._counted(layer + 1, chunk))

    def _ended(self, layer: int) -> Iterator[bytes]:
        if layer == len(self._layers):
            return
        for chunk in self._layers[layer].end():
            yield from self._through(layer + 1, self._counted(layer + 1, chunk))
        yield from self._ended(layer + 1)


class BoundedBody:
    """A body collected from raw chunks through its decoder, within the cap."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        self._decoder = BodyDecoder(content_encoding, limit)
        self._parts: list[bytes] = []

    @property
    def compressed(self) -> bool:
        return self._decoder.layers > 0

    def take(self, raw: bytes) -> None:
        self._parts.extend(self._decoder.feed(raw))

    def steps(self, raw: bytes) -> Iterator[None]:
        """`take(raw)` a step at a time: yields after each inflated step (at most `_STEP` bytes), so that async
        code can let the event loop run between steps, and a timeout cut a bomb short, instead of blocking it for
        the whole inflation up to the cap."""
        for part in self._decoder.feed(raw):
            self._parts.append(part)
            yield

    def done(self) -> bytes:
        self._parts.extend(self._decoder.end())
        return b"".join(self._parts)
