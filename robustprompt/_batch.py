"""Run a task or a pipeline over many inputs: concurrent, bounded, rate-limited, every input accounted for.

    outputs = classify.map(reviews, model="openai:gpt-4.1-mini", batch=rp.Batch(concurrency=8, rpm=500))
    # outputs[i] is the output for reviews[i], or the RobustPromptError that ended it

    for index, outcome in classify.stream(read_reviews(), model=..., batch=rp.Batch(rpm=500)):
        save(index, outcome)  # in completion order, each as its call ends; the batch keeps none of them

`Batch` says how a batch runs, whatever form it takes; a `Job` says what it does with each input (`TaskJob`
here, the pipeline's own in `_pipeline`). One pool of `concurrency` call slots serves every form: it takes an input
only when a slot is free and hands each outcome over as its call ends, so no more than that many calls are in
flight, no more than that many inputs are taken ahead, and nothing is kept once handed over. `astream_job` is that
pool; `stream_job` drives it from blocking code; `amap_job` and `map_job` collect it into a list in input order.
Rate limits are token buckets applied to every request the engine sends (re-asks and transport retries included),
by wrapping each model's backend: limiting whole calls instead would let re-asks through uncounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import sys
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterable, Sized
from typing import Any, Protocol, TextIO, TypeAlias, TypeVar

from robustprompt._cache import Cache
from robustprompt._completion import Completion
from robustprompt._deadline import DEADLINE, in_time, remaining
from robustprompt._engine import run_async
from robustprompt._errors import ConfigError, ProviderTimeout, RobustPromptError, contained, typed
from robustprompt._ledger import Ledger
from robustprompt._model import Model, believable
from robustprompt._policy import Policy
from robustprompt._prompt import Prompt
from robustprompt._resolve import resolve
from robustprompt._run import Run
from robustprompt._task import TaskDeclaration
from robustprompt._tokens import TokenCount

__all__ = [
    "Batch",
    "Call",
    "Clock",
    "Job",
    "Limits",
    "Outcome",
    "Permits",
    "TaskJob",
    "amap_job",
    "astream_job",
    "limited_by",
    "map_job",
    "stream_job",
]

Outcome: TypeAlias = "Run[Any] | RobustPromptError"  # a task's; a pipeline's is a PipelineRun or the error
OnResult: TypeAlias = Callable[[int, Any], None]
Landed: TypeAlias = tuple[int, Any]  # an input's index and its outcome, as a stream hands them over
# One input's call, returning its outcome: a RobustPromptError is an outcome, not raised.
Call: TypeAlias = Callable[[Any], Coroutine[Any, Any, Any]]

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


class Permits(Protocol):
    """What a rate limit hands out: `_Bucket` in one process, a lease on a bucket other processes share in
    `_ray_limits`."""

    async def take(self, cost: float) -> None:
        """Wait until `cost` (one request, or a prompt's estimated tokens) may be spent, and spend it."""
        ...

    def charge(self, extra: float) -> None:
        """Spend `extra` found only after the answer (the output tokens; negative when the estimate was high)."""
        ...


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
    """The model's backend, behind the request and token buckets. Batches call `acomplete` only. No wait for a
    bucket outlasts the call's deadline."""

    def __init__(self, model: Model, requests: Permits | None, tokens: Permits | None) -> None:
        self._inner = model.backend
        self._model = model
        self._requests = requests
        self._tokens = tokens

    def count_tokens(self, text: str) -> TokenCount:
        return self._inner.count_tokens(text)

    def complete(self, prompt: Prompt) -> Completion:
        return self._inner.complete(prompt)

    async def acomplete(self, prompt: Prompt) -> Completion:
        estimate = self._prompt_tokens(prompt) if self._tokens is not None else 0
        await self._paced(estimate)
        completion = await self._inner.acomplete(prompt)
        if self._tokens is not None and completion.usage is not None:
            usage = believable(completion.usage, self._model.profile, self._model.settings)
            self._tokens.charge(usage.total_tokens - estimate)
        return completion

    async def _paced(self, estimate: int) -> None:
        left = remaining()
        try:
            await in_time(self._take(estimate), left)
        except asyncio.TimeoutError:
            profile = self._model.profile
            raise ProviderTimeout(
                f"the call's deadline passed while waiting {left:.1f} s for the rate limit (rpm / tpm)",
                provider=profile.provider,
                model=profile.model_id,
                code=DEADLINE,
            ) from None

    async def _take(self, estimate: int) -> None:
        if self._requests is not None:
            await self._requests.take(1)
        if self._tokens is not None:
            await self._tokens.take(estimate)

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
    return limited_by(model, requests, tokens)


def limited_by(model: Model, requests: Permits | None, tokens: Permits | None) -> Model:
    """`model` with every request it sends paced by `requests` (one per request) and `tokens` (each prompt's
    estimate, then the rest of the usage its answer reports)."""
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(Model)}
    fields["backend"] = _LimitedBackend(model, requests, tokens)
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


