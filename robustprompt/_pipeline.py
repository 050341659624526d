"""Pipelines: tasks and plain Python steps in a chain or a small DAG, where every hand-off is a contract.

    pipeline = rp.Pipeline("reviews", [
        rp.Link("extract", extract, model="local:gemma3-270m", fallback="openai:gpt-4.1-mini"),
        rp.Link("classify", classify, after=("input",), default=Sentiment(label="neutral")),
        rp.Step("record", make_record, after=("extract", "classify"), output=Record),
    ], input=Review)
    run = pipeline.run(Review(text="..."))      # or: await pipeline.arun(...), pipeline.map(inputs, batch=...)
    run.output, run.trace["classify"].outcome   # "ok", "fallback", "default", "failed" or "skipped"
    print(run.format_trace())

The next link only ever receives a validated value: a task's validated output, a step's return value (validated
when the step declares `output=`), or a declared default (validated when the link is declared). A task link runs
through `Task.run`, so its retries, re-asks and fallback models (`fallback=` is one more `Policy.fallbacks` entry)
are the engine's. When they are spent, the link hands on its default if it declares one; otherwise the pipeline
stops with a `PipelineError` naming the link, carrying its Run and the input that reached it. A ConfigError (an
upstream value that does not fit the next task's input, an unknown model) is never replaced by a default: it is a
bug in the wiring, and a default would hide it behind plausible values.

Links are declared in an order they can run in: a link runs after the previous one unless `after=` names the
links (or "input", the pipeline's own input) whose values it takes. `arun` runs links whose inputs are ready
concurrently; `run` runs them one at a time in declared order. The pipeline's output is the last link's value.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import enum
import functools
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Generic, Literal, NoReturn, TypeAlias, TypeVar

import pydantic

from robustprompt._batch import Batch, Call, Limits, amap_job, astream_job, map_job, stream_job
from robustprompt._calling import Task
from robustprompt._completion import Usage
from robustprompt._errors import ConfigError, RobustPromptError, run_of
from robustprompt._model import Model
from robustprompt._partial import Partial, Restart
from robustprompt._policy import Policy
from robustprompt._resolve import resolve
from robustprompt._run import Attempt, Run
from robustprompt._streaming import stream_async_run, stream_sync_run
from robustprompt._task import _type_adapter
from robustprompt._text import grid

__all__ = [
    "INPUT",
    "Link",
    "LinkTrace",
    "Outcome",
    "Pipeline",
    "PipelineBatch",
    "PipelineError",
    "PipelineRun",
    "Step",
]

O = TypeVar("O")
T = TypeVar("T")

INPUT = "input"  # the name `after=` gives the pipeline's own input
Outcome = Literal["ok", "fallback", "default", "failed", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "fallback", "default", "failed", "skipped")


class _Unset(enum.Enum):
    """No default declared (None may be a real default)."""

    UNSET = "unset"


_UNSET = _Unset.UNSET


def _check_common(kind: str, name: str, after: Sequence[str] | None) -> tuple[str, ...] | None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a pipeline {kind} needs a name: {kind.capitalize()}('classify', ...)")
    if name == INPUT:
        raise ConfigError(f"{INPUT!r} names the pipeline's input in after=(...): give {kind} {name!r} another name")
    if after is None:
        return None
    if isinstance(after, str):
        raise ConfigError(f"{kind} {name!r}: after= takes a tuple of names: after=({after!r},)")
    if not after:
        raise ConfigError(f"{kind} {name!r}: after=() gives it nothing to run on; after=({INPUT!r},) is the input")
    return tuple(after)


@dataclass(frozen=True, slots=True)
class _Called:
    """What calling a link gave: its value, or the error that ended it, and the Run when a model was called."""

    value: Any = None
    run: Run[Any] | None = None
    error: Exception | None = None
    primary: str | None = None  # the link's own model: an answer from another one came from a fallback


@dataclass(frozen=True)
class Link(Generic[O]):
    """A task in a pipeline, with its model, policy, fallback model and default.

    `input` builds the task's input from the upstream values (one argument per name in `after`); without it the
    one upstream value is the input. `fallback` is appended to the policy's fallbacks. `default`, when declared,
    is validated against the task's output type and checks here, and is handed on when the link fails.
    """

    name: str
    task: Task[Any, O]
    _: KW_ONLY
    model: Model | str | None = None
    policy: Policy | None = None
    fallback: Model | str | None = None
    default: O | _Unset = _UNSET
    after: Sequence[str] | None = None
    input: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "after", _check_common("link", self.name, self.after))
        if not isinstance(self.task, Task):
            raise ConfigError(
                f"link {self.name!r} takes an rp.Task, got {type(self.task).__name__}: wrap Python code in rp.Step"
            )
        if self.default is not _UNSET:
            object.__setattr__(self, "default", _task_default(self.name, self.task, self.default))

    @property
    def has_default(self) -> bool:
        return self.default is not _UNSET

    @property
    def effective_policy(self) -> Policy | None:
        if self.fallback is None:
            return self.policy
        base = self.policy or Policy()
        return dataclasses.replace(base, fallbacks=(*base.fallbacks, self.fallback))

    def prepare(self, values: Sequence[Any]) -> Any:
        return self.input(*values) if self.input is not None else values[0]

    def call(self, value: Any) -> _Called:
        try:
            model = resolve(self.model)
            return _answered(model, self.task.run(value, model=model, policy=self.effective_policy))
        except RobustPromptError as exc:
            return _failed(exc)

    async def acall(self, value: Any) -> _Called:
        try:
            model = resolve(self.model)
            return _answered(model, await self.task.arun(value, model=model, policy=self.effective_policy))
        except RobustPromptError as exc:
            return _failed(exc)

    def stream(self, value: Any) -> Generator[Partial[Any] | Restart, None, _Called]:
        """`call`, streamed: the task's partials and restarts, then (returned) what the call gave."""
        try:
            model = resolve(self.model)
            run = yield from stream_sync_run(self.task, value, model, self.effective_policy, None)
            return _answered(model, run)
        except RobustPromptError as exc:
            return _failed(exc)

    async def astream(self, value: Any) -> AsyncGenerator[Partial[Any] | Restart | _Called, None]:
        """The async twin of `stream`: what the call gave is the last item."""
        try:
            model = resolve(self.model)
            async with contextlib.aclosing(
                stream_async_run(self.task, value, model, self.effective_policy, None)
            ) as items:
                async for item in items:
                    if isinstance(item, Run):
                        yield _answered(model, item)
                    else:
                        yield item
        except RobustPromptError as exc:
            yield _failed(exc)


