"""The deadline of the call a request belongs to, and of the request's current phase, for the code that sends it.

Set by the sender around each request (a context variable, so it follows the call into threads and tasks); read
by backends that can bound one request's wait, so that no request outlives the call's deadline. A request runs in
phases (connecting and the response headers, then the body), each bounded by the model's `timeout` as a whole,
not per read: a server that trickles one byte a second never trips a per-read timeout.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Awaitable, Iterator
from contextvars import ContextVar
from typing import TypeVar

__all__ = ["DEADLINE", "bounded", "in_time", "phase", "phase_left", "remaining"]

T = TypeVar("T")

DEADLINE = "deadline"  # the code of a ProviderTimeout raised for the call's own deadline, not the provider's

_deadline: ContextVar[float | None] = ContextVar("robustprompt_deadline", default=None)
_phase: ContextVar[float | None] = ContextVar("robustprompt_phase", default=None)


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


@contextlib.contextmanager
def phase(timeout: float) -> Iterator[float]:
    """One phase of a request: within this block, `phase_left()` counts down to `timeout` seconds from now, or to
    the call's deadline when that comes first. Yields the seconds the phase has."""
    end = time.monotonic() + timeout
    deadline = _deadline.get()
    token = _phase.set(end if deadline is None else min(end, deadline))
    try:
        yield max(min(end, deadline or end) - time.monotonic(), 0.0)
    finally:
        _phase.reset(token)


def phase_left() -> float | None:
    """Seconds left in the current request phase (never below 0), or None outside one."""
    end = _phase.get()
    return None if end is None else max(end - time.monotonic(), 0.0)


async def in_time(awaitable: Awaitable[T], seconds: float | None) -> T:
    """`awaitable`, cancelled after `seconds` (None: never), raising asyncio.TimeoutError then."""
    import asyncio  # only async code gets here: `import robustprompt` does not load asyncio

    if seconds is None:
        return await awaitable
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)
