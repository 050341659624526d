"""Observability hooks: what every call tells the code watching it.

```python
class Log(rp.Hook):
    def attempt_end(self, event: rp.AttemptEnd) -> None:
        print(event.call.task.name, event.attempt.model, event.attempt.ok)

rp.hooks.add(Log())            # every call from now on, in every thread
with rp.hooks.added(Log()):    # only while the block runs (tests)
    ...
```

Hooks are registered process-wide rather than passed per call: observability is wired once, at start-up, and must
see every call, including those made inside batches, pipelines or the robustprompt command, which the app does not
make itself. A hook runs inline, in the caller's thread or task, so it sees the caller's context (OpenTelemetry's
current span, a request id in a contextvar). A hook that raises is logged on the "robustprompt" logger and skipped:
watching a call must never change its outcome.

When OpenTelemetry's API has been imported (an app that traces has always imported it to configure its provider),
each call also emits spans following the GenAI semantic conventions (see `_otel`). Otherwise OpenTelemetry is not
even imported.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from robustprompt._errors import ProviderError
from robustprompt._events import AttemptEnd, AttemptStart, CallInfo, Hook, RunEnd
from robustprompt._state import state

if TYPE_CHECKING:
    from robustprompt._completion import Completion
    from robustprompt._model import Model
    from robustprompt._prompt import OutputMode
    from robustprompt._run import Attempt, Run

__all__ = ["AttemptEnd", "AttemptStart", "CallInfo", "Hook", "Hooks", "Notifier", "RunEnd", "hooks"]

_log = logging.getLogger("robustprompt")
E = TypeVar("E")
H = TypeVar("H", bound="Hook")


class Hooks:
    """The hooks every call tells, process-wide (`rp.hooks`). Safe to change from any thread."""

    # The tuple itself is process state (`_state`), so that `robustprompt.reset()` forgets it with the rest.

    def add(self, hook: Hook) -> None:
        with state.lock:
            state.hooks = (*state.hooks, hook)

    def remove(self, hook: Hook) -> None:
        """Stop telling `hook`; a call already running tells it until it ends."""
        with state.lock:
            state.hooks = tuple(h for h in state.hooks if h is not hook)

    @contextlib.contextmanager
    def added(self, hook: H) -> Iterator[H]:
        """`hook` for the duration of the block (for every thread, as with `add`)."""
        self.add(hook)
        try:
            yield hook
        finally:
            self.remove(hook)

    def notifier(self, call: CallInfo) -> Notifier:
        """The hooks one call tells, fixed when it starts so that no hook sees half a call."""
        return Notifier(call, (*_tracing(), *state.hooks))


def _tracing() -> tuple[Hook, ...]:
    # Checked on every call, so tracing configured after the first call still takes effect; costs a dict lookup.
    if "opentelemetry.trace" not in sys.modules:
        return ()
    from robustprompt._otel import tracing_hook

    return (tracing_hook,)


def _safely(method: Callable[[E], None], event: E) -> None:
    try:
        method(event)
    except Exception:
        _log.exception(
            "robustprompt: hook %s raised; ignored, the call goes on", getattr(method, "__qualname__", method)
        )


class Notifier:
    """Tells one call's events to its hooks, each guarded. Ends are told in reverse order, so hooks nest like
    context managers: tracing comes first, and the other hooks see its spans as current."""

    def __init__(self, call: CallInfo, targets: tuple[Hook, ...]) -> None:
        self.call = call
        self._targets = targets

    def run_start(self) -> None:
        for hook in self._targets:
            _safely(hook.run_start, self.call)

    def attempt_start(self, number: int, model: Model, mode: OutputMode) -> None:
        if not self._targets:  # no hook and no tracing: build no event
            return
        event = AttemptStart(self.call, number, model, mode)
        for hook in self._targets:
            _safely(hook.attempt_start, event)

    def attempt_end(self, model: Model, attempt: Attempt, result: Completion | ProviderError) -> None:
        if not self._targets:
            return
        if isinstance(result, ProviderError):
            event = AttemptEnd(self.call, model, attempt, None, result)
        else:
            event = AttemptEnd(self.call, model, attempt, result, None)
        for hook in reversed(self._targets):
            _safely(hook.attempt_end, event)

    def run_end(self, run: Run[Any], error: BaseException | None, *, cached: bool = False) -> None:
        if not self._targets:
            return
        event = RunEnd(self.call, run, error, cached)
        for hook in reversed(self._targets):
            _safely(hook.run_end, event)


hooks = Hooks()
