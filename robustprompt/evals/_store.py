"""The results store: every case result, keyed by task fingerprint, model, case id and UTC date, in SQLite or in
PostgreSQL (`--store postgresql://...` or $ROBUSTPROMPT_STORE), where a team and its CI jobs share one history.

The date is part of the key so that a drift check never passes off yesterday's answer as today's; within a day,
a re-run reads what is stored and calls the model only for the cases still missing. A snapshot copies one day's
results under a name, to serve as a drift baseline for as long as it is kept.

A run with `--batch` keeps its submitted provider batch's handle here until every result of it is stored, so a
killed run polls and collects that batch again instead of submitting (and paying for) a second one.

It also keeps the output modes a server rejected (keyed by the model and the address it is served from, and the
task, with an expiry), so that a CI run does not pay one rejected request per task to learn them again.

Only a model's verdict is kept for reuse (`is_final`): a valid answer, an invalid one, a refusal. A case that
failed before the model answered (a network error, a wrong key, an open circuit) runs again on the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from robustprompt._db import connect, is_url
from robustprompt._errors import ConfigError
from robustprompt._prompt import OutputMode
from robustprompt.evals._results import CaseResult

__all__ = ["STORE_ENV", "SnapshotInfo", "Store", "default_store_path", "is_final", "row_id", "today"]

STORE_ENV = "ROBUSTPROMPT_STORE"
SCHEMA_VERSION = 3  # 2: the downgrades table; 3: the batches table
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
CREATE TABLE IF NOT EXISTS downgrades (
    model_key TEXT NOT NULL, fingerprint TEXT NOT NULL, mode TEXT NOT NULL, learned DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (model_key, fingerprint, mode)
);
CREATE TABLE IF NOT EXISTS batches (
    fingerprint TEXT NOT NULL, model TEXT NOT NULL, date TEXT NOT NULL, handle TEXT NOT NULL,
    PRIMARY KEY (fingerprint, model, date)
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


def default_store_path(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str | Path:
    """$ROBUSTPROMPT_STORE (a file, or a PostgreSQL URL), else .robustprompt/results.sqlite under the current
    directory."""
    configured = (os.environ if env is None else env).get(STORE_ENV)
    if configured and is_url(configured):
        return configured
    return Path(configured) if configured else (cwd or Path.cwd()) / _DEFAULT


def row_id(case_id: str, repeat: int) -> str:
    """The id a result is stored under: its case's, and for the 2nd and later of `--repeat N` runs, the run's
    number after a unit separator (a character no case file's id holds)."""
    return case_id if repeat == 0 else f"{case_id}\x1f{repeat}"


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


class Store:
    """The results store in one SQLite file (`path`) or on a PostgreSQL server (a `postgresql://` URL): the same
    schema, migrations and keys on both. Safe to share between threads and between processes."""

    def __init__(self, path: str | Path) -> None:
        self._db = connect(path, "the results store")
        self.path: str | Path = self._db.where if is_url(path) else Path(path)
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        with self._db.transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)  # idempotent, in one transaction: concurrent first runs cannot clash
            row = next(iter(db.execute("SELECT value FROM meta WHERE key = 'schema_version'")), None)
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise ConfigError(
                    f"the results store {str(self.path)!r} has schema version {row[0]}, newer than this "
                    f"robustprompt understands ({SCHEMA_VERSION}): upgrade robustprompt or use another --store"
                )
            if row is None or int(row[0]) < SCHEMA_VERSION:  # the script above added what a version lacked
                db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = "
                    "excluded.value",
                    (str(SCHEMA_VERSION),),
                )

    def put(self, task: str, fingerprint: str, results: Iterable[CaseResult], *, date: str) -> None:
        """Store results for `date`, replacing any stored for the same case on that day."""
        rows = [
            (fingerprint, r.model, row_id(r.case_id, r.repeat), date, task, json.dumps(r.to_json())) for r in results
        ]
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint, model, date, case_id) "
                "DO UPDATE SET task = excluded.task, result = excluded.result",
                rows,
            )

    def get(self, fingerprint: str, model: str, date: str) -> dict[str, CaseResult]:
        """The results stored for one task, model and day, by `row_id`."""
        rows = self._db.query(
            "SELECT case_id, result FROM results WHERE fingerprint = ? AND model = ? AND date = ?",
            (fingerprint, model, date),
        )
        return {case_id: CaseResult.from_json(json.loads(text)) for case_id, text in rows}

    def dates(self, fingerprint: str, model: str) -> list[str]:
        """The days with stored results for one task and model, oldest first: its history."""
        rows = self._db.query(
            "SELECT DISTINCT date FROM results WHERE fingerprint = ? AND model = ? ORDER BY date", (fingerprint, model)
        )
        return [date for (date,) in rows]

    def downgrades(self, *, now: float, ttl: float) -> dict[tuple[str, str], set[OutputMode]]:
        """The output modes servers rejected, by (model key, task fingerprint), learned within `ttl` seconds of
        `now`: a server upgraded since gets its better mode back once they expire. Expired ones are deleted."""
        with self._db.transaction() as db:
            db.execute("DELETE FROM downgrades WHERE learned < ?", (now - ttl,))
            rows = db.execute("SELECT model_key, fingerprint, mode FROM downgrades")
        learned: dict[tuple[str, str], set[OutputMode]] = {}
        for key, fingerprint, mode in rows:
            with contextlib.suppress(ValueError):  # a mode a later robustprompt knows and this one does not
                learned.setdefault((key, fingerprint), set()).add(OutputMode(mode))
        return learned

    def remember_downgrades(self, learned: Mapping[tuple[str, str], Iterable[OutputMode]], *, now: float) -> None:
        """Keep rejected modes for other processes; one already kept keeps the time it was first learned."""
        rows = [(key, fingerprint, mode.value, now) for (key, fingerprint), modes in learned.items() for mode in modes]
        with self._db.transaction() as db:
            db.executemany("INSERT INTO downgrades VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)

    def batch(self, fingerprint: str, model: str, date: str) -> str | None:
        """The handle of the provider batch submitted for one task, model and day and not yet collected."""
        rows = self._db.query(
            "SELECT handle FROM batches WHERE fingerprint = ? AND model = ? AND date = ?", (fingerprint, model, date)
        )
        return next((handle for (handle,) in rows), None)

    def keep_batch(self, fingerprint: str, model: str, date: str, handle: str) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint, model, date) "
                "DO UPDATE SET handle = excluded.handle",
                (fingerprint, model, date, handle),
            )

    def drop_batch(self, fingerprint: str, model: str, date: str) -> None:
        """Forget a batch once every result of it is stored."""
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM batches WHERE fingerprint = ? AND model = ? AND date = ?", (fingerprint, model, date)
            )

    def snapshot(self, name: str, task: str, fingerprint: str, date: str, results: Sequence[CaseResult]) -> int:
        """Keep exactly these results under `name`, replacing a snapshot of that name for this task; the count.
        An empty set is refused rather than allowed to wipe a baseline."""
        if not results:
            raise ConfigError(f"snapshot {name!r}: no results to keep; the earlier snapshot, if any, is unchanged")
        with self._db.transaction() as db:
            db.execute("DELETE FROM snapshots WHERE name = ? AND fingerprint = ?", (name, fingerprint))
            db.executemany(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(name, fingerprint, r.case_id, r.model, date, task, json.dumps(r.to_json())) for r in results],
            )
        return len(results)

    def snapshot_results(self, name: str, fingerprint: str) -> list[CaseResult]:
        rows = self._db.query(
            "SELECT result FROM snapshots WHERE name = ? AND fingerprint = ? ORDER BY case_id", (name, fingerprint)
        )
        return [CaseResult.from_json(json.loads(text)) for (text,) in rows]

    def snapshots(self, name: str | None = None) -> list[SnapshotInfo]:
        """Every snapshot (or those called `name`), whatever task version they were taken of."""
        query = "SELECT name, task, fingerprint, model, date, COUNT(*) FROM snapshots"
        args: tuple[str, ...] = ()
        if name is not None:
            query, args = query + " WHERE name = ?", (name,)
        # A snapshot has one task, model and date: grouping by them too changes nothing, and PostgreSQL wants it.
        rows = self._db.query(query + " GROUP BY name, fingerprint, task, model, date ORDER BY name, date", args)
        return [SnapshotInfo(name, task, fp, model, date, int(count)) for name, task, fp, model, date, count in rows]
