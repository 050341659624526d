"""The results store: every case result, keyed by task fingerprint, model, case id and UTC date, in SQLite.

The date is part of the key so that a drift check never passes off yesterday's answer as today's; within a day,
a re-run reads what is stored and calls the model only for the cases still missing. A snapshot copies one day's
results under a name, to serve as a drift baseline for as long as it is kept.

Only a model's verdict is kept for reuse (`is_final`): a valid answer, an invalid one, a refusal. A case that
failed before the model answered (a network error, a wrong key, an open circuit) runs again on the next run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from robustprompt._errors import ConfigError
from robustprompt._sqlite import SqliteFile
from robustprompt.evals._results import CaseResult

__all__ = ["STORE_ENV", "SnapshotInfo", "Store", "default_store_path", "is_final", "today"]

STORE_ENV = "ROBUSTPROMPT_STORE"
SCHEMA_VERSION = 1
_DEFAULT = Path(".robustprompt") / "results.sqlite"
# The model answered: a later run would not learn anything new today by asking again.
_VERDICTS = frozenset({"OutputError", "RefusalError"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    fingerprint TEXT NOT NULL, model TEXT NOT NULL, case_id TEXT NOT NULL, date TEXT NOT NULL,
    task TEXT NOT NULL, result TEXT NOT NULL,
    PRIMARY KEY (fingerprint, model, date, case_id)
);
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT NOT NULL, fingerprint TEXT NOT NULL, case_id TEXT NOT NULL,
    model TEXT NOT NULL, date TEXT NOT NULL, task TEXT NOT NULL, result TEXT NOT NULL,
    PRIMARY KEY (name, fingerprint, case_id)
);
"""


def today() -> str:
    """The store's date for results made now: YYYY-MM-DD in UTC, so every machine agrees on it."""
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def default_store_path(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """$ROBUSTPROMPT_STORE, else .robustprompt/results.sqlite under the current directory."""
    configured = (os.environ if env is None else env).get(STORE_ENV)
    return Path(configured) if configured else (cwd or Path.cwd()) / _DEFAULT


def is_final(result: CaseResult) -> bool:
    """Whether a stored result stands for today, or the case must run again (it failed before any answer)."""
    return result.ok or result.error_kind in _VERDICTS


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    task: str
    fingerprint: str
    model: str
    date: str
    cases: int


class Store(SqliteFile):
    """One SQLite file, safe to share between threads (one connection behind a lock), in WAL mode so that a
    reader in another process does not block a run that is writing."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "the results store")
        self._migrate()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._lock:
            self._db.executescript(_SCHEMA)  # idempotent, so concurrent first runs cannot clash
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise ConfigError(
                    f"the results store {str(self.path)!r} has schema version {row[0]}, newer than this "
                    f"robustprompt understands ({SCHEMA_VERSION}): upgrade robustprompt or use another --store"
                )

    def put(self, task: str, fingerprint: str, results: Iterable[CaseResult], *, date: str) -> None:
        """Store results for `date`, replacing any stored for the same case on that day."""
        rows = [(fingerprint, r.model, r.case_id, date, task, json.dumps(r.to_json())) for r in results]
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)", rows)

    def get(self, fingerprint: str, model: str, date: str) -> dict[str, CaseResult]:
        """The results stored for one task, model and day, by case id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT case_id, result FROM results WHERE fingerprint = ? AND model = ? AND date = ?",
                (fingerprint, model, date),
            ).fetchall()
        return {case_id: CaseResult.from_json(json.loads(text)) for case_id, text in rows}

    def dates(self, fingerprint: str, model: str) -> list[str]:
        """The days with stored results for one task and model, oldest first: its history, for tools and scripts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT date FROM results WHERE fingerprint = ? AND model = ? ORDER BY date",
                (fingerprint, model),
            ).fetchall()
        return [date for (date,) in rows]

    def snapshot(self, name: str, task: str, fingerprint: str, date: str, results: Sequence[CaseResult]) -> int:
        """Keep exactly these results under `name`, replacing a snapshot of that name for this task; the count.
        An empty set is refused rather than allowed to wipe a baseline."""
        if not results:
            raise ConfigError(f"snapshot {name!r}: no results to keep; the earlier snapshot, if any, is unchanged")
        with self._transaction() as db:
            db.execute("DELETE FROM snapshots WHERE name = ? AND fingerprint = ?", (name, fingerprint))
            db.executemany(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(name, fingerprint, r.case_id, r.model, date, task, json.dumps(r.to_json())) for r in results],
            )
        return len(results)

    def snapshot_results(self, name: str, fingerprint: str) -> list[CaseResult]:
        with self._lock:
            rows = self._db.execute(
                "SELECT result FROM snapshots WHERE name = ? AND fingerprint = ? ORDER BY case_id",
                (name, fingerprint),
            ).fetchall()
        return [CaseResult.from_json(json.loads(text)) for (text,) in rows]

    def snapshots(self, name: str | None = None) -> list[SnapshotInfo]:
        """Every snapshot (or those called `name`), whatever task version they were taken of."""
        query = "SELECT name, task, fingerprint, model, date, COUNT(*) FROM snapshots"
        args: tuple[str, ...] = ()
        if name is not None:
            query, args = query + " WHERE name = ?", (name,)
        with self._lock:
            rows = self._db.execute(query + " GROUP BY name, fingerprint ORDER BY name, date", args).fetchall()
        return [SnapshotInfo(*row) for row in rows]