class Limits:
    """The batch's rate limits, bound to the loop that runs it: each model gets its own request and token buckets
    (providers limit each model on its own), shared by every call to the same model and address."""

    def __init__(self, rpm: float | None, tpm: float | None, clock: Clock) -> None:
        self._rpm = rpm
        self._tpm = tpm
        self._clock = clock
        self._models: dict[str, Model] = {}

    @property
    def active(self) -> bool:
        return self._rpm is not None or self._tpm is not None

    def __call__(self, model: Model) -> Model:
        """The model behind this batch's buckets (the model itself when the batch sets no limit)."""
        if model.key not in self._models:
            self._models[model.key] = _limited(model, self._rpm, self._tpm, self._clock)
        return self._models[model.key]

    async def warmed(self) -> None:
        """With `tpm`, every prompt is counted: load each model's tokenizer in a thread before the first call.
        A cold load (a second or two) on the event loop would hold up every call in flight, deadlines included."""
        if self._tpm is not None:
            for model in list(self._models.values()):
                await asyncio.to_thread(model.backend.count_tokens, "")


@dataclasses.dataclass(frozen=True)
class Batch:
    """How a batch runs, whatever it runs (a task or a pipeline) and whatever form it takes (list or stream);
    checked when it is made.

    `concurrency` calls at most run at once. `rpm` / `tpm` cap the requests and tokens per minute sent to each
    model (tokens estimated on each prompt with the model's tokenizer, corrected by the usage each answer
    reports). `progress` draws a bar on stderr (default: when stderr is a terminal). `clock` is time as the rate
    limiter sees it: tests pass one that advances only when slept on.
    """

    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    progress: bool | None = None
    clock: Clock | None = None

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise ConfigError(f"concurrency must be a whole number of calls, got {self.concurrency!r}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        _positive("rpm", self.rpm)
        _positive("tpm", self.tpm)


class Job(Protocol):
    """What a batch does with each input."""

    @property
    def kind(self) -> str:
        """ "task" or "pipeline": what the batch's errors call the object it was asked of."""
        ...

    def start(self, limits: Limits) -> tuple[str, Call]:
        """(the progress bar's label, the call for one input), made under the loop that runs the calls: a
        backend's connection pool belongs to one loop."""
        ...

    def keep(self, outcome: Any) -> Any:
        """What a stream or a list holds of an outcome."""
        ...


@dataclasses.dataclass(frozen=True)
class TaskJob:
    """A task called on each input with one model, policy and cache. With `runs=False` a stream or list holds each
    validated output itself, or the error: a large batch then holds no answer texts or attempt records (an error
    still carries its Run)."""

    task: TaskDeclaration[Any, Any]
    model: Model | str | None = None
    policy: Policy | None = None
    cache: Cache | None = None
    runs: bool = True
    ledger: Ledger | None = None  # totals every call the batch ends, by model and task
    kind = "task"

    def start(self, limits: Limits) -> tuple[str, Call]:
        model = limits(resolve(self.model))

        async def call(value: Any) -> Outcome:
            outcome = await self._outcome(value, model)
            if self.ledger is not None:
                self.ledger.add(self.task.name, outcome)
            return outcome

        return model.name, call

    async def _outcome(self, value: Any, model: Model) -> Outcome:
        try:
            return await run_async(self.task, value, model, self.policy, self.cache)
        except RobustPromptError as exc:
            return exc
        except Exception as exc:  # whatever one input raised is that input's outcome, never the batch's end
            if contained(exc):
                return typed(exc, None)
            raise

    def keep(self, outcome: Outcome) -> Any:
        return outcome if self.runs or isinstance(outcome, RobustPromptError) else outcome.output


async def _landed(
    job: Job, inputs: Iterable[Any], batch: Batch, total: int | None, keep: Callable[[Any], Any]
) -> AsyncGenerator[Landed, None]:
    """The pool: (index, what `keep` keeps of its outcome) for each input as its call ends. Inputs are taken only
    when the consumer asks for the next outcome, one per freed slot, so a consumer that pauses holds the batch at
    `concurrency` calls."""
    limits = Limits(batch.rpm, batch.tpm, batch.clock or _SystemClock())
    label, call_one = job.start(limits)
    await limits.warmed()
    bar = _Progress(label, total, _progress_stream(batch.progress))
    todo = enumerate(inputs)
    ended: asyncio.Queue[asyncio.Task[Any]] = asyncio.Queue()  # never more than `concurrency` calls in it
    calls: dict[asyncio.Task[Any], int] = {}

    # The two steps are functions of their own so that no local of the suspended generator keeps an input or an
    # outcome alive while the consumer holds the batch.
    def take_inputs() -> None:
        for index, value in itertools.islice(todo, batch.concurrency - len(calls)):
            call = asyncio.create_task(call_one(value))
            call.add_done_callback(ended.put_nowait)
            calls[call] = index

    def hand_over(call: asyncio.Task[Any]) -> Landed:
        index = calls.pop(call)
        outcome = call.result()  # a bug outside robustprompt's errors escapes here and ends the batch
        bar.update(outcome)
        return index, keep(outcome)

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


def _whole(outcome: Any) -> Any:
    return outcome


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


def astream_job(job: Job, inputs: Iterable[Any], batch: Batch | None = None) -> AsyncGenerator[Landed, None]:
    """Run `job` on every input, yielding `(index, outcome)` as each call ends (completion order).

    Inputs are taken lazily, any iterable: at most `batch.concurrency` calls in flight and as many inputs taken
    ahead, and nothing kept once yielded (the progress bar has a total when `len(inputs)` works). Stopping early
    (`break`, `aclose()`) cancels the calls in flight; `contextlib.aclosing` makes that happen at once rather than
    when the generator is collected.
    """
    return _landed(job, inputs, batch or Batch(), _total(inputs), job.keep)


def stream_job(job: Job, inputs: Iterable[Any], batch: Batch | None = None) -> Generator[Landed, None, None]:
    """The blocking form of `astream_job`, for code with no event loop running. Calls advance only while the
    consumer waits for the next item; closing the generator (or leaving the loop) cancels those in flight."""
    _require_no_loop(
        f"{job.kind}.stream() was called inside a running event loop: use `async for ... in {job.kind}.astream(...)`"
    )
    return _blocking(astream_job(job, inputs, batch))


async def amap_job(
    job: Job, inputs: Iterable[Any], batch: Batch | None = None, *, on_result: OnResult | None = None
) -> list[Any]:
    """Run `job` on every input; item i of the result is what the job keeps of input i's outcome.

    `on_result(index, outcome)` sees each whole outcome as it lands, e.g. to store it at once. Only cancellation
    (or an error that ends a whole run, such as a cassette's) escapes; the other calls are then cancelled.
    """
    items = list(inputs)
    results: list[Any] = [None] * len(items)
    async with contextlib.aclosing(_landed(job, items, batch or Batch(), len(items), _whole)) as landed:
        async for index, outcome in landed:
            results[index] = job.keep(outcome)
            if on_result is not None:
                on_result(index, outcome)
    return results  # the stream ran to its end: each slot is filled


def map_job(
    job: Job, inputs: Iterable[Any], batch: Batch | None = None, *, on_result: OnResult | None = None
) -> list[Any]:
    """The blocking form of `amap_job`, for code with no event loop running (a script, a worker thread)."""
    _require_no_loop(f"{job.kind}.map() was called inside a running event loop: use `await {job.kind}.amap(...)`")
    return asyncio.run(amap_job(job, inputs, batch, on_result=on_result))