def _answered(model: Model, run: Run[Any]) -> _Called:
    return _Called(run.output, run, primary=model.name)


def _failed(error: RobustPromptError) -> _Called:
    return _Called(error=error, run=run_of(error))


def _task_default(name: str, task: Task[Any, Any], value: Any) -> Any:
    """The default as the task's typed output, or a ConfigError: an invalid default would pass downstream unchecked."""
    try:
        record = task.output_record(value)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"link {name!r}: the default does not match task {task.name!r}'s output type: {exc}") from exc
    output, errors = task.validator.validate(record)
    if errors:
        raise ConfigError(f"link {name!r}: the default fails task {task.name!r}'s checks: {'; '.join(errors)}")
    return output


@dataclass(frozen=True)
class Step:
    """Plain Python in a pipeline: `fn` takes the upstream values (one argument per name in `after`).

    With `output=` a type, the return value is validated (and coerced) by pydantic like a task's output, and a
    value that does not fit is the step's failure; without it the value is handed on as returned. An exception
    raised by `fn` is the step's failure: the default is handed on when declared, else the pipeline stops.
    """

    name: str
    fn: Callable[..., Any]
    _: KW_ONLY
    output: Any = None  # a type
    default: Any = _UNSET
    after: Sequence[str] | None = None
    _adapter: pydantic.TypeAdapter[Any] | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "after", _check_common("step", self.name, self.after))
        if not callable(self.fn):
            raise ConfigError(f"step {self.name!r} takes a function, got {type(self.fn).__name__}")
        if self.output is not None:
            object.__setattr__(self, "_adapter", _type_adapter(self.output, f"step {self.name!r}: output type"))
        if self.default is not _UNSET and self._adapter is not None:
            try:
                object.__setattr__(self, "default", self._adapter.validate_python(self.default))
            except pydantic.ValidationError as exc:
                raise ConfigError(f"step {self.name!r}: the default does not match its output type: {exc}") from exc

    @property
    def has_default(self) -> bool:
        return self.default is not _UNSET

    @property
    def _arity(self) -> int:
        return 1 if self.after is None else len(self.after)

    def prepare(self, values: Sequence[Any]) -> Any:
        """The one upstream value, or a tuple of them: the step's input as a PipelineError reports it."""
        return values[0] if self._arity == 1 else tuple(values)

    def call(self, value: Any) -> _Called:
        try:
            result = self.fn(value) if self._arity == 1 else self.fn(*value)
            return _Called(self._adapter.validate_python(result) if self._adapter is not None else result)
        except Exception as exc:  # the step's code is the user's: whatever it raises is this step's failure
            return _Called(error=exc)

    async def acall(self, value: Any) -> _Called:
        return self.call(value)


