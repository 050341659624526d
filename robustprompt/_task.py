"""A typed task: input type, output type, instructions, examples and checks, declared once."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import typing
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import pydantic

from robustprompt._errors import ConfigError, RobustPromptError
from robustprompt._prompt import RENDER_VERSION, OutputSpec
from robustprompt._validate import Check, Validator

if TYPE_CHECKING:
    from robustprompt._cache import Cache
    from robustprompt._model import Model
    from robustprompt._profile import Policy
    from robustprompt._run import Run

__all__ = ["Example", "Task", "task"]

I = TypeVar("I")
O = TypeVar("O")

ANSWER_FIELD = "answer"  # the one field wrapping a plain output type (str, Literal, list...) in an object
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Example(Generic[I, O]):
    """One few-shot example: an input and the output the model should give for it."""

    input: I
    output: O


def _is_model(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _output_model(output: Any) -> type[pydantic.BaseModel]:
    if _is_model(output):
        return cast("type[pydantic.BaseModel]", output)
    try:
        wrapper: type[pydantic.BaseModel] = pydantic.create_model("Output", **{ANSWER_FIELD: (output, ...)})  # type: ignore[call-overload]
        return wrapper
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise ConfigError(f"output type {output!r} cannot be described as JSON: {exc}") from exc


def _spec_name(name: str) -> str:
    return (_NAME_OK.sub("_", name).strip("_") or "output")[:64]


class Task(Generic[I, O]):
    """A typed LLM task.

    >>> classify = Task("classify", input=Review, output=Sentiment, instructions="Classify the review.",
    ...                 examples=[Example(Review(text="Loved it"), Sentiment(label="positive"))])
    >>> classify(Review(text="Meh"), model="local:smollm2")   # -> Sentiment
    """

    def __init__(
        self,
        name: str,
        *,
        input: type[I] | Any,
        output: type[O] | Any,
        instructions: str,
        examples: Sequence[Example[Any, Any]] = (),
        checks: Sequence[Check] = (),
        version: str = "1",
    ) -> None:
        if not name.strip():
            raise ConfigError("a task needs a name: Task('classify', ...)")
        if not instructions.strip():
            raise ConfigError(f"task {name!r} has empty instructions: say what the model must do")
        self.name = name
        self.instructions = instructions
        self.version = version
        self.input_type = input
        self.output_type = output
        self._input = _type_adapter(input, f"task {name!r}: input type")
        wrapped = not _is_model(output)
        model = _output_model(output)
        unwrap: Callable[[Any], Any] = (lambda m: getattr(m, ANSWER_FIELD)) if wrapped else (lambda m: m)
        self._wrapped = wrapped
        self.validator = Validator(model, checks, unwrap)
        self.checks = tuple(checks)
        self.spec = OutputSpec(_spec_name(name), self.validator.schema, description=instructions.strip()[:300])
        self.examples: tuple[tuple[str, str], ...] = tuple(self._example_json(i, ex) for i, ex in enumerate(examples))
        self.fingerprint = self._fingerprint()

    def __repr__(self) -> str:
        return f"Task({self.name!r}, fingerprint={self.fingerprint[:12]!r})"

    def input_json(self, value: Any) -> str:
        """The input as the JSON data block the model sees; ConfigError when it does not match the input type."""
        try:
            return self._input.dump_json(self._input.validate_python(value)).decode()
        except pydantic.ValidationError as exc:
            raise ConfigError(f"task {self.name!r}: input does not match {_type_name(self.input_type)}: {exc}") from exc

    def output_record(self, value: Any) -> dict[str, Any]:
        """A validated output as a JSON object in the task's output shape (plain types under "answer")."""
        payload = {ANSWER_FIELD: value} if self._wrapped else value
        record: dict[str, Any] = self.validator.model.model_validate(payload).model_dump(mode="json")
        return record

    def output_json(self, value: Any) -> str:
        payload = {ANSWER_FIELD: value} if self._wrapped else value
        obj = self.validator.model.model_validate(payload)
        return obj.model_dump_json()

    def _example_json(self, index: int, example: Example[Any, Any]) -> tuple[str, str]:
        where = f"task {self.name!r}, example {index}"
        if not isinstance(example, Example):
            raise ConfigError(f"{where}: expected rp.Example(input, output), got {type(example).__name__}")
        try:
            input_json = self._input.dump_json(self._input.validate_python(example.input)).decode()
        except pydantic.ValidationError as exc:
            raise ConfigError(f"{where}: input does not match {_type_name(self.input_type)}: {exc}") from exc
        try:
            output_json = self.output_json(example.output)
        except pydantic.ValidationError as exc:
            raise ConfigError(f"{where}: output does not match {_type_name(self.output_type)}: {exc}") from exc
        _, errors = self.validator.validate(json.loads(output_json))
        if errors:
            raise ConfigError(f"{where}: output fails the task's checks: {'; '.join(errors)}")
        return input_json, output_json

    def _fingerprint(self) -> str:
        shape = {
            "name": self.name,
            "version": self.version,
            "render": RENDER_VERSION,
            "instructions": self.instructions,
            "input": self._input.json_schema(),
            "output": self.spec.schema,
            "examples": self.examples,
            # Checks decide what is accepted: results under other checks must not be reused. Their names stand in
            # for their code (a changed body keeps its name: bump `version` then).
            "checks": [f"{getattr(c, '__module__', '')}.{getattr(c, '__qualname__', repr(c))}" for c in self.checks],
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()

    # Calling. The engine does the work; these are the four doors into it.

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

    def map(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        concurrency: int = 8,
        rpm: float | None = None,
        tpm: float | None = None,
        progress: bool | None = None,
        runs: bool = False,
        cache: Cache | None = None,
    ) -> list[O | RobustPromptError]:
        """Run the task on every input, `concurrency` at a time, within `rpm` requests and `tpm` tokens a minute.

        Item i of the result belongs to input i: its validated output, or the typed error that ended its call (the
        error's `.run` has the attempts). Nothing is raised for one input's failure. With `runs=True` the items are
        whole Runs (answer texts and attempts included) instead of outputs. A progress bar shows on a terminal.
        """
        from robustprompt._batch import Batch, map_task

        batch = Batch(model, policy, concurrency, rpm, tpm, progress, cache=cache)
        return map_task(self, inputs, batch, keep_runs=runs)

    async def amap(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        concurrency: int = 8,
        rpm: float | None = None,
        tpm: float | None = None,
        progress: bool | None = None,
        runs: bool = False,
        cache: Cache | None = None,
    ) -> list[O | RobustPromptError]:
        """The async twin of `map`."""
        from robustprompt._batch import Batch, amap_task

        batch = Batch(model, policy, concurrency, rpm, tpm, progress, cache=cache)
        return await amap_task(self, inputs, batch, keep_runs=runs)

    def stream(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        concurrency: int = 8,
        rpm: float | None = None,
        tpm: float | None = None,
        progress: bool | None = None,
        runs: bool = False,
        cache: Cache | None = None,
    ) -> Generator[tuple[int, O | RobustPromptError], None, None]:
        """`map` for batches too large to hold: yields `(index, outcome)` as each call ends, keeping none of them.

        The outcome is what item `index` of `map` would be. Inputs are read lazily from any iterable (a generator
        of a million lines is fine): at most `concurrency` calls run, as many inputs are taken ahead, and calls
        wait while the loop body runs. Leaving the loop early cancels the calls in flight. For code with no event
        loop running; inside one, use `astream`.
        """
        from robustprompt._batch import Batch, stream_task

        batch = Batch(model, policy, concurrency, rpm, tpm, progress, cache=cache)
        return stream_task(self, inputs, batch, keep_runs=runs)

    def astream(
        self,
        inputs: Iterable[I],
        *,
        model: Model | str | None = None,
        policy: Policy | None = None,
        concurrency: int = 8,
        rpm: float | None = None,
        tpm: float | None = None,
        progress: bool | None = None,
        runs: bool = False,
        cache: Cache | None = None,
    ) -> AsyncGenerator[tuple[int, O | RobustPromptError], None]:
        """The async twin of `stream`: `async for index, outcome in task.astream(...)`.

        `break` cancels the calls in flight once the generator is collected; `async with
        contextlib.aclosing(task.astream(...)) as outcomes` cancels them as the block exits.
        """
        from robustprompt._batch import Batch, astream_task

        batch = Batch(model, policy, concurrency, rpm, tpm, progress, cache=cache)
        return astream_task(self, inputs, batch, keep_runs=runs)


def _type_name(tp: object) -> str:
    return getattr(tp, "__name__", repr(tp))


def _type_adapter(tp: Any, where: str) -> pydantic.TypeAdapter[Any]:
    try:
        return pydantic.TypeAdapter(tp)
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise ConfigError(f"{where} {tp!r} is not a type pydantic can validate: {exc}") from exc


def _function_task(
    fn: Callable[..., Any],
    examples: Sequence[Example[Any, Any]],
    checks: Sequence[Check],
    name: str | None,
    version: str,
) -> Task[Any, Any]:
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters.values())
    where = f"@task on {fn.__qualname__}"
    if "return" not in hints:
        raise ConfigError(f"{where}: annotate the return type; it is the task's output type")
    if not params:
        raise ConfigError(f"{where}: the function needs at least one typed parameter (the task's input)")
    missing = [p.name for p in params if p.name not in hints]
    if missing:
        raise ConfigError(f"{where}: annotate parameter(s) {', '.join(missing)}")
    if len(params) == 1:
        input_type: Any = hints[params[0].name]
    else:
        fields: dict[str, Any] = {
            p.name: (hints[p.name], ... if p.default is inspect.Parameter.empty else p.default) for p in params
        }
        input_type = pydantic.create_model(f"{fn.__name__}_input", **fields)
    doc = inspect.getdoc(fn)
    if not doc:
        raise ConfigError(f"{where}: write the instructions as the function's docstring")
    return Task(
        name or fn.__name__,
        input=input_type,
        output=hints["return"],
        instructions=doc,
        examples=examples,
        checks=checks,
        version=version,
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
        return _function_task(fn, examples, checks, name, version)
    return lambda f: _function_task(f, examples, checks, name, version)
