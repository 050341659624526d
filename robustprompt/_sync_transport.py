"""The default blocking transport: httpx's own, with every socket wait bounded by the request's phase.

httpx's timeouts apply to each read, so a server that sends one byte a second keeps a request alive for ever.
An async request can simply be cancelled when its phase ends; a blocking one cannot, so here each read, write and
connect gets at most what is left of the phase (`_deadline.phase_left`), and none starts once it has ended. The
phase is a context variable set by the sender in the thread that blocks, so it reaches the socket unchanged.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx

from robustprompt._deadline import phase_left

__all__ = ["default_sync_client"]


def _within_phase(timeout: float | None, kind: type[Exception]) -> float | None:
    left = phase_left()
    if left is None:
        return timeout
    if left <= 0:
        raise kind("the request's time ran out")
    return left if timeout is None else min(timeout, left)


class _PhasedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _within_phase(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _within_phase(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, _within_phase(timeout, httpcore.ConnectTimeout))
        return _PhasedStream(tls)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _PhasedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _within_phase(timeout, httpcore.ConnectTimeout)
        return _PhasedStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[typing.Any] | None = None
    ) -> httpcore.NetworkStream:
        timeout = _within_phase(timeout, httpcore.ConnectTimeout)
        return _PhasedStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def default_sync_client() -> httpx.Client:
    """An httpx client whose direct connections keep to the request's phase (see the module's docstring). A
    proxy from the environment gets httpx's own transport, bounded per read only."""
    transport = httpx.HTTPTransport()
    pool = transport._pool  # httpx builds the pool itself and takes no network backend of ours
    pool._network_backend = _PhasedBackend(pool._network_backend)
    return httpx.Client(transport=transport)
