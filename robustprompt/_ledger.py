"""What calls cost: a call's price from the catalog, and a ledger that totals a batch's calls by model and task.

```python
ledger = rp.Ledger()
classify.map(reviews, model="openai:gpt-4.1-mini", ledger=ledger)
ledger.total.cost, ledger.by_model()["openai:gpt-4.1-mini"].input_tokens
```

No hook to register: the batch writes every call it ends into the ledger it was given, and the ledger is read
whenever the caller likes (during the batch too: it is safe across threads). Prices are the catalog's list prices
per million tokens; a call on a model without a price makes its line's cost unknown (None), never zero.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from robustprompt._errors import RobustPromptError, run_of

if TYPE_CHECKING:
    from robustprompt._completion import Usage
    from robustprompt._profile import ModelProfile
    from robustprompt._run import Run

__all__ = ["Ledger", "LedgerLine", "price"]


def price(profile: ModelProfile | None, usage: Usage | None) -> float | None:
    """USD for `usage` at the profile's prices; 0 for no tokens; None when a price is unknown."""
    if usage is None or usage.total_tokens == 0:
        return 0.0
    if profile is None or profile.input_price is None or profile.output_price is None:
        return None
    return (usage.input_tokens * profile.input_price + usage.output_tokens * profile.output_price) / 1_000_000


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """Totals over some calls. `cost` is None when any of them had no price."""

    calls: int = 0
    failed: int = 0
    requests: int = 0  # attempts: re-asks and retried modes each send one
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = 0.0

    def plus(self, run: Run[Any] | None, failed: bool) -> LedgerLine:
        usage = run.usage if run is not None else None
        cost = run.cost if run is not None else 0.0
        return replace(
            self,
            calls=self.calls + 1,
            failed=self.failed + failed,
            requests=self.requests + (len(run.attempts) if run is not None else 0),
            input_tokens=self.input_tokens + (usage.input_tokens if usage else 0),
            output_tokens=self.output_tokens + (usage.output_tokens if usage else 0),
            cost=None if self.cost is None or cost is None else self.cost + cost,
        )


class Ledger:
    """Every call a batch ended, totalled by (model, task). Give it to `Task.map(ledger=...)`."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], LedgerLine] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        total = self.total
        cost = "unknown" if total.cost is None else f"${total.cost:.4f}"
        return f"Ledger({total.calls} calls, {cost})"

    def add(self, task: str, outcome: Run[Any] | RobustPromptError) -> None:
        """Count one ended call: its Run, or the error that ended it (with the Run it carries, when it has one)."""
        run = outcome if not isinstance(outcome, RobustPromptError) else run_of(outcome)
        model = run.model if run is not None else "unknown"
        with self._lock:
            line = self._lines.get((model, task), LedgerLine())
            self._lines[model, task] = line.plus(run, isinstance(outcome, RobustPromptError))

    def charge(self, model: str, task: str, spent: LedgerLine) -> None:
        """Count calls already totalled elsewhere (e.g. by a backend that answers repeated prompts once)."""
        with self._lock:
            self._lines[model, task] = _sum([self._lines.get((model, task), LedgerLine()), spent])

    def lines(self) -> dict[tuple[str, str], LedgerLine]:
        """(model, task) -> totals, sorted."""
        with self._lock:
            return dict(sorted(self._lines.items()))

    def by_model(self) -> dict[str, LedgerLine]:
        return self._grouped(0)

    def by_task(self) -> dict[str, LedgerLine]:
        return self._grouped(1)

    @property
    def total(self) -> LedgerLine:
        return _sum(list(self.lines().values()))

    def _grouped(self, part: int) -> dict[str, LedgerLine]:
        groups: dict[str, list[LedgerLine]] = {}
        for key, line in self.lines().items():
            groups.setdefault(key[part], []).append(line)
        return {name: _sum(lines) for name, lines in groups.items()}


def _sum(lines: list[LedgerLine]) -> LedgerLine:
    costs = [line.cost for line in lines]
    return LedgerLine(
        calls=sum(line.calls for line in lines),
        failed=sum(line.failed for line in lines),
        requests=sum(line.requests for line in lines),
        input_tokens=sum(line.input_tokens for line in lines),
        output_tokens=sum(line.output_tokens for line in lines),
        cost=None if None in costs else sum(c for c in costs if c is not None),
    )
