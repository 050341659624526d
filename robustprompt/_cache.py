"""The response cache: validated outputs kept in SQLite, so a repeated call costs nothing.

```python
cache = rp.Cache(".robustprompt/cache.sqlite", ttl=dt.timedelta(days=7))
classify.run(review, model="openai:gpt-4.1-mini", cache=cache)   # asks the model once, then reads the cache
```

Opt-in: nothing is cached unless a call is given a cache. Setting ROBUSTPROMPT_NO_CACHE=1 turns every cache off
(no reads, no writes) without touching code: to check a CI run against the live model, or to rule the cache out.

An entry is keyed by a hash of everything that shapes the answer: the task's fingerprint (instructions, schemas,
examples), the rendering configuration the call used (an adapted one, or the profile's default), the model and the
address it is served from (`Model.key`), the sampling settings, a forced output mode and the input. A changed task
therefore never reads an old task's answers. Only validated outputs are stored, under the model that gave them (a
fallback's answer is not served as the first model's). An output read back is validated again
against the task (a check is code: it may have changed under the same name): a row that no longer validates, or
cannot be read, is a miss, never an answer. Neither the input nor any key is stored: only the output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustprompt._completion import Usage
from robustprompt._errors import ConfigError
from robustprompt._prompt import OutputMode
from robustprompt._run import Attempt, Run
from robustprompt._sqlite import SqliteFile

if TYPE_CHECKING:
    from robustprompt._model import Model
    from robustprompt._task import TaskDeclaration

__all__ = ["CACHED_NOTE", "NO_CACHE_ENV", "Cache", "enabled"]

_log = logging.getLogger("robustprompt")

NO_CACHE_ENV = "ROBUSTPROMPT_NO_CACHE"
CACHED_NOTE = "served from cache"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, mode TEXT NOT NULL, output TEXT NOT NULL, stored REAL NOT NULL
)
"""


def enabled(cache: Cache | None, env: Mapping[str, str] | None = None) -> Cache | None:
    """`cache`, unless ROBUSTPROMPT_NO_CACHE is set (to anything but "" or "0")."""
    if cache is None:  # the common case: no environment read on every call
        return None
    switch = (os.environ if env is None else env).get(NO_CACHE_ENV, "")
    return None if switch not in ("", "0") else cache


def _key(
    task: TaskDeclaration[Any, Any], model: Model, mode: OutputMode | None, configuration: str, input_json: str
) -> str:
    settings = model.settings  # the timeout and response size limit do not shape the answer
    shape = [
        task.fingerprint,
        configuration,
        model.key,
        settings.temperature,
        settings.max_output_tokens,
        settings.seed,
        None if mode is None else mode.value,
        input_json,
    ]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()


def _seconds(ttl: float | dt.timedelta | None) -> float | None:
    seconds = ttl.total_seconds() if isinstance(ttl, dt.timedelta) else ttl
    if seconds is not None and seconds <= 0:
        raise ConfigError(f"Cache ttl must be > 0 seconds, got {seconds}; leave it None for entries that never expire")
    return seconds


class Cache(SqliteFile):
    """Validated outputs in one SQLite file, shared safely by threads (and, in WAL mode, by processes).

    `ttl` (seconds or a timedelta): how long an entry is served; None keeps entries until the task, model,
    settings or input change. `clock` gives the time in seconds (tests inject their own).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        ttl: float | dt.timedelta | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, "the response cache")
        self.ttl = _seconds(ttl)
        self._clock = clock
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        import sqlite3

        try:
            self._db.execute("PRAGMA synchronous=NORMAL")  # a power cut may lose the last entries, never the file
            self._db.execute(_SCHEMA)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version <= _SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise self._unopenable(exc) from exc
        if version > _SCHEMA_VERSION:
            raise ConfigError(
                f"the response cache {str(self.path)!r} was written by a newer robustprompt (schema {version}): "
                "upgrade robustprompt or use another file"
            )

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r}, ttl={self.ttl!r})"

    def get(
        self,
        task: TaskDeclaration[Any, Any],
        model: Model,
        mode: OutputMode | None,
        configuration: str,
        input_json: str,
    ) -> Run[Any] | None:
        """The Run of a stored answer still valid for `task`, or None. `mode` is the mode the call forces, if any;
        `configuration` the key of the rendering configuration the call uses."""
        started = time.perf_counter()
        rows = self._execute(
            "read",
            "SELECT model, mode, output, stored FROM answers WHERE key = ?",
            (_key(task, model, mode, configuration, input_json),),
        )
        run = self._served(task, *rows[0]) if rows else None
        if run is not None:
            run.latency = time.perf_counter() - started
        return run

    def _served(
        self, task: TaskDeclaration[Any, Any], name: str, mode: str, text: str, stored: float
    ) -> Run[Any] | None:
        """The Run for a stored row, or None when it has expired or is no longer a valid output of `task`."""
        try:
            expired = self.ttl is not None and self._clock() - stored >= self.ttl
            value = json.loads(text)
            answer = Attempt(1, name, OutputMode(mode), raw=text, usage=Usage(), cost=0.0)
            when = dt.datetime.fromtimestamp(stored, dt.timezone.utc).isoformat(timespec="seconds")
        except (ValueError, TypeError, OverflowError):  # a damaged row: bad JSON, an unknown mode, a bad time
            return None
        if expired:
            return None
        output, errors = task.validator.validate(value)
        if errors:
            return None
        run: Run[Any] = Run(task.name, task.fingerprint, name, attempts=[answer], output=output)
        run.notes.append(f"{CACHED_NOTE} (stored {when})")
        return run

    def put(
        self,
        task: TaskDeclaration[Any, Any],
        model: Model,
        mode: OutputMode | None,
        configuration: str,
        input_json: str,
        run: Run[Any],
    ) -> None:
        """Store the output of a successful `run`, answered by `model` rendered as `configuration` (its key)."""
        text = json.dumps(task.output_record(run.output), ensure_ascii=False, sort_keys=True)
        answered = run.mode or OutputMode.PROMPTED
        row = (_key(task, model, mode, configuration, input_json), model.name, answered.value, text, self._clock())
        self._execute("write", "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)", row)

    def _execute(self, doing: str, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """The rows `sql` gives; none when the file fails (a cache that fails only misses: the call goes on)."""
        import sqlite3

        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            _log.warning("robustprompt: could not %s the response cache %s: %s", doing, self.path, exc)
            return []
