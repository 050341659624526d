"""Which adapter speaks for which provider: the built-in table, vendors the catalog declares as data, and the
`robustprompt.adapters` entry-point group (name = the model-string prefix, value = the adapter class).

Adding a provider is an adapter module and a row here (or, for a server that speaks a wire format robustprompt
already has, a vendor entry in the catalog and nothing else). What tracing reports about a provider is read from
its adapter class too (`telemetry`), so no file above the adapters names a provider.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from robustprompt import _catalog
from robustprompt._errors import ConfigError

if TYPE_CHECKING:
    from robustprompt.adapters import Adapter, InProcessAdapter

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "Telemetry", "adapter_class", "load", "providers", "telemetry"]

BUILTIN = {
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
    "local": "robustprompt.adapters.local:LocalAdapter",
}
ENTRY_POINT_GROUP = "robustprompt.adapters"


def _builtin_class(provider: str) -> type[Any]:
    module, _, attr = BUILTIN[provider].partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attr)
    return cls


def adapter_class(provider: str) -> type[Any] | None:
    """The class behind `provider`, or None when no adapter, vendor or plug-in has that name."""
    if provider in BUILTIN:
        return _builtin_class(provider)
    vendor = _catalog.vendor(provider)
    if vendor is not None:
        wire = _builtin_class(vendor.wire) if vendor.wire in BUILTIN else None
        if wire is None or not hasattr(wire, "for_vendor"):
            able = [name for name in BUILTIN if hasattr(_builtin_class(name), "for_vendor")]
            raise ConfigError(
                f"vendor {provider!r} in the catalog speaks wire {vendor.wire!r}, which a catalog entry cannot "
                f"declare a vendor of: use {' or '.join(map(repr, able))}"
            )
        made: type[Any] = wire.for_vendor(vendor)
        return made
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == provider]
    cls: type[Any] | None = found[0].load() if found else None
    return cls


def load(provider: str) -> Adapter | InProcessAdapter | None:
    """A fresh adapter for `provider`, or None."""
    cls = adapter_class(provider)
    return None if cls is None else cls()


def providers() -> list[str]:
    names = {*BUILTIN, *(v.provider for v in _catalog.vendors())}
    names.update(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


@dataclass(frozen=True, slots=True)
class Telemetry:
    """What tracing reports about a provider (OpenTelemetry GenAI conventions), from its adapter's attributes:
    `otel_provider` where the conventions name it otherwise, `otel_operation` where it is not chat (or text
    completion for a base model), and `in_process` for a runtime with no network hop. Each may be left out."""

    provider: str
    operation: str | None  # None: "chat", or "text_completion" for a completion-style model
    in_process: bool


@functools.cache  # adapters are code: what they say cannot change while the process runs
def telemetry(provider: str) -> Telemetry:
    cls = adapter_class(provider)
    return Telemetry(
        getattr(cls, "otel_provider", provider),
        getattr(cls, "otel_operation", None),
        bool(getattr(cls, "in_process", False)),
    )