Node: TypeAlias = "Link[Any] | Step"


@dataclass(frozen=True)
class LinkTrace:
    """What one link did in one pipeline run. `run` is its task's Run (None for a step, or when no model was
    called); `exception` the error that ended it, when it failed or handed on its default."""

    name: str
    kind: Literal["task", "step"]
    outcome: Outcome
    model: str | None = None  # the model that answered, or was tried last
    latency: float = 0.0
    run: Run[Any] | None = field(default=None, repr=False, compare=False)
    exception: Exception | None = field(default=None, repr=False, compare=False)

    @property
    def attempts(self) -> int:
        return len(self.run.attempts) if self.run is not None else 0

    @property
    def repairs(self) -> int:
        return sum(len(a.repairs) for a in self.run.attempts) if self.run is not None else 0

    @property
    def usage(self) -> Usage:
        return self.run.usage if self.run is not None else Usage()

    @property
    def mode(self) -> str | None:
        mode = self.run.mode if self.run is not None else None
        return mode.value if mode is not None else None

    @property
    def error(self) -> str | None:
        return None if self.exception is None else f"{type(self.exception).__name__}: {self.exception}"


@dataclass
class PipelineRun:
    """One pipeline run. `output` is the last link's value (None when the run stopped); `values` holds every link's
    validated value (its default where one was taken); `trace` one LinkTrace per link, in declared order."""

    pipeline: str
    input: Any
    output: Any
    values: dict[str, Any]
    trace: dict[str, LinkTrace]
    latency: float

    @property
    def ok(self) -> bool:
        """Every link answered on its own model: no fallback, no default, no stop."""
        return all(t.outcome == "ok" for t in self.trace.values())

    @property
    def stopped_at(self) -> str | None:
        return next((t.name for t in self.trace.values() if t.outcome == "failed"), None)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for trace in self.trace.values():
            total = total + trace.usage
        return total

    def format_trace(self) -> str:
        """The trace as a table, with the error of each link that did not answer."""
        if self.stopped_at is not None:
            status = f"stopped at {self.stopped_at}"
        elif self.ok:
            status = "ok"
        else:
            status = "degraded: " + ", ".join(f"{t.name} {t.outcome}" for t in self.trace.values() if t.outcome != "ok")
        header = ["link", "outcome", "model", "mode", "attempts", "repairs", "tokens", "latency"]
        rows = [_trace_cells(t) for t in self.trace.values()]
        lines = [
            f"pipeline {self.pipeline}: {status} ({self.latency:.2f} s, {self.usage.total_tokens} tokens)",
            grid(header, rows),
        ]
        lines += [f"  {t.name}: {t.error}" for t in self.trace.values() if t.error is not None]
        return "\n".join(lines) + "\n"


def _trace_cells(t: LinkTrace) -> list[str]:
    if t.outcome == "skipped":
        return [t.name, t.outcome, "(step)" if t.kind == "step" else "-", "-", "-", "-", "-", "-"]
    if t.kind == "step":
        return [t.name, t.outcome, "(step)", "-", "-", "-", "-", f"{t.latency:.2f} s"]
    tokens = str(t.usage.total_tokens) if t.run is not None else "-"
    cells = [t.model or "-", t.mode or "-", str(t.attempts), str(t.repairs), tokens]
    return [t.name, t.outcome, *cells, f"{t.latency:.2f} s"]


