"""Models backed by a Python function or a script of answers, for testing apps without a provider."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from robustprompt._completion import Completion, Usage
from robustprompt._errors import ConfigError, ProviderError
from robustprompt._model import Model
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, Prompt
from robustprompt._tokens import TokenCount, count_tokens

__all__ = ["FunctionModel", "ScriptedModel"]


_serial = itertools.count()


class _FunctionBackend:
    def __init__(
        self, fn: Callable[[Prompt], str | Completion], embed: Callable[[str], Sequence[float]] | None = None
    ) -> None:
        self.fn = fn
        self.embed_fn = embed
        self.prompts: list[Prompt] = []
        self._lock = threading.Lock()

    @property
    def embeds(self) -> bool:
        return self.embed_fn is not None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.embed_fn is None:
            raise ConfigError("this FunctionModel embeds nothing: pass embed=fn(text) -> vector to give it embeddings")
        return [list(self.embed_fn(text)) for text in texts]

    def complete(self, prompt: Prompt) -> Completion:
        with self._lock:
            self.prompts.append(prompt)
        answer = self.fn(prompt)
        if isinstance(answer, Completion):
            return answer
        return Completion(answer, usage=Usage(0, 0), model_id="function")

    async def acomplete(self, prompt: Prompt) -> Completion:
        return self.complete(prompt)

    def count_tokens(self, text: str) -> TokenCount:
        return count_tokens(text, "estimate")


class FunctionModel(Model):
    """A model whose answers come from `fn(prompt) -> raw text` (or a Completion, to set finish_reason...).

    `prompts` lists every prompt it received, re-asks included. `modes` lists the output modes it claims, best
    first (default: just `mode`). `embed(text) -> vector`, when given, is its embedding function: it makes the
    `nearest` example choice available, as the embedded runtime does.
    """

    def __init__(
        self,
        fn: Callable[[Prompt], str | Completion],
        *,
        name: str = "test:function",
        mode: OutputMode = OutputMode.PROMPTED,
        context_window: int = 32_768,
        modes: tuple[OutputMode, ...] | None = None,
        embed: Callable[[str], Sequence[float]] | None = None,
    ) -> None:
        provider, _, model_id = name.partition(":")
        profile = ModelProfile(
            provider, model_id or name, modes=modes or (mode,), context_window=context_window, max_output_tokens=1024
        )
        backend = _FunctionBackend(fn, embed)
        # A fresh key per double (id() repeats after garbage collection): no double inherits another's memory.
        super().__init__(name, profile, Settings(), backend, key=f"{name}#{next(_serial)}")

    @property
    def prompts(self) -> list[Prompt]:
        backend: Any = self.backend
        prompts: list[Prompt] = backend.prompts
        return prompts


class ScriptedModel(FunctionModel):
    """A model that gives these answers in order; a ProviderError in the script is raised instead.

    Running past the end of the script is a ConfigError naming how many answers it had.
    """

    def __init__(
        self,
        answers: Iterable[str | Completion | ProviderError],
        *,
        name: str = "test:scripted",
        mode: OutputMode = OutputMode.PROMPTED,
    ) -> None:
        script = list(answers)
        lock = threading.Lock()
        position = [0]

        def next_answer(_: Prompt) -> str | Completion:
            with lock:
                index = position[0]
                position[0] += 1
            if index >= len(script):
                raise ConfigError(
                    f"ScriptedModel ran out: it had {len(script)} answer(s), call {index + 1} asked for more"
                )
            answer = script[index]
            if isinstance(answer, ProviderError):
                raise answer
            return answer

        super().__init__(next_answer, name=name, mode=mode)
