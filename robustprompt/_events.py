"""What a call tells the code watching it: the events, and the `Hook` base class that receives them.

Apart from the registry (`_hooks`) so that everything that watches calls (the registry, the tracing in `_otel`)
imports these from below, and neither imports the other for them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustprompt._completion import Completion
    from robustprompt._errors import ProviderError
    from robustprompt._model import Model
    from robustprompt._policy import Policy
    from robustprompt._prompt import OutputMode
    from robustprompt._run import Attempt, Run
    from robustprompt._task import TaskDeclaration

__all__ = ["AttemptEnd", "AttemptStart", "CallInfo", "Hook", "RunEnd"]

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """The call an event belongs to: the same object in every event of one call. `model` is the model asked
    first (fallbacks may answer instead); `id` is unique in the process."""

    task: TaskDeclaration[Any, Any]
    model: Model
    policy: Policy
    id: int = field(default_factory=lambda: next(_ids))


@dataclass(frozen=True, slots=True)
class AttemptStart:
    """A request is about to go to `model` (transport retries of it included)."""

    call: CallInfo
    number: int
    model: Model
    mode: OutputMode


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """An attempt ended: `attempt` is its record in the Run. `response` is what the model answered, or `error` what
    the provider failed with."""

    call: CallInfo
    model: Model
    attempt: Attempt
    response: Completion | None
    error: ProviderError | None


@dataclass(frozen=True, slots=True)
class RunEnd:
    """A call ended: `run` has its output, or `error` is what the caller gets instead (a RobustPromptError, or a
    cancellation or interrupt that stopped the call). `cached` when the answer came from the response cache."""

    call: CallInfo
    run: Run[Any]
    error: BaseException | None
    cached: bool = False


class Hook:
    """Watches calls. Override the events you need; each does nothing by default. Keep hooks quick: they run inline."""

    def run_start(self, call: CallInfo) -> None:
        """A call started (before the response cache is read)."""

    def attempt_start(self, event: AttemptStart) -> None:
        """A request is about to be sent."""

    def attempt_end(self, event: AttemptEnd) -> None:
        """A request was answered (or failed) and the answer checked."""

    def run_end(self, event: RunEnd) -> None:
        """A call ended, with an output or an error."""
