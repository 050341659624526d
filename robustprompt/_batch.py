"""Run one task over many inputs: concurrent, bounded, rate-limited, every input accounted for.

    runs = map_task(classify, reviews, model="openai:gpt-4.1-mini", concurrency=8, rpm=500)
    # runs[i] is the Run for reviews[i], or the RobustPromptError that ended it

A fixed pool of `concurrency` workers takes the inputs in order, so no more than that many calls are in flight
and nothing is queued beyond the inputs themselves. Rate limits are token buckets applied to every request the
engine sends (re-asks and transport retries included), by wrapping the model's backend: limiting whole task
calls instead would let re-asks through uncounted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TextIO, TypeAlias

from robustprompt._cache import Cache
from robustprompt._completion import Completion
from robustprompt._errors import ConfigError, RobustPromptError
from robustprompt._model import Backend, Model, resolve
from robustprompt._profile import Policy
from robustprompt._prompt import Prompt
from robustprompt._run import Run
from robustprompt._task import Task
from robustprompt._tokens import TokenCount

__all__ = ["Clock", "Outcome", "amap_task", "map_task"]

Outcome: TypeAlias = "Run[Any] | RobustPromptError"
OnResult: TypeAlias = Callable[[int, Outcome], None]

_BAR_WIDTH = 30


class Clock(Protocol):
    """Time as the rate limiter sees it; tests inject one that advances only when slept on."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class _SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Bucket:
    """Refills at `per_minute` / 60 a second up to `capacity`. A cost larger than the capacity waits for a full
    bucket and leaves it in debt, so any request size gets through and the long-run rate still holds."""

    def __init__(self, per_minute: float, capacity: float, clock: Clock) -> None:
        self._rate = per_minute / 60.0
        self._capacity = capacity
        self._level = capacity
        self._clock = clock
        self._stamp = clock.now()
        self._lock = asyncio.Lock()  # waiters are served in arrival order

    def _refill(self) -> None:
        now = self._clock.now()
        self._level = min(self._capacity, self._level + (now - self._stamp) * self._rate)
        self._stamp = now

    async def take(self, cost: float) -> None:
        async with self._lock:
            need = min(cost, self._capacity)
            self._refill()
            while self._level < need:
                await self._clock.sleep((need - self._level) / self._rate)
                self._refill()
            self._level -= cost

    def charge(self, extra: float) -> None:
        """Account for tokens found only after the answer (the output): later requests wait for them."""
        self._refill()
        self._level -= extra


class _LimitedBackend:
    """The model's backend, behind the request and token buckets. Batches call `acomplete` only."""

    def __init__(self, inner: Backend, requests: _Bucket | None, tokens: _Bucket | None) -> None:
        self._inner = inner
        self._requests = requests
        self._tokens = tokens

    def count_tokens(self, text: str) -> TokenCount:
        return self._inner.count_tokens(text)

    def complete(self, prompt: Prompt) -> Completion:
        return self._inner.complete(prompt)

    async def acomplete(self, prompt: Prompt) -> Completion:
        estimate = self._prompt_tokens(prompt) if self._tokens is not None else 0
        if self._requests is not None:
            await self._requests.take(1)
        if self._tokens is not None:
            await self._tokens.take(estimate)
        completion = await self._inner.acomplete(prompt)
        if self._tokens is not None and completion.usage is not None:
            self._tokens.charge(completion.usage.total_tokens - estimate)
        return completion

    def _prompt_tokens(self, prompt: Prompt) -> int:
        texts = [prompt.system, *(message.content for message in prompt.messages)]
        return sum(self._inner.count_tokens(text).tokens for text in texts)


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def _limited(model: Model, rpm: float | None, tpm: float | None, clock: Clock) -> Model:
    if rpm is None and tpm is None:
        return model
    # One request at a time for requests, a second's worth for tokens: even pacing, no burst for the server
    # to refuse at the start of a run.
    requests = _Bucket(rpm, 1, clock) if rpm is not None else None
    tokens = _Bucket(tpm, tpm / 60.0, clock) if tpm is not None else None
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(Model)}
    fields["backend"] = _LimitedBackend(model.backend, requests, tokens)
    return Model(**fields)  # the plain dataclass: test doubles' constructors take other arguments


