"""The deadline of the call a request belongs to, for the code that sends it.

Set by the sender around each request (a context variable, so it follows the call into threads and tasks); read
by backends that can bound one request's wait, so that no request outlives the call's deadline.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["DEADLINE", "bounded", "remaining"]

DEADLINE = "deadline"  # the code of a ProviderTimeout raised for the call's own deadline, not the provider's

_deadline: ContextVar[float | None] = ContextVar("robustprompt_deadline", default=None)


@contextlib.contextmanager
def bounded(deadline: float | None) -> Iterator[None]:
    """Within this block, `remaining()` counts down to `deadline` (a time.monotonic() value)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current call's deadline (never below 0), or None when it has none."""
    deadline = _deadline.get()
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
