"""A circuit breaker per model, shared by every call in the process (the instance is `_state.state.breakers`).

Closed: calls go through; `failures` consecutive provider failures open it. Open: calls skip the model (and go to
the fallback) until `cooldown` has passed. Half-open: one trial call goes through; success closes, failure reopens,
and a call that ends with no verdict (a bad answer, a cancellation) frees the trial for the next call.
A model that answered "not found" is dead for the process: retired models do not come back, so no trial is spent.
A model the catalog says is retired is suspect: one probe call at a time goes through (the date may have slipped),
the rest go to the fallback, so concurrent calls waste one request at most before the model is known dead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Breakers"]


@dataclass(slots=True)
class _State:
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False
    dead: str | None = None  # why the model will not be called again in this process
    suspect: str | None = None  # why only one probe call at a time may go through


class Breakers:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._answered: set[str] = set()  # models that have served a call: no longer suspect
        self._lock = threading.Lock()

    def allow(self, model: str, cooldown: float) -> str | None:
        """None when a call to `model` may go ahead, else why it may not. The caller must end every call it was
        allowed with `success`, `failure` or `release`."""
        with self._lock:
            state = self._states.get(model)
            if state is None:
                return None
            if state.dead is not None:
                return state.dead
            if state.opened_at is not None:
                waited = self._clock() - state.opened_at
                if waited < cooldown:
                    return f"circuit open after {state.failures} failures; retry in {cooldown - waited:.1f} s"
            elif state.suspect is None:
                return None
            if state.trial_running:  # half-open, or a suspect's probe: one call at a time
                return f"{state.suspect or 'circuit half-open'}; a trial call is under way"
            state.trial_running = True
            return None

    def release(self, model: str) -> None:
        """The allowed call ended without a verdict on the model's health (it answered badly, was cancelled...)."""
        with self._lock:
            state = self._states.get(model)
            if state is not None:
                state.trial_running = False

    def success(self, model: str) -> None:
        """A call answered. A dead mark stays: the call may have been sent before the model answered "not found"."""
        with self._lock:
            state = self._states.get(model)
            if state is not None and state.dead is not None:
                state.trial_running = False
            else:
                self._states.pop(model, None)
            self._answered.add(model)

    def dead_reason(self, model: str) -> str | None:
        """Why `model` will not be called again in this process, or None while it may be."""
        with self._lock:
            state = self._states.get(model)
            return None if state is None else state.dead

    def failure(self, model: str, threshold: int) -> None:
        with self._lock:
            state = self._states.setdefault(model, _State())
            state.failures += 1
            state.trial_running = False
            if state.opened_at is not None or state.failures >= threshold:
                state.opened_at = self._clock()

    def suspect(self, model: str, reason: str) -> None:
        """Mark a model as probably gone (once: a model that answered since is not marked again)."""
        with self._lock:
            if model not in self._answered:
                self._states.setdefault(model, _State()).suspect = reason

    def dead(self, model: str, reason: str) -> None:
        with self._lock:
            self._states.setdefault(model, _State()).dead = reason

    def reset(self) -> None:
        """Forget every model's state (for tests, or after fixing a configuration)."""
        with self._lock:
            self._states.clear()
            self._answered.clear()
