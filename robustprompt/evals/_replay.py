"""Recorded generations standing in for a model: `replay:PATH[#key=value&...]`.

    replay:runs/prime.csv#model=openaichat/gpt-4-0314

PATH is a CSV or JSONL file of past answers, one row per case: the case id in column `id`, the answer text in
`answer` (rename them with `id_column=` / `answer_column=` after the `#`), and optionally `latency` (seconds),
`cost` (USD), `answer_token` or `output_tokens`, and `input_tokens`. Every other `key=value` after the `#` keeps
only the rows whose column `key` equals `value`.

Replaying a case runs the task's own flow, through the engine, on the recorded text: the model in that flow is
a one-answer backend built for the case. So parsing, coercion and validation are exactly those of a live call
(one attempt, no re-ask: the recording cannot answer one). A backend keyed by case id would need the case id
inside the prompt, which the engine never sees; one model per case keeps the engine unaware of replay.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustprompt._calling import Task
from robustprompt._completion import Completion, Usage
from robustprompt._errors import ConfigError, RobustPromptError
from robustprompt._model import Model
from robustprompt._policy import Policy
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, Prompt
from robustprompt._run import Run
from robustprompt._tokens import TokenCount, count_tokens
from robustprompt.evals._cases import Case
from robustprompt.evals._results import CaseResult

__all__ = ["PREFIX", "ReplaySource", "is_replay"]

PREFIX = "replay:"
_OPTIONS = ("id_column", "answer_column")
_OUTPUT_TOKEN_COLUMNS = ("answer_token", "output_tokens")
_ONE_ATTEMPT = Policy(reasks=0, transport_retries=0)
# Large enough that the engine never drops a task's examples to fit: the recording was made with all of them.
_PROFILE = ModelProfile("replay", "recording", modes=(OutputMode.PROMPTED,), context_window=1 << 30)


def is_replay(name: str) -> bool:
    return name.startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class _Recording:
    text: str
    latency: float | None
    cost: float | None
    input_tokens: int
    output_tokens: int


class _RecordedBackend:
    """Answers every prompt with one recorded text: the model of one replayed case."""

    def __init__(self, recording: _Recording) -> None:
        self._completion = Completion(
            recording.text,
            usage=Usage(recording.input_tokens, recording.output_tokens),
            model_id="recording",
        )

    def complete(self, prompt: Prompt) -> Completion:
        return self._completion

    async def acomplete(self, prompt: Prompt) -> Completion:
        return self._completion

    def count_tokens(self, text: str) -> TokenCount:
        return count_tokens(text, "estimate")


@dataclass(frozen=True)
class ReplaySource:
    """The recorded answers of one model (one filter of one file), by case id."""

    name: str  # what results and reports call this model: the file name and the filter
    path: Path
    recordings: Mapping[str, _Recording]

    @classmethod
    def open(cls, spec: str) -> ReplaySource:
        """Read `replay:PATH[#key=value&...]`; a ConfigError says what is wrong with the spec or the file."""
        if not is_replay(spec):
            raise ConfigError(f"a replay source starts with {PREFIX!r}: {spec!r}")
        location, _, fragment = spec[len(PREFIX) :].partition("#")
        path = Path(location).expanduser()
        if not location or not path.is_file():
            raise ConfigError(f"no recording file at {location!r} (in {spec!r})")
        options, filters = _fragment(fragment, spec)
        rows = _filtered(_rows(path), filters)
        recordings = _recordings(rows, options.get("id_column", "id"), options.get("answer_column", "answer"), spec)
        if not recordings:
            raise ConfigError(f"{spec!r}: no row matches {fragment!r}" if filters else f"{spec!r} has no rows")
        # The spec as given names the source: two recordings with one file name in two folders stay apart.
        return cls(spec, path, recordings)

    def result(self, task: Task[Any, Any], case: Case) -> CaseResult:
        """The case as the recorded model answered it, or a failed case when the recording lacks it."""
        recording = self.recordings.get(case.id)
        if recording is None:
            error = ConfigError(f"no recorded answer for case {case.id!r} in {self.name}")
            return CaseResult.from_outcome(case.id, task, error, model=self.name, expected=case.expected)
        model = Model(self.name, _PROFILE, Settings(), _RecordedBackend(recording))
        outcome: Run[Any] | RobustPromptError
        try:
            outcome = task.run(case.input, model=model, policy=_ONE_ATTEMPT)
        except RobustPromptError as exc:
            outcome = exc
        result = CaseResult.from_outcome(case.id, task, outcome, model=self.name, expected=case.expected)
        # The recording's own measurements, not the microseconds the replay took.
        return dataclasses.replace(
            result,
            latency=recording.latency if recording.latency is not None else result.latency,
            cost=recording.cost,
        )

    def results(self, task: Task[Any, Any], cases: Sequence[Case]) -> list[CaseResult]:
        return [self.result(task, case) for case in cases]


def _fragment(fragment: str, spec: str) -> tuple[dict[str, str], dict[str, str]]:
    """(options, row filters) from `key=value&key=value`."""
    options: dict[str, str] = {}
    filters: dict[str, str] = {}
    for part in filter(None, fragment.split("&")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(f"{spec!r}: after '#' give key=value pairs joined by '&', got {part!r}")
        (options if key in _OPTIONS else filters)[key] = value
    return options, filters


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".csv":
                # Recorded answers can be long: lift the csv module's 128 KiB default field limit.
                csv.field_size_limit(1 << 30)
                yield from csv.DictReader(handle)
                return
            for number, line in enumerate(handle, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ConfigError(f"{path}:{number}: a recording line is a JSON object")
                    yield row
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the recording {str(path)!r}: {exc}") from exc


def _filtered(rows: Iterator[dict[str, Any]], filters: Mapping[str, str]) -> Iterator[dict[str, Any]]:
    for row in rows:
        if all(str(row.get(key, "")) == value for key, value in filters.items()):
            yield row


def _recordings(rows: Iterator[dict[str, Any]], id_column: str, answer_column: str, spec: str) -> dict[str, _Recording]:
    recordings: dict[str, _Recording] = {}
    for row in rows:
        for column in (id_column, answer_column):
            if column not in row:
                found = ", ".join(sorted(map(str, row))) or "none"
                raise ConfigError(f"{spec!r}: the recording has no column {column!r} (columns: {found})")
        case_id = str(row[id_column])
        if case_id in recordings:
            raise ConfigError(
                f"{spec!r}: case {case_id!r} is recorded more than once; add a filter after '#' (e.g. #model=...) "
                "so that each case has one answer"
            )
        recordings[case_id] = _Recording(
            text=str(row[answer_column] or ""),
            latency=_number(row.get("latency")),
            cost=_number(row.get("cost")),
            input_tokens=int(_number(row.get("input_tokens")) or 0),
            output_tokens=int(next((n for c in _OUTPUT_TOKEN_COLUMNS if (n := _number(row.get(c)))), 0)),
        )
    return recordings


def _number(value: Any) -> float | None:
    """A measurement from a CSV cell or a JSON value; None when absent, not a number, or not finite."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
