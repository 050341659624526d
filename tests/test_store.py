"""The SQLite results store: keyed by day, snapshots that stay put, a schema version, safe across threads."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import robustprompt as rp
from robustprompt._errors import ConfigError
from robustprompt.evals._results import CaseResult
from robustprompt.evals._store import SCHEMA_VERSION, Store, default_store_path, is_final, today

FP = "f" * 64


def result(case_id: str, *, model: str = "m:1", answer: str = "yes", error_kind: str | None = None) -> CaseResult:
    ok = error_kind is None
    return CaseResult(
        case_id=case_id,
        model=model,
        ok=ok,
        output={"answer": answer} if ok else None,
        expected=None,
        error_kind=error_kind,
        error=None if ok else "it failed",
        first_valid=ok,
        attempts=1,
        repairs=0,
        raw=answer,
        latency=0.5,
        input_tokens=3,
        output_tokens=1,
        cost=None,
        mode="prompted",
        created="2025-01-01T00:00:00+00:00",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "sub" / "results.sqlite") as opened:
        yield opened


def test_results_come_back_for_their_day_only(store: Store) -> None:
    store.put("t", FP, [result("1"), result("2")], date="2025-01-01")
    assert store.get(FP, "m:1", "2025-01-01") == {"1": result("1"), "2": result("2")}
    assert store.get(FP, "m:1", "2025-01-02") == {}  # yesterday's answer is never today's
    assert store.get(FP, "m:2", "2025-01-01") == {}
    assert store.get("0" * 64, "m:1", "2025-01-01") == {}


def test_a_result_replaces_the_same_case_on_the_same_day(store: Store) -> None:
    store.put("t", FP, [result("1", answer="yes")], date="2025-01-01")
    store.put("t", FP, [result("1", answer="no")], date="2025-01-01")
    assert store.get(FP, "m:1", "2025-01-01")["1"].output == {"answer": "no"}


def test_history_lists_the_days_in_order(store: Store) -> None:
    for date in ("2025-03-01", "2025-01-01", "2025-02-01"):
        store.put("t", FP, [result("1")], date=date)
    assert store.dates(FP, "m:1") == ["2025-01-01", "2025-02-01", "2025-03-01"]
    assert store.dates(FP, "m:2") == []


def test_a_snapshot_keeps_exactly_the_results_given(store: Store) -> None:
    kept = [result("1", answer="yes"), result("2")]
    store.put("t", FP, [*kept, result("3")], date="2025-01-01")
    assert store.snapshot("base", "t", FP, "2025-01-01", kept) == 2  # not case 3, stored that day too
    store.put("t", FP, [result("1", answer="no")], date="2025-01-01")  # later runs do not move it
    assert [r.output for r in store.snapshot_results("base", FP)] == [{"answer": "yes"}, {"answer": "yes"}]
    [info] = store.snapshots()
    assert (info.name, info.task, info.model, info.date, info.cases) == ("base", "t", "m:1", "2025-01-01", 2)


def test_taking_a_snapshot_again_replaces_it(store: Store) -> None:
    store.snapshot("base", "t", FP, "2025-01-01", [result("1"), result("2")])
    assert store.snapshot("base", "t", FP, "2025-01-02", [result("3")]) == 1
    assert [r.case_id for r in store.snapshot_results("base", FP)] == ["3"]


def test_snapshots_are_per_task_version(store: Store) -> None:
    other = "0" * 64
    store.snapshot("base", "t", FP, "2025-01-01", [result("1")])
    store.snapshot("base", "t", other, "2025-01-01", [result("1"), result("2")])
    assert len(store.snapshot_results("base", FP)) == 1
    assert sorted(s.cases for s in store.snapshots("base")) == [1, 2]
    assert store.snapshots("nope") == []


def test_a_snapshot_of_nothing_is_refused_and_keeps_the_old_one(store: Store) -> None:
    store.snapshot("base", "t", FP, "2025-01-01", [result("1")])
    with pytest.raises(ConfigError, match="no results to keep"):
        store.snapshot("base", "t", FP, "2025-01-02", [])
    assert [r.case_id for r in store.snapshot_results("base", FP)] == ["1"]


@pytest.mark.parametrize(
    ("kind", "final"),
    [
        (None, True),
        ("OutputError", True),
        ("RefusalError", True),
        ("RateLimitError", False),
        ("AuthError", False),
        ("ProviderConnectionError", False),
        ("ConfigError", False),
    ],
)
def test_only_the_models_verdicts_are_final(kind: str | None, final: bool) -> None:
    assert is_final(result("1", error_kind=kind)) is final


def test_the_store_is_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    db.close()
    Store(path).close()  # opening again keeps it as it is


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(rp.ConfigError, match="newer than this robustprompt"):
        Store(path)


def test_a_store_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(rp.ConfigError, match="cannot open the results store"):
        Store(tmp_path / "blocker" / "r.sqlite")


def test_threads_can_share_one_store(store: Store) -> None:
    def write(worker: int) -> None:
        for i in range(20):
            store.put("t", FP, [result(f"{worker}-{i}")], date="2025-01-01")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.get(FP, "m:1", "2025-01-01")) == 80


def test_the_default_path_is_under_the_project_unless_the_environment_says(tmp_path: Path) -> None:
    assert default_store_path({}, tmp_path) == tmp_path / ".robustprompt" / "results.sqlite"
    assert default_store_path({"ROBUSTPROMPT_STORE": "/x/y.sqlite"}, tmp_path) == Path("/x/y.sqlite")


def test_today_is_an_iso_date() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", today())
