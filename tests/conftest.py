"""Each test starts with no process-wide memory of model health, rejected output modes, warnings given, handles
resolved by name or hooks (`robustprompt.reset`); the httpx client the loopback tests share (their server and
model fixtures are in tests/loopback.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import settings

import robustprompt as rp

# No per-example deadline: on a shared 2-core machine a slow example is load, not a bug, and speed is measured by
# the scripts in benchmarks/, never by a test.
settings.register_profile("robustprompt", deadline=None)
settings.load_profile("robustprompt")


@pytest.fixture(autouse=True)
def _fresh_process_memory() -> Iterator[None]:
    rp.reset()
    yield
    rp.reset()


def pytest_report_header(config: pytest.Config) -> str:
    from tests.spec_check import SPECS, SPECS_MISSING

    return f"API spec checks: on ({SPECS})" if SPECS else f"API spec checks: off: {SPECS_MISSING}"


PROBE_TEST = "test_embedded_runtime_passes_its_probe"


@pytest.fixture(scope="session")
def _runtime_failure() -> str | None:
    """Why the embedded runtime cannot run here, found in a child process; None when it can."""
    from robustprompt._errors import ConfigError
    from robustprompt._runtime_probe import ensure_runtime
    from robustprompt.adapters.local import smollm2_path

    try:
        ensure_runtime(smollm2_path())
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.fixture(autouse=True)
def _embedded_runtime_usable(request: pytest.FixtureRequest) -> None:
    """A runtime that crashes on this CPU is one failed test (PROBE_TEST) with its message, not a dead run."""
    if request.node.get_closest_marker("local_model") and request.node.name != PROBE_TEST:
        failure = request.getfixturevalue("_runtime_failure")
        if failure:
            pytest.skip(f"the embedded runtime failed its probe ({PROBE_TEST} has the message)")


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c
