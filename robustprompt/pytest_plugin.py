"""The pytest plugin: an `rp_cassette` fixture that replays a test's model calls from a recording.

    def test_classify(rp_cassette):
        run = task.run(review, model="openai:gpt-4.1-mini")

Each test using the fixture has its own cassette, `cassettes/<module>/<test>.json` beside the test module (set
another folder with the `rp_cassette_dir` ini option). Tests replay by default, with no network; record (or
re-record) with `pytest --rp-record` or `ROBUSTPROMPT_RECORD=1`, which calls the real APIs once. A request with no
recording fails the test, even when the code under test catches the error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pluggy import Result

if TYPE_CHECKING:
    from robustprompt.testing._cassette import Cassette

__all__ = ["rp_cassette"]

_RECORD_ENV = "ROBUSTPROMPT_RECORD"
_CALL_PASSED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("robustprompt")
    group.addoption(
        "--rp-record",
        action="store_true",
        default=False,
        help=f"rp_cassette: call the real APIs and rewrite the cassettes instead of replaying ({_RECORD_ENV}=1 too)",
    )
    parser.addini(
        "rp_cassette_dir", "rp_cassette: the cassettes' folder, relative to each test module", default="cassettes"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Result[pytest.TestReport], None]:
    # The fixture's teardown reads this: a miss that already failed the test needs no second report.
    report = (yield).get_result()
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed


def _recording(config: pytest.Config) -> bool:
    return bool(config.getoption("rp_record")) or os.environ.get(_RECORD_ENV, "").lower() in {"1", "true", "yes"}


def _cassette_path(request: pytest.FixtureRequest) -> Path:
    folder = Path(str(request.config.getini("rp_cassette_dir")))
    if not folder.is_absolute():
        folder = request.path.parent / folder
    # The node id after the file tells apart methods of two classes and parametrized cases.
    test = request.node.nodeid.partition("::")[2] or request.node.name
    name = re.sub(r"[^\w.\[\]-]+", "_", test.replace("::", "."))
    return folder / request.path.stem / f"{name}.json"


@pytest.fixture
def rp_cassette(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    """Replays the test's model calls from its cassette, or records them with --rp-record / ROBUSTPROMPT_RECORD=1."""
    # Imported here: robustprompt.testing loads every loopback server, which only these tests should pay for.
    from robustprompt.testing._cassette import cassette

    with cassette(_cassette_path(request), mode="record" if _recording(request.config) else "replay") as active:
        yield active
    if active.misses and request.node.stash.get(_CALL_PASSED, False):
        pytest.fail("\n\n".join(["rp_cassette: a request had no recording", *active.misses]), pytrace=False)