class PipelineError(RobustPromptError):
    """A link failed with no default to hand on, so the pipeline stopped there.

    `link` names it; `input` is the value that reached it (a task's input after `input=`, a step's argument or a
    tuple of them); `run` the link's Run, every attempt on every model tried (None for a step, or when no model
    was called); `pipeline_run` the trace so far (the links after it "skipped"). The link's error is `__cause__`.
    """

    def __init__(self, message: str, *, link: str, input: Any, run: Run[Any] | None, pipeline_run: PipelineRun):
        super().__init__(message)
        self.link = link
        self.input = input
        self.run = run
        self.pipeline_run = pipeline_run

    @property
    def attempts(self) -> list[Attempt]:
        return self.run.attempts if self.run is not None else []


@dataclass(frozen=True, slots=True)
class _Settled:
    """A link's trace entry and what it hands on: its value, or (`error` set) the failure that stops the run."""

    trace: LinkTrace
    value: Any
    given: Any = None
    error: Exception | None = None


def _prepared(node: Node, values: Sequence[Any]) -> tuple[Any, _Called | None]:
    """(the link's input, None), or (the upstream values, the failure) when `input=` raised on them."""
    try:
        return node.prepare(values), None
    except Exception as exc:  # the user's mapping: a failure of this link
        return (values[0] if len(values) == 1 else tuple(values)), _Called(error=exc)


def _settle(node: Node, given: Any, called: _Called, started: float) -> _Settled:
    kind: Literal["task", "step"] = "task" if isinstance(node, Link) else "step"
    model = called.run.model if called.run is not None else called.primary
    latency = time.monotonic() - started

    def trace(outcome: Outcome) -> LinkTrace:
        return LinkTrace(node.name, kind, outcome, model, latency, called.run, called.error)

    if called.error is None:
        fell_back = called.run is not None and called.run.model != called.primary
        return _Settled(trace("fallback" if fell_back else "ok"), called.value)
    if node.has_default and not isinstance(called.error, ConfigError):
        return _Settled(trace("default"), node.default)
    return _Settled(trace("failed"), None, given, called.error)


def _run_node(node: Node, values: Sequence[Any]) -> _Settled:
    started = time.monotonic()
    given, failed = _prepared(node, values)
    return _settle(node, given, failed or node.call(given), started)


async def _arun_node(node: Node, values: Sequence[Any]) -> _Settled:
    started = time.monotonic()
    given, failed = _prepared(node, values)
    return _settle(node, given, failed or await node.acall(given), started)


def _voided(settled: _Settled, shown: bool) -> Restart | None:
    """The Restart that voids a streamed link's partials when what it hands on is not the answer they showed."""
    trace = settled.trace
    if not shown or trace.outcome not in ("default", "failed"):
        return None
    after = len(trace.run.attempts) + 1 if trace.run is not None else 1  # what follows is no attempt's
    return Restart(after, f"link {trace.name!r} {trace.outcome}: {trace.error}")


def _stream_node(node: Node, values: Sequence[Any]) -> Generator[Partial[Any] | Restart, None, _Settled]:
    started = time.monotonic()
    given, failed = _prepared(node, values)
    if failed is not None or not isinstance(node, Link):
        return _settle(node, given, failed or node.call(given), started)
    shown = False
    with contextlib.closing(node.stream(given)) as items:  # leaving the loop closes the connection now
        while True:
            try:
                item = next(items)
            except StopIteration as done:
                settled = _settle(node, given, done.value, started)
                break
            shown = isinstance(item, Partial) or (shown and not isinstance(item, Restart))
            yield item
    if (restart := _voided(settled, shown)) is not None:
        yield restart
    return settled


async def _astream_node(node: Node, values: Sequence[Any]) -> AsyncGenerator[Partial[Any] | Restart | _Settled, None]:
    started = time.monotonic()
    given, failed = _prepared(node, values)
    if failed is not None or not isinstance(node, Link):
        yield _settle(node, given, failed or await node.acall(given), started)
        return
    shown, called = False, None
    async with contextlib.aclosing(node.astream(given)) as items:
        async for item in items:
            if isinstance(item, _Called):
                called = item
                continue
            shown = isinstance(item, Partial) or (shown and not isinstance(item, Restart))
            yield item
    assert called is not None  # a link's stream ends with what the call gave
    settled = _settle(node, given, called, started)
    if (restart := _voided(settled, shown)) is not None:
        yield restart
    yield settled


class _Stopped(Exception):
    """Raised inside `arun` to cancel the links still running once one has stopped the pipeline."""


