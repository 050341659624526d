"""Adaptation records: which rendering configuration a task uses on a model, and the measurements behind it.

`task.adapt(model)` writes one record per (task, model) into a small JSON file next to the app that declares the task
(`robustprompt.adapt.json` beside its source file, like a lock file: commit it, review its diff). Every call of the
task on that model then reads the record's configuration. A record of another version of the task (its fingerprint
changed: instructions, types, examples or a rendering's version) is stale: the task warns once and falls back to the
model profile's default rather than use a configuration measured on something else.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustprompt._declared import RECORD_FILE
from robustprompt._errors import ConfigError
from robustprompt._renderings import Configuration

if TYPE_CHECKING:
    from robustprompt._model import Model
    from robustprompt._policy import Policy
    from robustprompt._task import TaskDeclaration
    from robustprompt.evals._stats import Interval

__all__ = [
    "RECORD_FILE",
    "Adaptation",
    "AdaptationWarning",
    "Score",
    "configuration_for",
    "read_records",
    "render_adaptation",
    "write_record",
]

_FORMAT = 1


class AdaptationWarning(UserWarning):
    """A task's adaptation record for a model cannot be used (stale or unreadable): the default answers instead."""


@dataclass(frozen=True, slots=True)
class Score:
    """One candidate's measurement: `correct` and `valid` of `n` scored calls; mean prompt tokens and seconds."""

    configuration: Configuration
    correct: int
    valid: int
    n: int
    prompt_tokens: float
    latency: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_json(self) -> dict[str, Any]:
        interval = _wilson(self.correct, self.n)
        return {
            "label": self.configuration.label,
            "configuration": self.configuration.to_json(),
            "correct": self.correct,
            "valid": self.valid,
            "n": self.n,
            "accuracy": round(self.accuracy, 4),
            "interval": None if interval is None else [round(interval.low, 4), round(interval.high, 4)],
            "prompt_tokens": round(self.prompt_tokens, 1),
            "latency": round(self.latency, 4),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Score:
        return cls(
            Configuration.from_json(data["configuration"]),
            int(data["correct"]),
            int(data["valid"]),
            int(data["n"]),
            float(data["prompt_tokens"]),
            float(data["latency"]),
        )


@dataclass(frozen=True, slots=True)
class Adaptation:
    """What adapt measured for one task on one model, and what it chose.

    `scored_on` says what the scores are computed on (the task's own examples left out one at a time, or dev
    cases); `calls` and `tokens` what the measuring cost (answers reused from a cache cost no call); `untried` the
    candidates the budget left out.
    """

    task: str
    fingerprint: str
    model: str
    chosen: Configuration
    candidates: tuple[Score, ...]
    scored_on: str
    budget: int
    calls: int
    tokens: int
    seconds: float
    seed: int
    untried: int = 0
    baseline: Configuration | None = field(default=None)  # the profile's default, scored among the candidates

    @property
    def best(self) -> Score:
        """The chosen configuration's score."""
        score = self.score_of(self.chosen)
        if score is None:  # only an edited record can say it chose what it never scored
            raise ConfigError(f"the adaptation record of {self.task} on {self.model} has no score for its choice")
        return score

    def score_of(self, configuration: Configuration) -> Score | None:
        return next((s for s in self.candidates if s.configuration == configuration), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "fingerprint": self.fingerprint,
            "model": self.model,
            "chosen": self.chosen.to_json(),
            "chosen_label": self.chosen.label,
            "baseline": None if self.baseline is None else self.baseline.to_json(),
            "scored_on": self.scored_on,
            "budget": self.budget,
            "calls": self.calls,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 2),
            "seed": self.seed,
            "untried": self.untried,
            "candidates": [s.to_json() for s in self.candidates],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Adaptation:
        try:
            return cls(
                str(data["task"]),
                str(data["fingerprint"]),
                str(data["model"]),
                Configuration.from_json(data["chosen"]),
                tuple(Score.from_json(s) for s in data["candidates"]),
                str(data["scored_on"]),
                int(data["budget"]),
                int(data["calls"]),
                int(data["tokens"]),
                float(data["seconds"]),
                int(data["seed"]),
                int(data.get("untried", 0)),
                None if data.get("baseline") is None else Configuration.from_json(data["baseline"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not an adaptation record ({type(exc).__name__}: {exc})") from exc


def read_records(path: Path) -> list[Adaptation]:
    """Every record in the file (none when it does not exist); ConfigError when it is not a record file."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the adaptation records {str(path)!r}: {exc}") from exc
    try:
        data = json.loads(text)
        if data.get("robustprompt_adaptations") != _FORMAT:
            raise ValueError(f"format {data.get('robustprompt_adaptations')!r}, expected {_FORMAT}")
        return [Adaptation.from_json(r) for r in data["records"]]
    except (ValueError, TypeError, KeyError, AttributeError, ConfigError) as exc:
        raise ConfigError(
            f"{path} is not a robustprompt adaptation record file ({exc}): fix it, or delete it and adapt again"
        ) from exc


def write_record(path: Path, adaptation: Adaptation) -> None:
    """Add `adaptation` to the file, replacing the record of the same task and model; the file stays sorted."""
    with _lock:
        try:
            kept = [r for r in read_records(path) if (r.task, r.model) != (adaptation.task, adaptation.model)]
        except ConfigError:
            kept = []  # an unreadable file is replaced: the warning at load time already said so
        records = sorted([*kept, adaptation], key=lambda r: (r.task, r.model))
        text = json.dumps({"robustprompt_adaptations": _FORMAT, "records": [r.to_json() for r in records]}, indent=2)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(text + "\n", "utf-8")
            os.replace(temporary, path)  # readers never see half a file
        except OSError as exc:
            raise ConfigError(f"cannot write the adaptation record {str(path)!r}: {exc}") from exc
        _loaded.pop(path, None)


_lock = threading.Lock()
_loaded: dict[Path, tuple[tuple[int, int], dict[tuple[str, str], Adaptation]]] = {}
_warned: set[tuple[Path, str, str, str]] = set()


def _records(path: Path) -> dict[tuple[str, str], Adaptation]:
    """The file's records by (task, model), read again only when the file changed."""
    try:
        stat = path.stat()
    except OSError:
        return {}
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _loaded.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    try:
        records = {(r.task, r.model): r for r in read_records(path)}
    except ConfigError as exc:
        _warn_once(path, "", "", str(exc), f"{exc}; tasks use their default configuration")
        records = {}
    with _lock:
        _loaded[path] = (stamp, records)
    return records


def _warn_once(path: Path, task: str, model: str, fingerprint: str, message: str) -> None:
    key = (path, task, model, fingerprint)
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, AdaptationWarning, stacklevel=4)


def recorded(task: TaskDeclaration[Any, Any], model: Model) -> Adaptation | None:
    """The task's current record for `model`; None when there is none or it is stale (warned once)."""
    record = _records(task.adaptations).get((task.name, model.name))
    if record is None:
        return None
    if record.fingerprint != task.fingerprint:
        _warn_once(
            task.adaptations,
            task.name,
            model.name,
            task.fingerprint,
            f"the adaptation record of task {task.name!r} for {model.name} in {task.adaptations} was made for "
            "another version of the task (its instructions, types, examples or renderings changed): using the "
            f"default configuration; run `task.adapt(...)` or `robustprompt adapt` again",
        )
        return None
    return record


def configuration_for(task: TaskDeclaration[Any, Any], model: Model, policy: Policy) -> tuple[Configuration, str]:
    """The configuration a call of `task` on `model` uses, and where it came from."""
    if policy.configuration is not None:
        return policy.configuration, "policy"
    record = recorded(task, model)
    if record is not None:
        return record.chosen, "adaptation record"
    return model.profile.default_configuration, "profile default"


def render_adaptation(adaptation: Adaptation, *, top: int = 10) -> str:
    """The record as a terminal table: the best candidates first, each with its n and 95 % interval."""
    ranked = sorted(adaptation.candidates, key=lambda s: (-s.n, -s.accuracy, -s.valid / max(s.n, 1), s.prompt_tokens))
    lines = [
        f"{adaptation.task} on {adaptation.model}: chose {adaptation.chosen.label}",
        f"scored on {adaptation.scored_on}; {adaptation.calls} call(s), {adaptation.tokens} token(s), "
        f"{adaptation.seconds:.1f} s; {len(adaptation.candidates)} candidate(s) scored, {adaptation.untried} untried",
    ]
    if adaptation.baseline is not None and (base := adaptation.score_of(adaptation.baseline)) is not None:
        lines.append(f"default ({adaptation.baseline.label}): {_cell(base)}")
    lines.append(f"{'configuration':<60} {'accuracy':>8} {'n':>4}  {'95 % interval':<15} {'valid':>5} {'tokens':>7}")
    for score in ranked[:top]:
        interval = _wilson(score.correct, score.n)
        shown = "" if interval is None else f"{interval.low:.0%}-{interval.high:.0%}"
        lines.append(
            f"{score.configuration.label:<60} {score.accuracy:>8.0%} {score.n:>4}  {shown:<15} "
            f"{score.valid:>5} {score.prompt_tokens:>7.0f}"
        )
    if len(ranked) > top:
        lines.append(f"... and {len(ranked) - top} more in the record")
    return "\n".join(lines) + "\n"


def _cell(score: Score) -> str:
    interval = _wilson(score.correct, score.n)
    shown = "" if interval is None else f" (95 % {interval.low:.0%}-{interval.high:.0%})"
    return f"{score.correct}/{score.n} correct{shown}, {score.valid}/{score.n} valid"


def _wilson(correct: int, n: int) -> Interval | None:
    # Imported here: the evals package's own import pulls in the task facade, which imports this module.
    from robustprompt.evals._stats import wilson

    return wilson(correct, n)
