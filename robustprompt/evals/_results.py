"""One case's outcome on one model, flattened for storage, comparison and reports."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from robustprompt._errors import RobustPromptError, run_of
from robustprompt._ledger import price

if TYPE_CHECKING:
    from robustprompt._calling import Task
    from robustprompt._profile import ModelProfile
    from robustprompt._run import Run

__all__ = ["CaseResult"]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """`output` and `expected` are JSON objects in the task's output shape (a plain output type appears as
    `{"answer": value}`), so exact and per-field agreement read the same for every task. A failed case keeps
    `output=None` and says why in `error_kind` / `error`; it is counted, never dropped."""

    case_id: str
    model: str
    ok: bool
    output: dict[str, Any] | None
    expected: dict[str, Any] | None
    error_kind: str | None
    error: str | None
    first_valid: bool
    attempts: int
    repairs: int
    raw: str | None
    latency: float
    input_tokens: int
    output_tokens: int
    cost: float | None
    mode: str | None
    created: str  # ISO 8601, UTC
    input_sha: str | None = None  # of the input JSON: a stored result is reused only for the same input
    settings: str | None = None  # the sampling it ran with ("temperature 0, seed 0"); reused only under the same
    repeat: int = 0  # which of `--repeat N` runs of the case this is

    @property
    def correct(self) -> bool | None:
        """Right on every field the expected output gives (a field it leaves out, free text say, is not judged);
        None when the case has no expected output."""
        if self.expected is None:
            return None
        output = self.output
        return self.ok and output is not None and all(k in output and output[k] == v for k, v in self.expected.items())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseResult:
        return cls(**data)

    @classmethod
    def from_outcome(
        cls,
        case_id: str,
        task: Task[Any, Any],
        outcome: Run[Any] | RobustPromptError,
        *,
        model: str,
        expected: dict[str, Any] | None = None,
        profile: ModelProfile | None = None,
        now: dt.datetime | None = None,
    ) -> CaseResult:
        """From a finished Run, or from the error that ended the call (its Run, when it has one)."""
        run = outcome if not isinstance(outcome, RobustPromptError) else run_of(outcome)
        error = outcome if isinstance(outcome, RobustPromptError) else None
        attempts = run.attempts if run is not None else []
        usage = run.usage if run is not None else None
        input_tokens = usage.input_tokens if usage else 0
        output_tokens = usage.output_tokens if usage else 0
        last_raw = next((a.raw for a in reversed(attempts) if a.raw is not None), None)
        return cls(
            case_id=case_id,
            model=model,
            ok=error is None and run is not None,
            output=task.output_record(run.output) if error is None and run is not None else None,
            expected=expected,
            error_kind=type(error).__name__ if error else None,
            error=str(error) if error else None,
            first_valid=bool(attempts) and attempts[0].ok,
            attempts=len(attempts),
            repairs=sum(len(a.repairs) for a in attempts),
            raw=last_raw,
            latency=run.latency if run is not None else 0.0,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            # The Run's own cost (each attempt at its model's prices: a fallback's are its own); `profile` prices
            # what carries no Run.
            cost=run.cost if run is not None else price(profile, usage),
            mode=attempts[-1].mode.value if attempts else None,
            created=(now or dt.datetime.now(dt.timezone.utc)).isoformat(),
        )
