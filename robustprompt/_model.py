"""Model handles: a profile (what the model supports), settings (how to call it) and a backend (who calls it).

A leaf of the package: what builds handles (`_resolve`), what calls them (`_http`, the adapters, the engine)
and what watches them all import it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from robustprompt._completion import Completion, Usage
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Prompt
from robustprompt._tokens import TokenCount

__all__ = ["Backend", "EmbeddingBackend", "Model", "StreamingBackend", "believable", "embedder"]


class Backend(Protocol):
    """Whoever turns a prompt into a completion: an HTTP API, the embedded runtime, or a test double."""

    def complete(self, prompt: Prompt) -> Completion: ...

    async def acomplete(self, prompt: Prompt) -> Completion: ...

    def count_tokens(self, text: str) -> TokenCount: ...


@runtime_checkable
class StreamingBackend(Protocol):
    """A backend that can also hand the answer over as it arrives: text pieces, then the whole Completion."""

    @property
    def streams(self) -> bool: ...

    def stream(self, prompt: Prompt) -> Generator[str | Completion, None, None]: ...

    def astream(self, prompt: Prompt) -> AsyncGenerator[str | Completion, None]: ...


@runtime_checkable
class EmbeddingBackend(Protocol):
    """A backend that can also embed text with the model itself (the `nearest` example choice ranks by it).

    `embeds` says whether this one can; `embed` gives one vector per text, in order.
    """

    @property
    def embeds(self) -> bool: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


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


def believable(usage: Usage, profile: ModelProfile, settings: Settings) -> Usage:
    """Reported usage within what one request to this model can use: its window, and its output cap."""
    max_output = max(profile.max_output_tokens, settings.max_output_tokens or 0)
    return usage.within(profile.context_window, max_output)


def embedder(model: Model) -> Callable[[Sequence[str]], list[list[float]]] | None:
    """The model's own embedding function, or None when its backend embeds nothing."""
    backend = model.backend
    return backend.embed if isinstance(backend, EmbeddingBackend) and backend.embeds else None
