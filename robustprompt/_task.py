"""A typed task, declared once: input type, output type, instructions, examples and checks.

Pure: nothing here calls a model. `Task` (in `_calling`) is this declaration plus the doors into the engine; the
engine, the batch runner, the cache and the hooks see only the declaration, so none of them imports `Task`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import math
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import pydantic
import pydantic_core

from robustprompt._declared import declaring_file, default_record_path
from robustprompt._errors import ConfigError
from robustprompt._prompt import OutputSpec
from robustprompt._renderings import SPACE_VERSION
from robustprompt._validate import Check, Validator

__all__ = ["ANSWER_FIELD", "Example", "TaskDeclaration", "function_task"]

I = TypeVar("I")
O = TypeVar("O")
D = TypeVar("D", bound="TaskDeclaration[Any, Any]")

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


def _scorers(
    name: str, model: type[pydantic.BaseModel], scorers: Mapping[str, Callable[[Any, Any], float]]
) -> dict[str, Callable[[Any, Any], float]]:
    """How `migrate` scores free-text output fields: field -> (expected, got) -> a score from 0 to 1."""
    for field_name, scorer in scorers.items():
        if field_name not in model.model_fields:
            known = ", ".join(model.model_fields)
            raise ConfigError(f"task {name!r}: scorer for {field_name!r}, which is not an output field ({known})")
        if not callable(scorer):
            raise ConfigError(f"task {name!r}: scorer for {field_name!r} is not a function (expected, got) -> float")
    return dict(scorers)


def _spec_name(name: str) -> str:
    return (_NAME_OK.sub("_", name).strip("_") or "output")[:64]


class TaskDeclaration(Generic[I, O]):
    """What a task is: its types, instructions, examples, checks and fingerprint. Build a `Task`, which adds the
    calls."""

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
        scorers: Mapping[str, Callable[[Any, Any], float]] | None = None,
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
        with _described(f"task {name!r}: output type {output!r}"):
            self.validator = Validator(model, checks, unwrap)
        self.checks = tuple(checks)
        self.spec = OutputSpec(_spec_name(name), self.validator.schema, description=instructions.strip()[:300])
        self.examples: tuple[tuple[str, str], ...] = tuple(self._example_json(i, ex) for i, ex in enumerate(examples))
        self.scorers = _scorers(name, model, scorers or {})
        with _described(f"task {name!r}: input type {input!r}"):
            self.fingerprint = self._fingerprint()  # scorers judge answers and do not shape them: not part of it
        # Where adapt writes, and every call reads, this task's adaptation records (set it to move them).
        self.adaptations: Path = default_record_path(declaring_file())

    def __repr__(self) -> str:
        return f"Task({self.name!r}, fingerprint={self.fingerprint[:12]!r})"

    def input_json(self, value: Any) -> str:
        """The input as the JSON data block the model sees; ConfigError when it does not match the input type."""
        return self._dump_input(value, f"task {self.name!r}")

    def input_from_json(self, text: str) -> Any:
        """The input `input_json` wrote, read back (a batch job's handle keeps its inputs so)."""
        return self._input.validate_json(text)

    def _dump_input(self, value: Any, where: str) -> str:
        try:
            valid = self._input.validate_python(value)
        except pydantic.ValidationError as exc:
            raise ConfigError(f"{where}: input does not match {_type_name(self.input_type)}: {exc}") from exc
        try:
            dumped = self._input.dump_json(valid)
        except pydantic_core.PydanticSerializationError as exc:
            raise ConfigError(
                f"{where}: the input cannot be written as JSON ({exc}): pass plain data (text, numbers, lists, "
                "dicts, pydantic models), with no object that contains itself and no bytes that are not UTF-8"
            ) from None
        if b"null" in dumped and _non_finite(self._input.dump_python(valid)):  # pydantic writes NaN as null
            raise ConfigError(
                f"{where}: the input holds NaN or infinity, which JSON cannot carry (it would reach the model as "
                "null): replace it, e.g. with None"
            )
        return dumped.decode()

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
        input_json = self._dump_input(example.input, where)
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
            "render": SPACE_VERSION,
            "instructions": self.instructions,
            "input": self._input.json_schema(),
            "output": self.spec.schema,
            "examples": self.examples,
            # Checks decide what is accepted: results under other checks must not be reused. Their names stand in
            # for their code (a changed body keeps its name: bump `version` then).
            "checks": [f"{getattr(c, '__module__', '')}.{getattr(c, '__qualname__', repr(c))}" for c in self.checks],
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_non_finite(v) for v in value)
    return False


def _type_name(tp: object) -> str:
    return getattr(tp, "__name__", repr(tp))


@contextlib.contextmanager
def _described(where: str) -> Iterator[None]:
    """A type pydantic validates but cannot describe as JSON Schema (a Callable...) cannot be sent to a model."""
    try:
        yield
    except pydantic.PydanticUserError as exc:
        raise ConfigError(
            f"{where} cannot be described as JSON Schema ({exc.message}): use a pydantic model or plain data types"
        ) from None


def _type_adapter(tp: Any, where: str) -> pydantic.TypeAdapter[Any]:
    if inspect.isroutine(tp) or isinstance(tp, functools.partial):
        raise ConfigError(
            f"{where} is a function ({getattr(tp, '__qualname__', tp)!r}), not a type: pass a type such as a pydantic "
            "model, str or list[str]"
        )
    try:
        return pydantic.TypeAdapter(tp)
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise ConfigError(f"{where} {tp!r} is not a type pydantic can validate: {exc}") from exc


def function_task(
    cls: type[D],
    fn: Callable[..., Any],
    examples: Sequence[Example[Any, Any]],
    checks: Sequence[Check],
    name: str | None,
    version: str,
) -> D:
    """A declaration of class `cls` from a typed function (see `robustprompt.task`)."""
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
    return cls(
        name or fn.__name__,
        input=input_type,
        output=hints["return"],
        instructions=doc,
        examples=examples,
        checks=checks,
        version=version,
    )
