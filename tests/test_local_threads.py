"""The embedded runtime's thread count: the cores this process may use, or the user's own number."""

from __future__ import annotations

import os

import pytest

from robustprompt._errors import ConfigError
from robustprompt.adapters.local import threads


def test_the_default_is_the_cores_this_process_may_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBUSTPROMPT_LOCAL_THREADS", raising=False)
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # not on macOS
    assert threads() == allowed


def test_the_environment_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTPROMPT_LOCAL_THREADS", " 1 ")
    assert threads() == 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_value_names_the_variable_and_the_fix(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ROBUSTPROMPT_LOCAL_THREADS", value)
    with pytest.raises(ConfigError, match=r"ROBUSTPROMPT_LOCAL_THREADS must be a whole number >= 1.*unset it"):
        threads()
