"""Each test starts with no process-wide memory of model health or rejected output modes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from robustprompt import _engine
from robustprompt._breaker import breakers


@pytest.fixture(autouse=True)
def _fresh_process_memory() -> Iterator[None]:
    breakers.reset()
    _engine._rejected_modes.clear()
    yield
    breakers.reset()
    _engine._rejected_modes.clear()
