"""Each test starts with no process-wide memory of model health, rejected output modes or warnings given."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from robustprompt import _engine, _lifecycle
from robustprompt._breaker import breakers


def _forget() -> None:
    breakers.reset()
    _engine._rejected_modes.clear()
    _lifecycle._warned.clear()


@pytest.fixture(autouse=True)
def _fresh_process_memory() -> Iterator[None]:
    _forget()
    yield
    _forget()
