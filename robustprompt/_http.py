"""The HTTP backend: sends what an adapter prepared and hands the response back to it. The only place robustprompt
does network I/O, beside the transport (`_transport`) it sends through.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING

import httpx

from robustprompt._completion import Completion
from robustprompt._deadline import remaining
from robustprompt._errors import ConfigError, ProviderConnectionError, ProviderError, ProviderTimeout
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Prompt
from robustprompt._state import state
from robustprompt._tokens import TokenCount, count_tokens
from robustprompt.adapters import Adapter, Endpoint, HttpCall, StreamDecoder, StreamingAdapter

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

__all__ = ["HttpBackend"]


class HttpBackend:
    """Calls an HTTP API through an adapter. The only place robustprompt does network I/O."""

    def __init__(
        self,
        adapter: Adapter,
        profile: ModelProfile,
        settings: Settings,
        *,
        base_url: str,
        api_key: str | None,
        client: httpx.Client | None,
        async_client: httpx.AsyncClient | None,
    ) -> None:
        self.adapter = adapter
        self.profile = profile
        self.settings = settings
        self._endpoint = Endpoint(base_url, api_key)
        self._client = client
        self._given_sync = client is not None
        self._given_async = async_client
        # An AsyncClient's pool belongs to one event loop: keep one per loop unless the user gave theirs.
        self._async_clients: weakref.WeakKeyDictionary[AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"HttpBackend({self.profile.name!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._endpoint.base_url

    def count_tokens(self, text: str) -> TokenCount:
        return count_tokens(text, self.profile.tokenizer)

    def _sync_client(self) -> httpx.Client:
        if routed := state.routed_clients[-1:]:  # a slice: another thread may leave its cassette meanwhile
            return routed[0][0]
        if self._client is None:
            self._client = httpx.Client()
        return self._client

    def _async_client(self) -> httpx.AsyncClient:
        if routed := state.routed_clients[-1:]:
            return routed[0][1]
        if self._given_async is not None:
            return self._given_async
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            from robustprompt._transport import default_async_client

            client = self._async_clients[loop] = default_async_client()
        return client

    def close(self) -> None:
        if self._client is not None and not self._given_sync:
            client, self._client = self._client, None
            client.close()

    async def aclose(self) -> None:
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def complete(self, prompt: Prompt) -> Completion:
        call = self.adapter.prepare(prompt, self.profile, self.settings, self._endpoint)
        client = self._sync_client()
        request = self._request(client, call)
        with self._transport_errors():
            response = client.send(request, stream=True)
            try:
                if self._stated_within_cap(response):
                    body = response.read()
                else:
                    body = self._bounded(response, response.iter_bytes())
            finally:
                response.close()
        return self._read(response.status_code, response.headers, body)

    async def acomplete(self, prompt: Prompt) -> Completion:
        if self._given_sync and self._given_async is None and not state.routed_clients:
            # The user's own client (a proxy, a mock transport) must carry every call: run it in a thread rather
            # than build an async client that would go around it.
            return await asyncio.to_thread(self.complete, prompt)
        call = self.adapter.prepare(prompt, self.profile, self.settings, self._endpoint)
        client = self._async_client()
        request = self._request(client, call)
        with self._transport_errors():
            response = await client.send(request, stream=True)
            try:
                if self._stated_within_cap(response):
                    body = await response.aread()
                else:
                    body = b"".join([chunk async for chunk in self._abounded(response)])
            finally:
                await response.aclose()
        return self._read(response.status_code, response.headers, body)

    # Streams: the adapter decodes, this carries bytes. Each yields the answer's text pieces, then its Completion.

    @property
    def streams(self) -> bool:
        """Whether this API's answers can be streamed and decoded piece by piece."""
        return self._decoder() is not None

    def _decoder(self) -> StreamDecoder | None:
        adapter = self.adapter
        return adapter.stream_decoder(self.profile) if isinstance(adapter, StreamingAdapter) else None

    def _stream_call(self, prompt: Prompt) -> tuple[HttpCall, StreamDecoder]:
        decoder = self._decoder()
        if decoder is None or not isinstance(self.adapter, StreamingAdapter):
            raise ConfigError(
                f"{self.profile.name}: answers from {self.profile.provider} are not streamed yet; call it without "
                "streaming (`run`, `__call__`)"
            )
        return self.adapter.prepare_stream(prompt, self.profile, self.settings, self._endpoint), decoder

    def stream(self, prompt: Prompt) -> Generator[str | Completion, None, None]:
        call, decoder = self._stream_call(prompt)
        client = self._sync_client()
        request = self._request(client, call)
        with self._transport_errors(), self._redacted():
            response = client.send(request, stream=True)
            try:
                if not 200 <= response.status_code < 300:
                    body = self._bounded(response, response.iter_bytes())
                    yield self._read(response.status_code, response.headers, body)
                    return
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.settings.max_response_bytes:
                        raise self._too_large(response)
                    yield from self._decoded(decoder, chunk)
                yield decoder.finish()
            finally:
                response.close()

    async def astream(self, prompt: Prompt) -> AsyncGenerator[str | Completion, None]:
        if self._given_sync and self._given_async is None and not state.routed_clients:
            # As in `acomplete`: the user's own client carries the stream, read in a thread.
            pieces = self.stream(prompt)
            try:
                while (item := await asyncio.to_thread(next, pieces, None)) is not None:
                    yield item
            finally:
                pieces.close()
            return
        call, decoder = self._stream_call(prompt)
        client = self._async_client()
        request = self._request(client, call)
        with self._transport_errors(), self._redacted():
            response = await client.send(request, stream=True)
            try:
                if not 200 <= response.status_code < 300:
                    body = b"".join([chunk async for chunk in self._abounded(response)])
                    yield self._read(response.status_code, response.headers, body)
                    return
                async for chunk in self._abounded(response):
                    for piece in self._decoded(decoder, chunk):
                        yield piece
                yield decoder.finish()
            finally:
                await response.aclose()

    def _decoded(self, decoder: StreamDecoder, chunk: bytes) -> list[str]:
        try:
            return decoder.feed(chunk)
        except UnicodeDecodeError as exc:  # decoders split lines on bytes first: a cut character is whole again
            raise ProviderConnectionError(
                f"the stream is not valid UTF-8 ({exc.reason} at byte {exc.start} of a line)",
                provider=self.profile.provider,
                model=self.profile.model_id,
                status=200,
            ) from None

    @contextlib.contextmanager
    def _redacted(self) -> Iterator[None]:
        try:
            yield
        except ProviderError as exc:
            if self._endpoint.api_key:
                exc.redact(self._endpoint.api_key)
            raise

    def _request(self, client: httpx.Client | httpx.AsyncClient, call: HttpCall) -> httpx.Request:
        body = {"json": call.body} if call.content is None else {"content": call.content}
        left = remaining()  # a request in flight must not outlive the call's deadline
        timeout = self.settings.timeout if left is None else max(min(self.settings.timeout, left), 0.001)
        return client.build_request(call.method, call.url, headers=call.headers, timeout=timeout, **body)

    def _too_large(self, response: httpx.Response) -> ProviderError:
        limit = self.settings.max_response_bytes
        return ProviderError(
            f"response body over {limit} bytes (max_response_bytes): refused unread",
            provider=self.profile.provider,
            model=self.profile.model_id,
            status=response.status_code,
        )

    def _stated_within_cap(self, response: httpx.Response) -> bool:
        """Whether the headers fix the body's size within the cap: HTTP framing then stops the read there. A
        compressed body can inflate far beyond its stated length, so it is always read with the bound."""
        headers = response.headers
        length = headers.get("content-length", "")
        return (
            length.isdigit()
            and int(length) <= self.settings.max_response_bytes
            and "content-encoding" not in headers
            and "transfer-encoding" not in headers  # with both, httpx reads the body as chunked: any length
        )

    def _bounded(self, response: httpx.Response, chunks: Iterator[bytes]) -> bytes:
        size, parts = 0, []
        for chunk in chunks:
            size += len(chunk)
            if size > self.settings.max_response_bytes:
                raise self._too_large(response)
            parts.append(chunk)
        return b"".join(parts)

    async def _abounded(self, response: httpx.Response) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.settings.max_response_bytes:
                raise self._too_large(response)
            yield chunk

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """Map httpx failures (no response) to provider errors, leaving the request out: its headers hold the key."""
        provider, model = self.profile.provider, self.profile.model_id
        try:
            yield
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(
                f"no answer within {self.settings.timeout:g} s ({type(exc).__name__})", provider=provider, model=model
            ) from None
        except httpx.TransportError as exc:
            raise ProviderConnectionError(
                f"connection failed: {type(exc).__name__}: {exc}", provider=provider, model=model
            ) from None

    def _read(self, status: int, headers: httpx.Headers, body: bytes) -> Completion:
        try:
            return self.adapter.read(status, headers, body, self.profile)
        except ProviderError as exc:
            # Some APIs echo the presented key in auth errors; it must not travel on in messages or logs.
            if self._endpoint.api_key:
                exc.redact(self._endpoint.api_key)
            raise
