"""`Task`: a task's declaration (`_task`) and the doors into the engine: one call (`run`, `__call__` and their
async twins) or a batch (`map`, `stream` and their async twins, on `_batch`'s pool).

The doors import the engine and the batch runner when first used, not with `import robustprompt`: the call path
(the parser, tenacity, the retry and batch machinery) is most of the package's import time, and a program that
only declares tasks, or runs the command line's `models`, never needs it. No cycle hides behind these imports:
neither module imports this one (tests/test_architecture.py counts function-level imports).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from robustprompt._errors import RobustPromptError
from robustprompt._model import Model
from robustprompt._partial import Partial, Restart
from robustprompt._policy import Policy
from robustprompt._run import Run
from robustprompt._task import Example, TaskDeclaration, function_task
from robustprompt._validate import Check

if TYPE_CHECKING:
    from robustprompt._adapt import AdaptOptions
    from robustprompt._adaptation import Adaptation
    from robustprompt._batch import Batch
    from robustprompt._batch_api import BatchJob
    from robustprompt._cache import Cache
    from robustprompt._ledger import Ledger

__all__ = ["Task", "task"]

I = TypeVar("I")
O = TypeVar("O")


class Task(TaskDeclaration[I, O]):
    """A typed LLM task.

    >>> classify = Task("classify", input=Review, output=Sentiment, instructions="Classify the review.",
    ...                 examples=[Example(Review(text="Loved it"), Sentiment(label="positive"))])
    >>> classify(Review(text="Meh"), model="local:smollm2")   # -> Sentiment
    """

    # Adapting: measure how this task is best shown to a model, and record it for every later call.

    def adapt(
        self,
        model: Model | str,
        cases: Any = None,
        *,
        pool: Sequence[Example[Any, Any]] | None = None,
        budget: int | None = None,
        seed: int = 0,
        record: str | Path | bool | None = None,
        progress: bool | None = None,
        cache: Cache | None = None,
        embedders: Sequence[Model | str] = (),
    ) -> Adaptation:
        """Score the rendering configurations on `model` and write the best to the task's adaptation record.

        Scored on the task's own examples, each left out in turn, or on `cases` (a case file, a CaseSet or
        Examples) when given: never pass the cases a report is computed on. With `pool` (labelled Examples, apart
        from `cases`), example sets selected from it are candidates too. At most `budget` scored calls (the plan is
        printed first; default `DEFAULT_BUDGET`), seeded by `seed`. The record goes to `self.adaptations` (or
        `record`; `record=False` writes none) and every later call on `model` uses its configuration.
        `embedders` are models (handles or names) whose embeddings may choose the examples nearest each input, beside
        the model's own where it has some: a model that embeds well can pick examples for one that does not.
        """
        from robustprompt._adapt import adapt as run_adapt

        options = _adapt_options(pool, budget, seed, record, progress, cache, embedders=embedders)
        return run_adapt(self, model, cases, options)

    async def aadapt(
        self,
        model: Model | str,
        cases: Any = None,
        *,
        pool: Sequence[Example[Any, Any]] | None = None,
        budget: int | None = None,
        seed: int = 0,
        record: str | Path | bool | None = None,
        progress: bool | None = None,
        cache: Cache | None = None,
        concurrency: int = 4,
        embedders: Sequence[Model | str] = (),
    ) -> Adaptation:
        """The async twin of `adapt`, `concurrency` scored calls at a time."""
        from robustprompt._adapt import aadapt

        options = _adapt_options(pool, budget, seed, record, progress, cache, concurrency, embedders)
        return await aadapt(self, model, cases, options)

    # Calling. The engine does the work; these are the doors into it.

    def run(
        self, value: I, *, model: Model | str | None = None, policy: Policy | None = None, cache: Cache | None = None
    ) -> Run[O]:
        """Call the model and return the whole Run (output, attempts, usage). Raises on failure.

        With a `cache`, an answer stored for the same task, model, settings and input is served without a call
        (its Run says "served from cache"), and a new valid output is stored.
        """
        from robustprompt._engine import run_sync

        return run_sync(self, value, model, policy, cache)

    async def arun(
        self, value: I, *, model: Model | str | None = None, policy: Policy | None = None, cache: Cache | None = None
    ) -> Run[O]:
        from robustprompt._engine import run_async

        return await run_async(self, value, model, policy, cache)

    def __call__(
        self, value: I, *, model: Model | str | None = None, policy: Policy | None = None, cache: Cache | None = None
    ) -> O:
        """Call the model and return the validated output."""
        return cast("O", self.run(value, model=model, policy=policy, cache=cache).output)

    async def acall(
        self, value: I, *, model: Model | str | None = None, policy: Policy | None = None, cache: Cache | None = None
    ) -> O:
        return cast("O", (await self.arun(value, model=model, policy=policy, cache=cache)).output)

    def stream_output(
        self, value: I, *, model: Model | str | None = None, policy: Policy | None = None, cache: Cache | None = None
    ) -> Generator[Partial[O] | Restart | O, None, None]:
        """One call, streamed: yields a `Partial` each time the answer shows more, a `Restart` when a new attempt
        voids the partials before it, and last the validated output (or raises what `__call__` raises).

        Partials are never validated outputs: strings and lists grow, numbers and enum values appear once
        complete. Leaving the loop closes the connection. A cached answer, or a backend that does not stream,
        yields only the output.
        """
        from robustprompt._streaming import stream_sync

        return stream_sync(self, value, model, policy, cache)

    def astream_output(
        self, value: I, *, model: Model | str | None = None, policy: Policy | None = None, cache: Cache | None = None
    ) -> AsyncGenerator[Partial[O] | Restart | O, None]:
        """The async twin of `stream_output`: `async for item in task.astream_output(...)`."""
        from robustprompt._streaming import stream_async

        return stream_async(self, value, model, policy, cache)

    def map(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        cache: Cache | None = None,
        batch: Batch | None = None,
        runs: bool = False,
        ledger: Ledger | None = None,
    ) -> list[O | RobustPromptError]:
        """Run the task on every input, as `batch` says (default `rp.Batch()`: 8 calls at a time, no rate limit).

        Item i of the result belongs to input i: its validated output, or the typed error that ended its call (the
        error's `.run` has the attempts). Nothing is raised for one input's failure. With `runs=True` the items are
        whole Runs (answer texts and attempts included) instead of outputs. A progress bar shows on a terminal.
        `ledger` (an `rp.Ledger`) totals every call's requests, tokens and cost, by model and task.
        """
        from robustprompt._batch import TaskJob, map_job

        return map_job(TaskJob(self, model, policy, cache, runs, ledger), inputs, batch)

    async def amap(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        cache: Cache | None = None,
        batch: Batch | None = None,
        runs: bool = False,
        ledger: Ledger | None = None,
    ) -> list[O | RobustPromptError]:
        """The async twin of `map`."""
        from robustprompt._batch import TaskJob, amap_job

        return await amap_job(TaskJob(self, model, policy, cache, runs, ledger), inputs, batch)

    def submit(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        max_items: int | None = None,
    ) -> BatchJob[O]:
        """Send every input as one item of the model's provider batch API (OpenAI Batch, Anthropic Message Batches),
        at about half the list price, and return the `BatchJob` handle: `job.collect()` waits and gives what `map`
        gives; `job.to_json()` keeps it for another process (`rp.BatchJob.from_json(text, task)`).

        Each item is the live call's request (the same output mode and schema); an answer that fails validation is
        re-asked live within `policy`. Inputs over the provider's count or size limit are split into several
        batches (at most `max_items` items each, if given).
        """
        from robustprompt._batch_api import submit

        return submit(self, inputs, model, policy, max_items=max_items)

    async def asubmit(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        max_items: int | None = None,
    ) -> BatchJob[O]:
        """The async twin of `submit`; collect with `await job.acollect()`."""
        from robustprompt._batch_api import asubmit

        return await asubmit(self, inputs, model, policy, max_items=max_items)

    def stream(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        cache: Cache | None = None,
        batch: Batch | None = None,
        runs: bool = False,
        ledger: Ledger | None = None,
    ) -> Generator[tuple[int, O | RobustPromptError], None, None]:
        """`map` for batches too large to hold: yields `(index, outcome)` as each call ends, keeping none of them.

        The outcome is what item `index` of `map` would be. Inputs are read lazily from any iterable (a generator
        of a million lines is fine): at most `batch.concurrency` calls run, as many inputs are taken ahead, and
        calls wait while the loop body runs. Leaving the loop early cancels the calls in flight. For code with no
        event loop running; inside one, use `astream`.
        """
        from robustprompt._batch import TaskJob, stream_job

        return stream_job(TaskJob(self, model, policy, cache, runs, ledger), inputs, batch)

    def astream(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        cache: Cache | None = None,
        batch: Batch | None = None,
        runs: bool = False,
        ledger: Ledger | None = None,
    ) -> AsyncGenerator[tuple[int, O | RobustPromptError], None]:
        """The async twin of `stream`: `async for index, outcome in task.astream(...)`.

        `break` cancels the calls in flight once the generator is collected; `async with
        contextlib.aclosing(task.astream(...)) as outcomes` cancels them as the block exits.
        """
        from robustprompt._batch import TaskJob, astream_job

        return astream_job(TaskJob(self, model, policy, cache, runs, ledger), inputs, batch)


def _adapt_options(
    pool: Sequence[Example[Any, Any]] | None,
    budget: int | None,
    seed: int,
    record: str | Path | bool | None,
    progress: bool | None,
    cache: Cache | None,
    concurrency: int = 4,
    embedders: Sequence[Model | str] = (),
) -> AdaptOptions:
    from robustprompt._adapt import DEFAULT_BUDGET, AdaptOptions

    budget = DEFAULT_BUDGET if budget is None else budget
    return AdaptOptions(
        pool,
        budget=budget,
        seed=seed,
        record=record,
        progress=progress,
        cache=cache,
        concurrency=concurrency,
        embedders=embedders,
    )


@overload
def task(fn: Callable[..., Any], /) -> Task[Any, Any]: ...
@overload
def task(
    *,
    examples: Sequence[Example[Any, Any]] = (),
    checks: Sequence[Check] = (),
    name: str | None = None,
    version: str = "1",
) -> Callable[[Callable[..., Any]], Task[Any, Any]]: ...
def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    examples: Sequence[Example[Any, Any]] = (),
    checks: Sequence[Check] = (),
    name: str | None = None,
    version: str = "1",
) -> Task[Any, Any] | Callable[[Callable[..., Any]], Task[Any, Any]]:
    """Declare a task from a typed function: parameters are the input, the return type the output, the docstring
    the instructions. The body is never run.

    >>> @task(examples=[Example(Review(text="Loved it"), Sentiment(label="positive"))])
    ... def classify(review: Review) -> Sentiment:
    ...     '''Classify the sentiment of the review.'''
    """
    if fn is not None:
        return function_task(Task, fn, examples, checks, name, version)
    return lambda f: function_task(Task, f, examples, checks, name, version)
