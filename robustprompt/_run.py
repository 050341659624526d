"""The record of a call: every attempt, what it cost, and the validated output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from robustprompt._completion import Usage
from robustprompt._prompt import OutputMode

__all__ = ["Attempt", "Run"]

O = TypeVar("O")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request to a model and what came of it.

    `raw` is the answer text (None when the provider failed the request); `errors` are the validation errors
    sent back in the next re-ask; `repairs` what the parser fixed; `transport_errors` the retryable provider
    errors met (and retried) before this attempt got its answer.
    """

    number: int
    model: str
    mode: OutputMode
    raw: str | None = None
    errors: tuple[str, ...] = ()
    repairs: tuple[str, ...] = ()
    usage: Usage | None = None
    latency: float = 0.0
    finish_reason: str | None = None
    transport_errors: tuple[str, ...] = ()
    cost: float | None = None  # USD at the catalog's prices for its usage; None when a price is unknown
    # A streamed attempt's seconds from its request to the first piece of the answer, and to the first partial
    # showing a field (None when not streamed, or when none arrived); from its last try, not the retries before.
    first_chunk: float | None = None
    first_partial: float | None = None

    @property
    def ok(self) -> bool:
        return self.raw is not None and not self.errors


@dataclass(slots=True)
class Run(Generic[O]):
    """A whole call. `output` is the validated value, or None when `error` says why there is none. `model` is the
    model that gave the output (or was tried last); `notes` say which models were skipped or failed, and why;
    `configuration` how the prompt was rendered for that model (adapted, or the profile's default)."""

    task: str
    fingerprint: str
    model: str
    attempts: list[Attempt] = field(default_factory=list)
    output: O | None = None
    error: str | None = None
    dropped_examples: tuple[int, ...] = ()
    latency: float = 0.0
    notes: list[str] = field(default_factory=list)  # fallbacks taken and why
    configuration: str | None = None  # the rendering configuration that answered (its label)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.attempts) and self.attempts[-1].ok

    @property
    def usage(self) -> Usage:
        total = Usage()
        for attempt in self.attempts:
            if attempt.usage is not None:
                total = total + attempt.usage
        return total

    @property
    def cost(self) -> float | None:
        """USD over every attempt, at the catalog's prices; None when an attempt that used tokens has no price."""
        costs = [a.cost for a in self.attempts if a.usage is not None and a.usage.total_tokens]
        return None if None in costs else sum(c for c in costs if c is not None)

    @property
    def mode(self) -> OutputMode | None:
        return self.attempts[-1].mode if self.attempts else None