class _State:
    """One run in progress: the values handed on so far, the trace, and the link that stopped it, if one did."""

    def __init__(self, pipeline: Pipeline, value: Any) -> None:
        self.pipeline = pipeline
        self.input = value
        self.values: dict[str, Any] = {INPUT: value}
        self.traces: dict[str, LinkTrace] = {}
        self.stop: tuple[Node, _Settled] | None = None
        self.started = time.monotonic()

    def upstream(self, node: Node) -> list[Any]:
        return [self.values[name] for name in self.pipeline.wiring[node.name]]

    def record(self, node: Node, settled: _Settled) -> bool:
        """Keep the link's outcome; True when it stops the pipeline."""
        self.traces[node.name] = settled.trace
        if settled.error is not None:
            self.stop = self.stop or (node, settled)
            return True
        self.values[node.name] = settled.value
        return False

    def result(self) -> PipelineRun:
        last = self.pipeline.links[-1].name
        # In declared order: the async form finishes links in any order.
        values = {node.name: self.values[node.name] for node in self.pipeline.links if node.name in self.values}
        traces = {
            node.name: self.traces.get(node.name) or LinkTrace(node.name, _kind(node), "skipped")
            for node in self.pipeline.links
        }
        output = None if self.stop is not None else values[last]
        return PipelineRun(self.pipeline.name, self.input, output, values, traces, time.monotonic() - self.started)

    def raise_stop(self) -> NoReturn:
        assert self.stop is not None  # only called once a link has stopped the run
        node, settled = self.stop
        cause = settled.error
        message = f"pipeline {self.pipeline.name!r} stopped at link {node.name!r}: {type(cause).__name__}: {cause}"
        run = settled.trace.run
        raise PipelineError(
            message, link=node.name, input=settled.given, run=run, pipeline_run=self.result()
        ) from cause


def _kind(node: Node) -> Literal["task", "step"]:
    return "task" if isinstance(node, Link) else "step"


