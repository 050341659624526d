"""The default async transport: httpx's transport interface over aiohttp's connection pool.

httpx's `AsyncClient` stays the public injection point (auth, event hooks, mock transports all work as usual);
only the wire under robustprompt's own async clients changes. httpcore's async pool walks every pooled
connection per request and goes through anyio; aiohttp's pool does neither, which measured 5x the requests per
second at concurrency 50 (benchmarks/README.md). Failures are mapped onto httpx's exception types, so the
code above cannot tell the transports apart.

An aiohttp session belongs to the event loop that opened it, so each transport opens its session inside the loop
on first use and closes it when that loop shuts down (through an async generator, which `asyncio.run` and every
test runner finalise before closing the loop), or sooner with `aclose()`.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp  # this module loads on the first async call, never on `import robustprompt`
import httpx
import yarl

from robustprompt._errors import ConfigError

__all__ = ["AiohttpTransport", "default_async_client"]


def default_async_client() -> httpx.AsyncClient:
    """An httpx client on the aiohttp-backed transport (with httpx's default pool limits)."""
    return httpx.AsyncClient(transport=AiohttpTransport())


def _httpx_error(exc: Exception) -> httpx.TransportError:
    """The httpx exception that httpx's own transport would have raised for an aiohttp failure."""
    message = str(exc) or type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, asyncio.TimeoutError):  # aiohttp's read timeouts derive from it
        kind = httpx.ReadTimeout
    elif isinstance(exc, (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError)):
        kind = httpx.ProxyError
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        kind = httpx.RemoteProtocolError  # closed early, truncated or malformed: the server broke HTTP
    elif isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        kind = httpx.UnsupportedProtocol
    elif isinstance(exc, OSError):
        kind = httpx.ReadError
    else:
        kind = httpx.TransportError
    return kind(message)


_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _FAILURES as exc:
            raise _httpx_error(exc) from exc

    async def aclose(self) -> None:
        # Back to the pool when the body was read to the end; aiohttp closes the connection otherwise.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 through aiohttp, with httpx's limits, timeouts, TLS defaults and proxy variables."""

    def __init__(self) -> None:
        # httpx's verification: certifi, or SSL_CERT_FILE / SSL_CERT_DIR. Loaded here, before any request: it
        # takes a good part of a second, which must not count against the first request's time.
        self._ssl = httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._proxies: dict[str, str] = {}
        self._timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}

    async def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=100,  # httpx's default pool: 100 connections, idle ones dropped after 5 s
            keepalive_timeout=5.0,
            ssl=self._ssl,
        )
        # trust_env stays off: aiohttp would also add .netrc credentials, which httpx does not. Proxies from
        # the environment are applied per request below, as httpx applies them.
        session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False
        )
        self._proxies = urllib.request.getproxies()
        self._session = session
        self._closer = self._close_with_loop(session)
        await self._closer.__anext__()
        return session

    async def _close_with_loop(self, session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
        # Suspended here until the loop finalises its async generators at shutdown (or this one is closed).
        try:
            yield
        finally:
            if self._session is session:
                # Drop this finished generator too: it still refers to the loop, and the per-loop client map
                # (keyed weakly by that loop) would otherwise keep both alive for ever.
                self._session, self._closer = None, None
            await session.close()

    def _proxy(self, url: httpx.URL) -> str | None:
        if not self._proxies:
            return None
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        host = url.host if url.port is None else f"{url.host}:{url.port}"  # NO_PROXY may name a port
        if proxy is None or urllib.request.proxy_bypass(host):
            return None
        if "://" not in proxy:
            proxy = f"http://{proxy}"  # as httpx reads HTTP_PROXY=host:port
        if not proxy.startswith(("http://", "https://")):
            raise ConfigError(
                f"proxy {proxy.split('://')[0]}:// is not supported by robustprompt's default transport: pass "
                "async_http_client=httpx.AsyncClient(proxy=...) to robustprompt.model()"
            )
        return proxy

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        given = request.extensions.get("timeout", {})
        key = (given.get("connect"), given.get("read"), given.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            # aiohttp's `connect` covers waiting for a pooled connection and opening one, as httpx's pool wait.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=key[0], sock_read=key[1], connect=key[2])
            if len(self._timeouts) < 64:  # a deadline makes every timeout different: keep only the common ones
                self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or await self._open()
        content = await request.aread()
        # The body goes out whole, with its length: a chunked framing header from a streamed body must not follow.
        headers = [(name, value) for name, value in request.headers.multi_items() if name != "transfer-encoding"]
        try:
            response = await session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),  # already encoded: a signed path must reach the wire as is
                headers=headers,
                data=content or None,
                allow_redirects=False,  # httpx follows redirects itself, when asked to
                compress=False,
                timeout=self._timeout(request),
                proxy=self._proxy(request.url),
            )
        except _FAILURES as exc:
            raise _httpx_error(exc) from exc
        except ValueError as exc:  # aiohttp's verdict on a header value; the value itself may be a credential
            raise httpx.LocalProtocolError("a request header has a control character (a newline?)") from exc
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()}
        return httpx.Response(
            response.status, headers=response.raw_headers, stream=_Body(response), extensions=extensions
        )

    async def aclose(self) -> None:
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer.aclose()
