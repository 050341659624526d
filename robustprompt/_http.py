"""The HTTP backend: sends what an adapter prepared and hands the response back to it. The only place robustprompt
does network I/O, beside the transport (`_transport`) it sends through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
import weakref
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, TypeVar

import httpx

from robustprompt._completion import Completion
from robustprompt._deadline import DEADLINE, in_time, phase, phase_left, remaining
from robustprompt._decoding import ACCEPT_ENCODING, BoundedBody, TooLarge, UnknownEncoding
from robustprompt._errors import ConfigError, ProviderConnectionError, ProviderError, ProviderTimeout, contained
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Prompt
from robustprompt._secrets import keep_out_of_logs, scrub, scrub_bytes
from robustprompt._state import state
from robustprompt._tokens import TokenCount, count_tokens
from robustprompt.adapters import Adapter, Endpoint, HttpAnswer, HttpCall, StreamDecoder, StreamingAdapter

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

__all__ = ["HttpBackend"]

T = TypeVar("T")


async def _in_time(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable`, cancelled after `seconds`: one request phase, whatever the transport's per-read timeouts."""
    try:
        return await in_time(awaitable, seconds)
    except asyncio.TimeoutError:
        raise httpx.ReadTimeout("the request's time ran out") from None


def _headers_in_time(send: Callable[[], httpx.Response], seconds: float) -> httpx.Response:
    """`send()` given `seconds` for the response headers, in a thread of its own: a blocking read cannot be cut
    short from outside, but the caller can stop waiting. The thread ends when the server finishes or a read
    times out, and closes a response that came too late (its connection goes back to the client's pool)."""
    arrived: concurrent.futures.Future[httpx.Response] = concurrent.futures.Future()
    context = contextvars.copy_context()  # the phase reaches the sending thread, as in a direct call

    def work() -> None:
        try:
            arrived.set_result(context.run(send))
        except BaseException as exc:  # handed to the caller, which raises it as its own
            arrived.set_exception(exc)

    threading.Thread(target=work, name="robustprompt-headers", daemon=True).start()
    try:
        return arrived.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        arrived.add_done_callback(_close_late)
        raise httpx.ReadTimeout("the response headers did not arrive in time") from None


