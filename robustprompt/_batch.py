"""Run one task over many inputs: concurrent, bounded, rate-limited, every input accounted for.

    batch = Batch("openai:gpt-4.1-mini", concurrency=8, rpm=500)
    runs = map_task(classify, reviews, batch)
    # runs[i] is the Run for reviews[i], or the RobustPromptError that ended it

    for index, outcome in stream_task(classify, read_reviews(), batch, keep_runs=False):
        save(index, outcome)  # in completion order, each as its call ends; the batch keeps none of them

One pool of `concurrency` call slots serves every form: it takes an input only when a slot is free and hands each
outcome over as its call ends, so no more than that many calls are in flight, no more than that many inputs are
taken ahead, and nothing is kept once handed over. `astream_task` is that pool; `stream_task` drives it from blocking
code; `amap_task` and `map_task` collect it into a list in input order. Rate limits are token buckets applied to
every request the engine sends (re-asks and transport retries included), by wrapping the model's backend: limiting
whole task calls instead would let re-asks through uncounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import sys
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sized
from typing import Any, Protocol, TextIO, TypeAlias, TypeVar

from robustprompt._cache import Cache
from robustprompt._completion import Completion
from robustprompt._engine import run_async
from robustprompt._errors import ConfigError, RobustPromptError
from robustprompt._ledger import Ledger
from robustprompt._model import Backend, Model
from robustprompt._policy import Policy
from robustprompt._prompt import Prompt
from robustprompt._resolve import resolve
from robustprompt._run import Run
from robustprompt._task import TaskDeclaration
from robustprompt._tokens import TokenCount

__all__ = ["Batch", "Clock", "Outcome", "amap_task", "astream_task", "map_task", "stream_task"]

Outcome: TypeAlias = "Run[Any] | RobustPromptError"
OnResult: TypeAlias = Callable[[int, Outcome], None]
Landed: TypeAlias = tuple[int, Any]  # an input's index and its outcome, as a stream hands them over

T = TypeVar("T")

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
    """`label [#####     ] 12/40, 1 failed` redrawn in place on stderr; `label 12 done` when the total is unknown."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None) -> None:
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
        failed = f", {self._failed} failed" if self._failed else ""
        if self._total is None:
            self._stream.write(f"\r{self._label} {self._done} done{failed}")
        else:
            filled = _BAR_WIDTH * self._done // max(self._total, 1)
            bar = "#" * filled + " " * (_BAR_WIDTH - filled)
            self._stream.write(f"\r{self._label} [{bar}] {self._done}/{self._total}{failed}")
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None and self._done:  # end the line the bar was drawn on, if it was
            self._stream.write("\n")
            self._stream.flush()


def _progress_stream(progress: bool | None) -> TextIO | None:
    show = sys.stderr.isatty() if progress is None else progress
    return sys.stderr if show else None


@dataclasses.dataclass(frozen=True)
class Batch:
    """How a batch runs, whatever form it takes (list or stream), checked when it is made.

    `rpm` / `tpm` cap requests and tokens per minute (tokens estimated on each prompt with the model's
    tokenizer, corrected by the usage each answer reports). `progress` draws a bar on stderr (default: when
    stderr is a terminal). `clock` is for tests: time as the rate limiter sees it.
    """

    model: Model | str | None = None
    policy: Policy | None = None
    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    progress: bool | None = None
    clock: Clock | None = None
    cache: Cache | None = None
    ledger: Ledger | None = None  # totals every call the batch ends, by model and task

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        _positive("rpm", self.rpm)
        _positive("tpm", self.tpm)


async def _one(
    task: TaskDeclaration[Any, Any], value: Any, model: Model, policy: Policy | None, cache: Cache | None
) -> Outcome:
    try:
        return await run_async(task, value, model, policy, cache)
    except RobustPromptError as exc:
        return exc


def _kept(outcome: Outcome, keep_runs: bool) -> Any:
    return outcome if keep_runs or isinstance(outcome, RobustPromptError) else outcome.output


