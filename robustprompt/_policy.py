"""How much one call may spend: retries, re-asks, attempts, wall time, fallbacks and the breaker's thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from robustprompt._errors import ConfigError
from robustprompt._model import Model
from robustprompt._profile import check_seconds, check_whole
from robustprompt._prompt import OutputMode
from robustprompt._renderings import Configuration

__all__ = ["Policy"]

_ON_RETIRED = ("raise", "replace")


@dataclass(frozen=True, slots=True)
class Policy:
    """Budgets for one call; all bounded.

    `transport_retries`: extra tries of the same request after a retryable provider error (429, 5xx, timeout).
    `reasks`: extra requests after the model answered but the answer failed validation.
    Waits double from `backoff_initial` up to `backoff_max`, with jitter; a server's Retry-After is honoured
    up to `retry_after_cap` seconds (a longer one is not cut short: the call gives up instead).
    `max_attempts`: requests in all for one call, across retries, re-asks, mode downgrades and fallbacks.
    `deadline`: seconds for the whole call; no wait or new request starts past it.
    `configuration`: the rendering to use instead of the task's adaptation record or the profile's default.
    `fallbacks`: models to try in order when the model fails for good (not found, out of quota, budgets spent,
    circuit open). `breaker_failures` consecutive provider failures open a model's circuit for
    `breaker_cooldown` seconds, during which calls go straight to the fallbacks.
    `on_retired`: what a call does when its model answers "not found" (retired) or is known dead: `"raise"` the
    typed `ModelNotFoundError` (the default), or `"replace"`: call the catalog's replacement for it instead (with
    its adaptation record when there is one), warn once with the `robustprompt migrate` command that proves it,
    and say so in `run.notes`. A model the catalog knows no replacement for still raises.
    """

    transport_retries: int = 2
    reasks: int = 1
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    retry_after_cap: float = 120.0  # openai-python's cap too
    reask_answer_chars: int = 2000
    reask_max_errors: int = 8
    mode: OutputMode | None = field(default=None)  # force one output mode instead of the profile's best
    configuration: Configuration | None = None
    max_attempts: int | None = None
    deadline: float | None = None
    fallbacks: tuple[Model | str, ...] = ()
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    on_retired: Literal["raise", "replace"] = "raise"

    def __post_init__(self) -> None:
        for name in ("transport_retries", "reasks", "reask_answer_chars", "reask_max_errors"):
            check_whole(f"Policy.{name}", getattr(self, name), minimum=0)
        for name in ("max_attempts", "breaker_failures"):
            if getattr(self, name) is not None:
                check_whole(f"Policy.{name}", getattr(self, name), minimum=1)
        for name in ("backoff_initial", "backoff_max", "retry_after_cap", "breaker_cooldown"):
            check_seconds(f"Policy.{name}", getattr(self, name), zero_ok=True)
        if self.deadline is not None:
            check_seconds("Policy.deadline", self.deadline, zero_ok=False)
        object.__setattr__(self, "mode", _mode(self.mode))
        if self.on_retired not in _ON_RETIRED:
            raise ConfigError(f"Policy.on_retired must be 'raise' or 'replace', got {self.on_retired!r}")
        if isinstance(self.fallbacks, (str, bytes)):
            raise ConfigError("Policy.fallbacks takes a tuple of models: fallbacks=('openai:gpt-4.1',)")


def _mode(value: object) -> OutputMode | None:
    if value is None or isinstance(value, OutputMode):
        return value
    try:
        return OutputMode(value)  # the mode's name as a string is accepted: Policy(mode="json_schema")
    except ValueError:
        known = ", ".join(repr(m.value) for m in OutputMode)
        raise ConfigError(f"Policy.mode must be an rp.OutputMode or one of {known}, got {value!r}") from None
