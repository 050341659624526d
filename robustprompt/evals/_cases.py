"""Case files: the inputs a task is measured on, with expected outputs where known.

A case file is JSONL (one JSON object a line) or YAML (a list of mappings, or a mapping with a `cases` list).
Each case is `{"id": ..., "input": ..., "expected": ...}`; `id` defaults to the case's 1-based line (JSONL) or
position (YAML), `expected` is optional and written as the task's output (for a plain output type, the value
itself or `{"answer": value}`). It may leave fields out (free text, say): only the fields it gives are judged,
a field with a task scorer (`Task(..., scorers={"summary": fn})`) by its scorer, the others by exact match.

A bad case never stops the others. A line that cannot be read is a `CaseProblem` (file, line, reason) and is
not run. A case whose `expected` does not validate against the task's output type still runs: the problem is
recorded, its `expected` is left out (`None`), so it counts towards validity, latency, cost and mismatch but not
towards accuracy, whose n says how many cases it covers. Scoring it as wrong would blame the model for the case
file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from robustprompt._calling import Task
from robustprompt._errors import ConfigError
from robustprompt._task import ANSWER_FIELD

__all__ = ["Case", "CaseProblem", "CaseSet", "load_cases"]

_KEYS = frozenset({"id", "input", "expected"})
_YAML_SUFFIXES = (".yaml", ".yml")
_INSTALL_YAML = "pip install pyyaml"


@dataclass(frozen=True, slots=True)
class Case:
    """One case. `expected` is in the task's output record shape, or None (none given, or it was invalid)."""

    id: str
    input: Any
    expected: dict[str, Any] | None
    line: int


@dataclass(frozen=True, slots=True)
class CaseProblem:
    """Something wrong with one case in a file. `case_id` is None when the line could not be read at all."""

    file: str
    line: int
    reason: str
    case_id: str | None = None

    def __str__(self) -> str:
        which = f" (case {self.case_id!r})" if self.case_id is not None else ""
        return f"{self.file}:{self.line}{which}: {self.reason}"


@dataclass(frozen=True, slots=True)
class CaseSet:
    cases: tuple[Case, ...]
    problems: tuple[CaseProblem, ...]

    def limited(self, limit: int | None) -> CaseSet:
        """The first `limit` cases (all when None), with the problems of those lines only."""
        if limit is None or limit >= len(self.cases):
            return self
        kept = self.cases[:limit]
        last = kept[-1].line if kept else 0
        return CaseSet(kept, tuple(p for p in self.problems if p.line <= last))


@dataclass(frozen=True, slots=True)
class _Raw:
    """A case as read from the file, before it is checked."""

    line: int
    value: Any


def load_cases(
    path: str | Path, task: Task[Any, Any], *, check_input: Callable[[Any], object] | None = None
) -> CaseSet:
    """Read a case file. A missing file or unknown format is a ConfigError; a bad case is a CaseProblem.

    Each input is checked against the task's input type (or by `check_input`, which raises ConfigError, for input
    that goes elsewhere first, such as a pipeline's): one that does not match is a problem, not a case, so no
    call is spent on it."""
    check = task.input_json if check_input is None else check_input
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no case file at {str(file)!r}")
    text = file.read_text("utf-8")
    problems: list[CaseProblem] = []
    yaml_file = file.suffix.lower() in _YAML_SUFFIXES
    raws = list((_yaml_items if yaml_file else _jsonl_items)(text, str(file), problems))
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(raws, 1):
        case = _case(raw, position if yaml_file else raw.line, str(file), task, problems)
        if case is None or not _input_ok(case, check, str(file), problems):
            continue
        if case.id in seen:
            problems.append(
                CaseProblem(str(file), raw.line, f"duplicate id (first on line {seen[case.id]}); not run", case.id)
            )
            continue
        seen[case.id] = raw.line
        cases.append(case)
    return CaseSet(tuple(cases), tuple(sorted(problems, key=lambda p: p.line)))


def _input_ok(case: Case, check: Callable[[Any], object], file: str, problems: list[CaseProblem]) -> bool:
    try:
        check(case.input)
    except ConfigError as exc:
        reason = " ".join(str(exc).split())  # pydantic's message spans lines: one line per problem here
        problems.append(CaseProblem(file, case.line, f"{reason}; not run", case.id))
        return False
    return True