async def _all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently, results in order; when one raises, the others are cancelled (none is left running)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for running in tasks:
            running.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Pipeline:
    """Links (tasks and steps) wired into a chain or a small DAG. `input`, when given a type, validates (and
    coerces) the pipeline's input before the first link sees it, e.g. a case file's JSON into a pydantic model.

    >>> pipeline = Pipeline("support", [Link("extract", extract), Link("classify", classify, input=to_review)])
    >>> run = pipeline.run(Review(text="The zipper broke."))
    >>> run.output, run.trace["extract"].outcome
    """

    def __init__(self, name: str, links: Sequence[Node], *, input: Any = None) -> None:
        if not name.strip():
            raise ConfigError("a pipeline needs a name: Pipeline('support', [...])")
        self.name = name
        self.links: tuple[Node, ...] = tuple(links)
        self.input_type = input
        self.wiring = _wire(name, self.links)
        self._input = _type_adapter(input, f"pipeline {name!r}: input type") if input is not None else None

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, links={[node.name for node in self.links]!r})"

    @functools.cached_property
    def end_task(self) -> Task[Any, Any]:
        """The contract of the pipeline's output as a Task, through which case files' expected outputs are read
        and outputs recorded: the last link's task; for a step, a stand-in for its output type (any JSON value
        when it declares none)."""
        last = self.links[-1]
        if isinstance(last, Link):
            return last.task
        return Task(
            f"{self.name}.{last.name}",
            input=Any,
            output=last.output if last.output is not None else Any,
            instructions=f"The output of step {last.name!r}, the end of pipeline {self.name!r}.",
        )

    def link(self, name: str) -> Node:
        """The link called `name`; a ConfigError naming the links (and the closest one) when there is none."""
        for node in self.links:
            if node.name == name:
                return node
        names = [node.name for node in self.links]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"pipeline {self.name!r} has no link {name!r}{hint} (its links: {', '.join(names)})")

    def with_model(self, name: str, model: Model | str) -> Pipeline:
        """The same pipeline with task link `name` on `model`; the other links, and this link's policy, fallback
        and default, unchanged."""
        node = self.link(name)
        if not isinstance(node, Link):
            raise ConfigError(f"link {name!r} of pipeline {self.name!r} is a Python step: it has no model to change")
        links = [dataclasses.replace(node, model=model) if n is node else n for n in self.links]
        return Pipeline(self.name, links, input=self.input_type)

    def _start(self, value: Any) -> _State:
        if self._input is not None:
            try:
                value = self._input.validate_python(value)
            except pydantic.ValidationError as exc:
                raise ConfigError(f"pipeline {self.name!r}: the input does not match its input type: {exc}") from exc
        return _State(self, value)

    def run(self, value: Any) -> PipelineRun:
        """Run the links one at a time in declared order. Raises PipelineError when a link stops the run."""
        state = self._start(value)
        for node in self.links:
            if state.record(node, _run_node(node, state.upstream(node))):
                state.raise_stop()
        return state.result()

    async def arun(self, value: Any) -> PipelineRun:
        """Run each link as soon as the links it takes values from are done: independent links run concurrently.
        When one stops the run, links still running are cancelled (and traced as skipped)."""
        state = self._start(value)
        await self._arun_links(state, self.links)
        return state.result()

    async def _arun_links(self, state: _State, links: Sequence[Node]) -> None:
        finished = {node.name: asyncio.Event() for node in links}

        async def one(node: Node) -> None:
            for name in self.wiring[node.name]:
                if name != INPUT:
                    await finished[name].wait()
            if state.record(node, await _arun_node(node, state.upstream(node))):
                raise _Stopped
            finished[node.name].set()

        try:
            await _all(one(node) for node in links)
        except _Stopped:
            state.raise_stop()

    def stream_output(self, value: Any) -> Generator[Partial[Any] | Restart | PipelineRun, None, None]:
        """`run`, with the last link's answer streamed: yields its `Partial`s (and a `Restart` when they are void:
        a new attempt, or a default handed on instead), then the PipelineRun. The links before it run as in
        `run`; a last link that is a Python step yields the PipelineRun alone. Raises what `run` raises."""
        state = self._start(value)
        *head, last = self.links
        for node in head:
            if state.record(node, _run_node(node, state.upstream(node))):
                state.raise_stop()
        if state.record(last, (yield from _stream_node(last, state.upstream(last)))):
            state.raise_stop()
        yield state.result()

    async def astream_output(self, value: Any) -> AsyncGenerator[Partial[Any] | Restart | PipelineRun, None]:
        """The async twin of `stream_output`; the links before the last run as in `arun`."""
        state = self._start(value)
        *head, last = self.links
        await self._arun_links(state, head)
        async with contextlib.aclosing(_astream_node(last, state.upstream(last))) as items:
            async for item in items:
                if not isinstance(item, _Settled):
                    yield item
                elif state.record(last, item):
                    state.raise_stop()
        yield state.result()

    def _paced(self, limits: Limits) -> Pipeline:
        """This pipeline with each task link's model behind the batch's rate limits; itself when there are none."""
        if not limits.active:
            return self
        links = [
            dataclasses.replace(n, model=limits(resolve(n.model))) if isinstance(n, Link) else n for n in self.links
        ]
        return Pipeline(self.name, links, input=self.input_type)

    async def amap(self, inputs: Iterable[Any], *, batch: Batch | None = None) -> PipelineBatch:
        """Run the pipeline on every input, as `batch` says (default `rp.Batch()`: 8 runs at a time, no rate
        limit; `rpm` / `tpm` pace each link's model). Item i of the result is input i's PipelineRun, or the error
        that stopped it: nothing is raised for one input's failure. A progress bar shows on a terminal."""
        return self._batch(await amap_job(_PipelineJob(self), inputs, batch))

    def map(self, inputs: Iterable[Any], *, batch: Batch | None = None) -> PipelineBatch:
        """The blocking form of `amap`, for code with no event loop running."""
        return self._batch(map_job(_PipelineJob(self), inputs, batch))

    def stream(
        self, inputs: Iterable[Any], *, batch: Batch | None = None
    ) -> Generator[tuple[int, PipelineRun | RobustPromptError], None, None]:
        """`map` for batches too large to hold: yields `(index, item)` as each run ends, keeping none of them.

        The item is what `map(...).items[index]` would be. Inputs are read lazily from any iterable: at most
        `batch.concurrency` runs at once, as many inputs taken ahead, and runs wait while the loop body runs.
        Leaving the loop early cancels the runs in flight. For code with no event loop running; inside one, use
        `astream`.
        """
        return stream_job(_PipelineJob(self), inputs, batch)

    def astream(
        self, inputs: Iterable[Any], *, batch: Batch | None = None
    ) -> AsyncGenerator[tuple[int, PipelineRun | RobustPromptError], None]:
        """The async twin of `stream`; `contextlib.aclosing(pipeline.astream(...))` cancels the runs in flight as
        its block exits."""
        return astream_job(_PipelineJob(self), inputs, batch)

    def _batch(self, items: list[PipelineRun | RobustPromptError]) -> PipelineBatch:
        return PipelineBatch(self.name, tuple(node.name for node in self.links), items)


