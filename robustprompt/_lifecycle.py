"""Retirement warnings from the catalog's dates: once per model per process, naming the replacement and the
command that proves it before the old model goes away."""

from __future__ import annotations

import datetime as dt
import sys
import warnings

from robustprompt._profile import ModelProfile
from robustprompt._state import state

__all__ = ["ModelRetirementWarning", "warn_replaced", "warn_retirement"]

_NOTICE = dt.timedelta(days=180)  # announced retirements further out than this are not worth a warning yet


class ModelRetirementWarning(UserWarning):
    """A model in use is retired, or has a retirement date."""


def _message(profile: ModelProfile, today: dt.date) -> str | None:
    retired = profile.retired
    if retired is None or retired - today > _NOTICE:
        return None
    when = f"was retired on {retired}" if retired <= today else f"retires on {retired}"
    message = f"{profile.name} {when}"
    if profile.replacement:
        message += (
            f"; its replacement is {profile.replacement}. Prove it on your cases first: robustprompt migrate "
            f"TASK --cases FILE --from {profile.name} --to {profile.replacement}"
        )
    return message


def warn_retirement(profile: ModelProfile, today: dt.date | None = None) -> None:
    if profile.retired is None:  # the common case: no lock, no work
        return
    message = _message(profile, today or dt.date.today())
    if message is None:
        return
    with state.lock:
        if profile.name in state.warned_retirements:
            return
        state.warned_retirements.add(profile.name)
    warnings.warn(message, ModelRetirementWarning, stacklevel=_callers_level())


def warn_replaced(retired: str, replacement: str) -> None:
    """Once per model per process: its calls go to `replacement` now (`Policy(on_retired="replace")`)."""
    with state.lock:
        if ("replaced", retired) in state.warned_retirements:
            return
        state.warned_retirements.add(("replaced", retired))
    message = (
        f"{retired} is gone (the server answered not found): its calls go to its replacement {replacement}, as "
        f"Policy(on_retired='replace') allows. Prove it on your cases: robustprompt migrate TASK --cases FILE "
        f"--from {retired} --to {replacement}"
    )
    warnings.warn(message, ModelRetirementWarning, stacklevel=_callers_level())


def _callers_level() -> int:
    """The stack level of the first frame outside robustprompt, so the warning points at the app's own line."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("robustprompt"):
        frame, level = frame.f_back, level + 1
    return level