async def _landed(
    task: TaskDeclaration[Any, Any], inputs: Iterable[Any], batch: Batch, total: int | None, keep_runs: bool
) -> AsyncGenerator[Landed, None]:
    """The pool: (index, outcome) for each input as its call ends. Inputs are taken only when the consumer asks
    for the next outcome, one per freed slot, so a consumer that pauses holds the batch at `concurrency` calls."""
    # Resolved here, under the loop that runs the calls: a backend's connection pool belongs to one loop.
    model = _limited(resolve(batch.model), batch.rpm, batch.tpm, batch.clock or _SystemClock())
    bar = _Progress(model.name, total, _progress_stream(batch.progress))
    todo = enumerate(inputs)
    ended: asyncio.Queue[asyncio.Task[Outcome]] = asyncio.Queue()  # never more than `concurrency` calls in it
    calls: dict[asyncio.Task[Outcome], int] = {}

    # The two steps are functions of their own so that no local of the suspended generator keeps an input or an
    # outcome alive while the consumer holds the batch.
    def take_inputs() -> None:
        for index, value in itertools.islice(todo, batch.concurrency - len(calls)):
            call = asyncio.create_task(_one(task, value, model, batch.policy, batch.cache))
            call.add_done_callback(ended.put_nowait)
            calls[call] = index

    def hand_over(call: asyncio.Task[Outcome]) -> Landed:
        index = calls.pop(call)
        outcome = call.result()  # a bug outside robustprompt's errors escapes here and ends the batch
        bar.update(outcome)
        if batch.ledger is not None:
            batch.ledger.add(task.name, outcome)
        return index, _kept(outcome, keep_runs)

    try:
        while True:
            take_inputs()
            if not calls:
                return
            yield hand_over(await ended.get())
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        bar.close()


def _total(inputs: Iterable[Any]) -> int | None:
    return len(inputs) if isinstance(inputs, Sized) else None


def _require_no_loop(message: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigError(message)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return  # gather() of nothing would look for the thread's current loop, which may be none or another
    for pending in tasks:
        pending.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _blocking(landed: AsyncGenerator[T, None]) -> Generator[T, None, None]:
    """Step `landed` on a loop of its own, one item per `next`. The loop runs only inside a step, so while the
    consumer handles an item no call advances and no input is taken: the consumer sets the pace."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(landed.__anext__())
            except StopAsyncIteration:
                return
    finally:
        try:
            _cancel_all(loop)  # what a step cut short (Ctrl-C) or a consumer that stopped early left running
            loop.run_until_complete(landed.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())  # e.g. HTTP sessions that close with their loop
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def astream_task(
    task: TaskDeclaration[Any, Any], inputs: Iterable[Any], batch: Batch, *, keep_runs: bool = True
) -> AsyncGenerator[Landed, None]:
    """Run `task` on every input, yielding `(index, outcome)` as each call ends (completion order).

    The outcome is the input's Run (or, with `keep_runs=False`, its validated output) or the error that ended it.
    Inputs are taken lazily, any iterable: at most `batch.concurrency` calls in flight and as many inputs taken
    ahead, and nothing kept once yielded (the progress bar has a total when `len(inputs)` works). Stopping early
    (`break`, `aclose()`) cancels the calls in flight; `contextlib.aclosing` makes that happen at once rather than
    when the generator is collected.
    """
    return _landed(task, inputs, batch, _total(inputs), keep_runs)


def stream_task(
    task: TaskDeclaration[Any, Any], inputs: Iterable[Any], batch: Batch, *, keep_runs: bool = True
) -> Generator[Landed, None, None]:
    """The blocking form of `astream_task`, for code with no event loop running. Calls advance only while the
    consumer waits for the next item; closing the generator (or leaving the loop) cancels those in flight."""
    _require_no_loop("stream() was called inside a running event loop: use `async for ... in astream(...)` there")
    return _blocking(_landed(task, inputs, batch, _total(inputs), keep_runs))


async def amap_task(
    task: TaskDeclaration[Any, Any],
    inputs: Iterable[Any],
    batch: Batch,
    *,
    keep_runs: bool = True,
    on_result: OnResult | None = None,
) -> list[Any]:
    """Run `task` on every input; item i of the result is input i's Run or the error that ended it.

    With `keep_runs=False` item i is the validated output itself, or the error: a large batch then holds no
    answer texts or attempt records (an error still carries its Run). `on_result(index, outcome)` sees each
    result as it lands, e.g. to store it at once. Only cancellation, or a bug outside robustprompt's errors,
    escapes; the other calls are then cancelled.
    """
    items = list(inputs)
    results: list[Any] = [None] * len(items)
    async with contextlib.aclosing(_landed(task, items, batch, len(items), keep_runs=True)) as landed:
        async for index, outcome in landed:
            results[index] = _kept(outcome, keep_runs)
            if on_result is not None:
                on_result(index, outcome)
    return results  # the stream ran to its end: each slot is filled


def map_task(
    task: TaskDeclaration[Any, Any],
    inputs: Iterable[Any],
    batch: Batch,
    *,
    keep_runs: bool = True,
    on_result: OnResult | None = None,
) -> list[Any]:
    """The blocking form of `amap_task`, for code with no event loop running (a script, a worker thread)."""
    _require_no_loop("map_task() was called inside a running event loop: use `await amap_task(...)` there")
    return asyncio.run(amap_task(task, inputs, batch, keep_runs=keep_runs, on_result=on_result))