@dataclass(frozen=True)
class _PipelineJob:
    """The pipeline run on each input of a batch."""

    pipeline: Pipeline
    kind = "pipeline"

    def start(self, limits: Limits) -> tuple[str, Call]:
        pipeline = self.pipeline._paced(limits)

        async def call(value: Any) -> PipelineRun | RobustPromptError:
            try:
                return await pipeline.arun(value)
            except RobustPromptError as exc:
                return exc

        return f"pipeline {pipeline.name}", call

    def keep(self, outcome: PipelineRun | RobustPromptError) -> PipelineRun | RobustPromptError:
        return outcome


def _wire(pipeline: str, links: Sequence[Node]) -> dict[str, tuple[str, ...]]:
    """Each link's upstream names; a ConfigError for a link that names a later or unknown link, or a duplicate."""
    if not links:
        raise ConfigError(f"pipeline {pipeline!r} has no links")
    wiring: dict[str, tuple[str, ...]] = {}
    previous = INPUT
    for node in links:
        if not isinstance(node, (Link, Step)):
            raise ConfigError(f"pipeline {pipeline!r}: {node!r} is not an rp.Link or an rp.Step")
        if node.name in wiring:
            raise ConfigError(f"pipeline {pipeline!r} has two links named {node.name!r}")
        names = (previous,) if node.after is None else tuple(node.after)
        unknown = [n for n in names if n != INPUT and n not in wiring]
        if unknown:
            earlier = ", ".join([INPUT, *wiring])
            raise ConfigError(
                f"link {node.name!r} runs after {', '.join(map(repr, unknown))}, which is no earlier link: declare "
                f"links in an order they can run in (before it: {earlier})"
            )
        if len(names) > 1 and isinstance(node, Link) and node.input is None:
            raise ConfigError(
                f"link {node.name!r} takes {len(names)} values ({', '.join(names)}): give input=lambda "
                f"{', '.join(f'v{i}' for i in range(len(names)))}: ... to build its task's input"
            )
        wiring[node.name] = names
        previous = node.name
    return wiring


@dataclass(frozen=True)
class PipelineBatch:
    """A pipeline run over many inputs. `items[i]` is input i's PipelineRun, or the error that stopped it (a
    PipelineError naming the link, or a ConfigError for an input that does not match the pipeline's input type)."""

    pipeline: str
    links: tuple[str, ...]
    items: list[PipelineRun | RobustPromptError]

    @property
    def runs(self) -> list[PipelineRun | None]:
        """Each item's trace: the run, a stopped run's partial trace, or None when no link ran."""
        return [pipeline_run_of(item) for item in self.items]

    @property
    def failed(self) -> int:
        return sum(isinstance(item, RobustPromptError) for item in self.items)

    def outcomes(self) -> dict[str, Counter[str]]:
        """Per link, how many runs ended in each outcome: the link that drifts shows up here."""
        counts: dict[str, Counter[str]] = {name: Counter() for name in self.links}
        for run in self.runs:
            for name, trace in (run.trace if run is not None else {}).items():
                counts[name][trace.outcome] += 1
        return counts

    def format_outcomes(self) -> str:
        rows = [[name, *(str(c[o]) for o in OUTCOMES)] for name, c in self.outcomes().items()]
        stopped = f"{self.failed} of {len(self.items)} run(s) stopped"
        return f"pipeline {self.pipeline}: {stopped}\n{grid(['link', *OUTCOMES], rows)}\n"


def pipeline_run_of(item: PipelineRun | RobustPromptError) -> PipelineRun | None:
    if isinstance(item, PipelineRun):
        return item
    return item.pipeline_run if isinstance(item, PipelineError) else None