class _Progress:
    """`label [#####     ] 12/40, 1 failed` redrawn in place on stderr."""

    def __init__(self, label: str, total: int, stream: TextIO | None) -> None:
        self._label = label
        self._total = total
        self._stream = stream
        self._done = 0
        self._failed = 0

    def update(self, outcome: Outcome) -> None:
        self._done += 1
        self._failed += isinstance(outcome, RobustPromptError)
        self._draw()

    def _draw(self) -> None:
        if self._stream is None:
            return
        filled = _BAR_WIDTH * self._done // max(self._total, 1)
        failed = f", {self._failed} failed" if self._failed else ""
        bar = "#" * filled + " " * (_BAR_WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self._done}/{self._total}{failed}")
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None and self._total:
            self._stream.write("\n")
            self._stream.flush()


def _progress_stream(progress: bool | None) -> TextIO | None:
    show = sys.stderr.isatty() if progress is None else progress
    return sys.stderr if show else None


async def _one(task: Task[Any, Any], value: Any, model: Model, policy: Policy | None, cache: Cache | None) -> Outcome:
    try:
        return await task.arun(value, model=model, policy=policy, cache=cache)
    except RobustPromptError as exc:
        return exc


async def amap_task(
    task: Task[Any, Any],
    inputs: Iterable[Any],
    *,
    model: Model | str | None,
    policy: Policy | None = None,
    concurrency: int = 8,
    rpm: float | None = None,
    tpm: float | None = None,
    progress: bool | None = None,
    on_result: OnResult | None = None,
    clock: Clock | None = None,
    keep_runs: bool = True,
    cache: Cache | None = None,
) -> list[Any]:
    """Run `task` on every input; item i of the result is input i's Run or the error that ended it.

    With `keep_runs=False` item i is the validated output itself, or the error: a large batch then holds no
    answer texts or attempt records (an error still carries its Run).

    `rpm` / `tpm` cap requests and tokens per minute (tokens estimated on each prompt with the model's
    tokenizer, corrected by the usage each answer reports). `progress` draws a bar on stderr (default: when
    stderr is a terminal). `on_result(index, outcome)` sees each result as it lands, e.g. to store it at once.
    Only cancellation, or a bug outside robustprompt's errors, escapes; the other calls are then cancelled.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    _positive("rpm", rpm)
    _positive("tpm", tpm)
    items = list(inputs)
    resolved = _limited(resolve(model), rpm, tpm, clock or _SystemClock())
    results: list[Any] = [None] * len(items)
    pending = iter(range(len(items)))  # shared by the workers: each index is taken once
    bar = _Progress(resolved.name, len(items), _progress_stream(progress))

    async def worker() -> None:
        for index in pending:
            outcome = await _one(task, items[index], resolved, policy, cache)
            results[index] = outcome if keep_runs or isinstance(outcome, RobustPromptError) else outcome.output
            bar.update(outcome)
            if on_result is not None:
                on_result(index, outcome)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for running in workers:
            running.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        bar.close()
    return results  # every worker ran to the end: each slot is filled


def map_task(
    task: Task[Any, Any],
    inputs: Iterable[Any],
    *,
    model: Model | str | None,
    policy: Policy | None = None,
    concurrency: int = 8,
    rpm: float | None = None,
    tpm: float | None = None,
    progress: bool | None = None,
    on_result: OnResult | None = None,
    clock: Clock | None = None,
    keep_runs: bool = True,
    cache: Cache | None = None,
) -> list[Any]:
    """The blocking form of `amap_task`, for code with no event loop running (a script, a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(
            amap_task(
                task,
                inputs,
                model=model,
                policy=policy,
                concurrency=concurrency,
                rpm=rpm,
                tpm=tpm,
                progress=progress,
                on_result=on_result,
                clock=clock,
                keep_runs=keep_runs,
                cache=cache,
            )
        )
    raise ConfigError("map_task() was called inside a running event loop: use `await amap_task(...)` there")