def _batch_body(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The body of a batch protocol's answer a transport read before handing the response over, else None."""
    if not response.is_stream_consumed:
        return None
    if len(response.content) > max_bytes:
        raise TooLarge
    return response.content


async def _take(body: BoundedBody, chunks: AsyncIterator[bytes]) -> None:
    async for chunk in chunks:
        body.take(chunk)


def _close_late(arrived: concurrent.futures.Future[httpx.Response]) -> None:
    if arrived.exception() is None:
        arrived.result().close()


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
        if api_key:
            keep_out_of_logs(api_key)
        self._client = client
        self._given_sync = client is not None
        self._given_async = async_client
        # An AsyncClient's pool belongs to one event loop: keep one per loop unless the user gave theirs.
        self._async_clients: weakref.WeakKeyDictionary[AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._serving: dict[str, HttpBackend] = {}

    def serving(self, profile: ModelProfile) -> HttpBackend:
        """This backend for another model of the same API: the same address, key, settings and given clients (a
        retired model's replacement). Kept, so its pools are reused; closed with this one."""
        found = self._serving.get(profile.name)
        if found is None:  # a twin built by a racing thread is dropped before it opened any pool
            built = HttpBackend(
                self.adapter,
                profile,
                self.settings,
                base_url=self.base_url,
                api_key=self._endpoint.api_key,
                client=self._client if self._given_sync else None,
                async_client=self._given_async,
            )
            found = self._serving.setdefault(profile.name, built)
        return found

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
            from robustprompt._sync_transport import default_sync_client

            self._client = default_sync_client()
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
        for other in list(self._serving.values()):
            other.close()

    async def aclose(self) -> None:
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        for other in list(self._serving.values()):
            await other.aclose()

    def complete(self, prompt: Prompt) -> Completion:
        with self._typed_failures():
            return self._complete(prompt)

    async def acomplete(self, prompt: Prompt) -> Completion:
        with self._typed_failures():
            return await self._acomplete(prompt)

    def _complete(self, prompt: Prompt) -> Completion:
        call = self.adapter.prepare(prompt, self.profile, self.settings, self._endpoint)
        client = self._sync_client()
        request = self._request(client, call)
        with self._transport_errors():
            with phase(self.settings.timeout) as seconds:  # connecting, sending, the response headers
                response = self._send(client, request, seconds)
            try:
                with phase(self.settings.timeout):
                    body = self._bounded(response, response.iter_raw())
            finally:
                response.close()
        return self._read(response.status_code, response.headers, body)

    def _send(self, client: httpx.Client, request: httpx.Request, seconds: float) -> httpx.Response:
        """Our own blocking client keeps every socket wait within the phase (`_sync_transport`). Any other bounds
        each read only, so under a deadline its header phase runs in a thread the call stops waiting for."""
        if remaining() is None or (client is self._client and not self._given_sync):
            return client.send(request, stream=True)
        return _headers_in_time(lambda: client.send(request, stream=True), seconds)

    async def _acomplete(self, prompt: Prompt) -> Completion:
        if self._given_sync and self._given_async is None and not state.routed_clients:
            # The user's own client (a proxy, a mock transport) must carry every call: run it in a thread rather
            # than build an async client that would go around it.
            return await asyncio.to_thread(self.complete, prompt)
        call = self.adapter.prepare(prompt, self.profile, self.settings, self._endpoint)
        client = self._async_client()
        request = self._request(client, call)
        with self._transport_errors():
            with phase(self.settings.timeout) as seconds:
                response = await _in_time(client.send(request, stream=True), seconds)
            try:
                with phase(self.settings.timeout) as seconds:
                    body = await _in_time(self._aread(response), seconds)
            finally:
                await response.aclose()
        return self._read(response.status_code, response.headers, body)

    # Batch APIs: the batch wire prepares each exchange, this carries it; an item's answer is read as a live one.

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    def exchange(self, call: HttpCall, max_bytes: int) -> HttpAnswer:
        """Send one request of a batch protocol (an upload, a poll, a results download) and return its answer,
        the body refused past `max_bytes` and the key taken out of it."""
        with self._typed_failures(), self._transport_errors():
            client = self._sync_client()
            request = self._request(client, call)
            with phase(self.settings.timeout):
                response = client.send(request, stream=True)
            try:
                with self._body_errors(response), phase(self.settings.timeout):
                    raw = _batch_body(response, max_bytes)
                    if raw is None:
                        body = BoundedBody(response.headers.get("content-encoding", ""), max_bytes)
                        for chunk in response.iter_raw():
                            body.take(chunk)
                        raw = body.done()
            finally:
                response.close()
        return self._batch_answer(response, raw)

    async def aexchange(self, call: HttpCall, max_bytes: int) -> HttpAnswer:
        """The async twin of `exchange`."""
        if self._given_sync and self._given_async is None and not state.routed_clients:
            return await asyncio.to_thread(self.exchange, call, max_bytes)  # the user's own client carries it
        with self._typed_failures(), self._transport_errors():
            client = self._async_client()
            request = self._request(client, call)
            with phase(self.settings.timeout) as seconds:
                response = await _in_time(client.send(request, stream=True), seconds)
            try:
                with self._body_errors(response), phase(self.settings.timeout) as seconds:
                    raw = _batch_body(response, max_bytes)
                    if raw is None:
                        body = BoundedBody(response.headers.get("content-encoding", ""), max_bytes)
                        await _in_time(_take(body, response.aiter_raw()), seconds)
                        raw = body.done()
            finally:
                await response.aclose()
        return self._batch_answer(response, raw)

    def _batch_answer(self, response: httpx.Response, raw: bytes) -> HttpAnswer:
        if key := self._endpoint.api_key:
            raw = scrub_bytes(raw, key)
        return HttpAnswer(response.status_code, dict(response.headers), raw)

    def read_answer(self, answer: HttpAnswer) -> Completion:
        """The completion of a batch item's answer, read as the live call's response would be (or its error)."""
        with self._typed_failures():
            return self._read(answer.status, httpx.Headers(dict(answer.headers)), answer.body)

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
                    body = self._bounded(response, response.iter_raw())
                    yield self._read(response.status_code, response.headers, body)
                    return
                size = 0
                with self._body_errors(response):
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > self.settings.max_response_bytes:
                            raise TooLarge
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
                    body = await self._aread(response)
                    yield self._read(response.status_code, response.headers, body)
                    return
                size = 0
                with self._body_errors(response):
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > self.settings.max_response_bytes:
                            raise TooLarge
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
        headers = {"accept-encoding": ACCEPT_ENCODING, **call.headers}  # only what can be decoded within the cap
        return client.build_request(call.method, call.url, headers=headers, timeout=timeout, **body)

    def _bounded(self, response: httpx.Response, chunks: Iterator[bytes]) -> bytes:
        """The body, refused past the size cap, and cut off when the phase's time runs out between two chunks
        (a client of the user's bounds each read only)."""
        with self._body_errors(response):
            if response.is_stream_consumed:
                return self._read_already(response)
            body = BoundedBody(response.headers.get("content-encoding", ""), self.settings.max_response_bytes)
            for chunk in chunks:
                body.take(chunk)
                if phase_left() == 0:
                    raise httpx.ReadTimeout("the body did not arrive in time")
            return body.done()

    async def _aread(self, response: httpx.Response) -> bytes:
        with self._body_errors(response):
            if response.is_stream_consumed:
                return self._read_already(response)
            body = BoundedBody(response.headers.get("content-encoding", ""), self.settings.max_response_bytes)
            async for chunk in response.aiter_raw():
                if not body.compressed:
                    body.take(chunk)
                    continue
                for _ in body.steps(chunk):  # inflating up to the cap takes a while: not in one go on the loop
                    await asyncio.sleep(0)
            return body.done()

    def _read_already(self, response: httpx.Response) -> bytes:
        """A body a transport read before handing the response over (httpx.MockTransport does), decoded."""
        if len(response.content) > self.settings.max_response_bytes:
            raise TooLarge
        return response.content

    @contextlib.contextmanager
    def _body_errors(self, response: httpx.Response) -> Iterator[None]:
        provider, model, status = self.profile.provider, self.profile.model_id, response.status_code
        try:
            yield
        except TooLarge:
            limit = self.settings.max_response_bytes
            raise ProviderError(
                f"response body over {limit} bytes (max_response_bytes), decoded or not: refused",
                provider=provider,
                model=model,
                status=status,
            ) from None
        except UnknownEncoding as exc:
            raise ProviderError(f"unreadable response: {exc}", provider=provider, model=model, status=status) from None
        except zlib.error as exc:
            raise ProviderConnectionError(
                f"the response body could not be decoded: {exc}", provider=provider, model=model, status=status
            ) from None

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """Map httpx failures (no response) to provider errors, leaving the request out: its headers hold the key."""
        provider, model = self.profile.provider, self.profile.model_id
        try:
            yield
        except httpx.TimeoutException as exc:
            if remaining() == 0:  # the call's own deadline cut the request short, not the provider's slowness
                raise ProviderTimeout(
                    "the call's deadline passed during the request", provider=provider, model=model, code=DEADLINE
                ) from None
            raise ProviderTimeout(
                f"no answer within {self.settings.timeout:g} s ({type(exc).__name__})", provider=provider, model=model
            ) from None
        except httpx.UnsupportedProtocol:
            raise ConfigError(
                f"the base URL {self.base_url!r} must start with http:// or https:// (pass base_url= to "
                "robustprompt.model(), or set the provider's base URL variable)"
            ) from None
        except httpx.TransportError as exc:
            raise ProviderConnectionError(
                f"connection failed: {type(exc).__name__}: {exc}", provider=provider, model=model
            ) from None

    def _read(self, status: int, headers: httpx.Headers, body: bytes) -> Completion:
        if key := self._endpoint.api_key:  # before the adapter cuts, parses or keeps any of it
            body = scrub_bytes(body, key)
            if any(key[-4:] in value for value in headers.values()):
                headers = httpx.Headers([(name, scrub(value, key)) for name, value in headers.multi_items()])
        # Its usage is made believable where every backend's is: the engine's attempt record.
        return self.adapter.read(status, headers, body, self.profile)

    @contextlib.contextmanager
    def _typed_failures(self) -> Iterator[None]:
        """Every failure of a request as a provider error, with the key taken out of it: some APIs echo the key
        in auth errors, and an unexpected failure (an adapter's bug on an odd answer) may quote the request."""
        key = self._endpoint.api_key
        try:
            yield
        except ProviderError as exc:
            if key:
                exc.redact(key)
            raise
        except Exception as exc:
            if not contained(exc):
                raise
            err = ProviderError(
                f"the request could not be made or its answer read: {type(exc).__name__}: {str(exc)[:500]}",
                provider=self.profile.provider,
                model=self.profile.model_id,
                code="unexpected",
            )
            if key:
                err.redact(key)
            raise err from None  # the original may hold the request, key included
