"""Transport retries: one tenacity configuration, driven by the sync and the async sender alike.

A retryable provider error (429, 408, 409, 5xx, timeouts, resets) sends the same request again after a wait: the
server's Retry-After when it gave one (a wait beyond the cap is not cut short: we give up instead), else
exponential backoff with jitter. No wait runs past the call's deadline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tenacity

from robustprompt._deadline import DEADLINE, bounded
from robustprompt._errors import ProviderError, ProviderTimeout

if TYPE_CHECKING:
    from robustprompt._completion import Completion
    from robustprompt._model import Model
    from robustprompt._policy import Policy
    from robustprompt._prompt import Prompt

__all__ = ["Request", "Sent", "asend", "send"]


@dataclass(frozen=True, slots=True)
class Request:
    """One prompt for one model, with at most `tries` sends of it."""

    model: Model
    prompt: Prompt
    tries: int
    deadline: float | None  # time.monotonic() value


@dataclass(frozen=True, slots=True)
class Sent:
    """What a request produced after transport retries."""

    result: Completion | ProviderError
    transport_errors: tuple[str, ...]
    latency: float
    first_chunk: float | None = None  # a streamed request's seconds to the first piece of its answer
    first_partial: float | None = None  # ... and to the first partial showing a field

    @property
    def requests(self) -> int:
        return 1 + len(self.transport_errors)


def _error(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


def _asked_wait(state: tenacity.RetryCallState) -> float | None:
    """The wait the failed send's error asks for; None when it asks nothing usable (nan, inf, negative), since
    asyncio.sleep(nan) never returns and time.sleep(nan) raises: normal backoff applies then."""
    asked = getattr(_error(state), "retry_after", None)
    if not isinstance(asked, (int, float)) or not math.isfinite(asked) or asked < 0:
        return None
    return float(asked)


class _AskedWaitTooLong(tenacity.stop.stop_base):
    """The server asked for a wait beyond the cap, or past the deadline: give up rather than retry early."""

    def __init__(self, cap: float, deadline: float | None) -> None:
        self.cap = cap
        self.deadline = deadline

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        wait = _asked_wait(state)
        if wait is None:
            return False
        return wait > self.cap or (self.deadline is not None and time.monotonic() + wait > self.deadline)


class _PastDeadline(tenacity.stop.stop_base):
    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _wait(policy: Policy, deadline: float | None) -> Callable[[tenacity.RetryCallState], float]:
    # Exponential backoff plus up to one initial step of jitter, so clients that failed together spread out.
    exponential = tenacity.wait_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)
    backoff = exponential + tenacity.wait_random(0, policy.backoff_initial)

    def wait(state: tenacity.RetryCallState) -> float:
        asked = _asked_wait(state)
        if asked is not None:
            return asked  # within the cap and the deadline, or the stop condition would have ended it
        seconds = backoff(state)
        return seconds if deadline is None else max(min(seconds, deadline - time.monotonic()), 0.0)

    return wait


def _retrying_args(request: Request, policy: Policy, log: list[str]) -> dict[str, Any]:
    def note(state: tenacity.RetryCallState) -> None:
        exc = _error(state)
        log.append(f"{type(exc).__name__}: {exc}")

    return {
        "stop": tenacity.stop_after_attempt(request.tries)
        | _AskedWaitTooLong(policy.retry_after_cap, request.deadline)
        | _PastDeadline(request.deadline),
        "wait": _wait(policy, request.deadline),
        "retry": tenacity.retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
        "before_sleep": note,
        "reraise": True,
    }


def _not_past_deadline(request: Request) -> None:
    """No request starts once the call's deadline has passed (a trimmed backoff may end right on it)."""
    if request.deadline is not None and time.monotonic() >= request.deadline:
        profile = request.model.profile
        raise ProviderTimeout(
            "the call's deadline passed", provider=profile.provider, model=profile.model_id, code=DEADLINE
        )


def _retried_sync(request: Request, policy: Policy, log: list[str], first: ProviderError) -> Completion:
    for attempt in tenacity.Retrying(**_retrying_args(request, policy, log)):
        with attempt:
            if attempt.retry_state.attempt_number == 1:
                raise first  # the send already made: tenacity counts it, logs it and waits after it
            _not_past_deadline(request)
            return request.model.backend.complete(request.prompt)
    raise AssertionError("unreachable: tenacity re-raises the last error when it stops")


async def _retried_async(request: Request, policy: Policy, log: list[str], first: ProviderError) -> Completion:
    async for attempt in tenacity.AsyncRetrying(**_retrying_args(request, policy, log)):
        with attempt:
            if attempt.retry_state.attempt_number == 1:
                raise first
            _not_past_deadline(request)
            return await request.model.backend.acomplete(request.prompt)
    raise AssertionError("unreachable: tenacity re-raises the last error when it stops")


def _retry_worth(request: Request, error: ProviderError) -> bool:
    return error.retryable and request.tries > 1


# Most requests succeed the first time, so the first send is made directly: tenacity, whose set-up costs about as
# much as all the engine's other work for a call, takes over only after a retryable failure.


def send(request: Request, policy: Policy) -> Sent:
    log: list[str] = []
    start = time.perf_counter()
    result: Completion | ProviderError
    with bounded(request.deadline):
        try:
            _not_past_deadline(request)
            result = request.model.backend.complete(request.prompt)
        except ProviderError as first:
            try:
                result = _retried_sync(request, policy, log, first) if _retry_worth(request, first) else first
            except ProviderError as exc:
                result = exc
    return Sent(result, tuple(log), time.perf_counter() - start)


async def asend(request: Request, policy: Policy) -> Sent:
    log: list[str] = []
    start = time.perf_counter()
    result: Completion | ProviderError
    with bounded(request.deadline):
        try:
            _not_past_deadline(request)
            result = await request.model.backend.acomplete(request.prompt)
        except ProviderError as first:
            try:
                result = await _retried_async(request, policy, log, first) if _retry_worth(request, first) else first
            except ProviderError as exc:
                result = exc
    return Sent(result, tuple(log), time.perf_counter() - start)