def _jsonl_items(text: str, file: str, problems: list[CaseProblem]) -> Iterator[_Raw]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield _Raw(number, json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(CaseProblem(file, number, f"not valid JSON: {exc.msg} at column {exc.colno}"))


def _yaml_items(text: str, file: str, problems: list[CaseProblem]) -> Iterator[_Raw]:
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{file} is YAML, which needs PyYAML: {_INSTALL_YAML}, or write the cases as JSONL") from None
    # Composed node by node, not safe_load'ed whole, so each case keeps its line number.
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        items = _yaml_sequence(root, file)
        for node in items:
            yield _Raw(node.start_mark.line + 1, loader.construct_object(node, deep=True))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problems.append(
            CaseProblem(file, line, f"not valid YAML ({getattr(exc, 'problem', None) or exc}); no case read")
        )
    finally:
        loader.dispose()


def _yaml_sequence(root: Any, file: str) -> list[Any]:
    import yaml

    if root is None:
        return []
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "cases":
                root = value
                break
    if not isinstance(root, yaml.SequenceNode):
        raise ConfigError(f"{file}: a YAML case file is a list of cases, or a mapping with a 'cases' list")
    items: list[Any] = root.value
    return items


def _case(raw: _Raw, position: int, file: str, task: Task[Any, Any], problems: list[CaseProblem]) -> Case | None:
    value = raw.value
    if not isinstance(value, dict):
        problems.append(CaseProblem(file, raw.line, f"a case is an object with 'input', got {type(value).__name__}"))
        return None
    unknown = sorted(set(value) - _KEYS)
    if "input" not in value:
        problems.append(CaseProblem(file, raw.line, "the case has no 'input'"))
        return None
    case_id = value.get("id", position)
    if not isinstance(case_id, (str, int)) or isinstance(case_id, bool) or str(case_id) == "":
        problems.append(CaseProblem(file, raw.line, f"'id' must be a non-empty string or an integer, got {case_id!r}"))
        return None
    case_id = str(case_id)
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        problems.append(
            CaseProblem(file, raw.line, f"unknown key(s) {keys} ignored (a case has id, input, expected)", case_id)
        )
    expected = None
    if value.get("expected") is not None:
        expected, error = _expected_record(task, value["expected"])
        if error is not None:
            reason = f"expected output is invalid ({error}); the case runs, but is left out of accuracy"
            problems.append(CaseProblem(file, raw.line, reason, case_id))
    return Case(case_id, value["input"], expected, raw.line)


def _expected_record(task: Task[Any, Any], value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the expected output as an output record, None) or (None, why it is invalid), checks included."""
    output, errors = task.validator.validate(value)
    if errors and not (isinstance(value, dict) and set(value) == {ANSWER_FIELD}):
        # A plain output type (str, Literal, dict...) may be written bare: "yes" for {"answer": "yes"}. When
        # neither form fits, a dict reads as the record and anything else as the bare value.
        wrapped, wrapped_errors = task.validator.validate({ANSWER_FIELD: value})
        if not wrapped_errors or not isinstance(value, dict):
            output, errors = wrapped, wrapped_errors
    if errors:
        partial = _partial_record(task, value)
        return (partial, None) if partial is not None else (None, "; ".join(errors))
    return task.output_record(output), None


def _partial_record(task: Task[Any, Any], value: Any) -> dict[str, Any] | None:
    """An expected output that leaves fields out (free text, judged by no one or by a task scorer): the fields
    it gives, each valid for its type, in JSON form; None when anything but a left-out field is wrong."""
    model = task.validator.model
    if not isinstance(value, dict) or not value or set(value) - set(model.model_fields):
        return None
    try:
        model.model_validate(value)
    except pydantic.ValidationError as exc:
        if any(error["type"] != "missing" or len(error["loc"]) != 1 for error in exc.errors()):
            return None
    else:
        return None  # valid whole, so the checks failed: a partial reading must not slip past them
    record = {}
    for name, given in value.items():
        annotation = model.model_fields[name].annotation
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any if annotation is None else annotation)
        record[name] = adapter.dump_python(adapter.validate_python(given), mode="json")
    return record
