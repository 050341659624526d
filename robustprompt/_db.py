"""The SQL database under the results store: a SQLite file (the embedded default), or a PostgreSQL server a team
and its CI share (`postgresql://...`, through psycopg: `pip install 'robustprompt[postgres]'`).

Both take the same SQL: `?` placeholders (turned into psycopg's `%s`), `INSERT ... ON CONFLICT`, and types both
read alike (TEXT, DOUBLE PRECISION). A connection is shared by threads behind one lock; every write is one
transaction, so two processes writing at once each keep all they wrote.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from robustprompt._errors import ConfigError
from robustprompt._sqlite import SqliteFile

if TYPE_CHECKING:
    import sqlite3

__all__ = ["Database", "SQLite", "connect", "is_url", "redacted"]

_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
_PASSWORD = re.compile(r"^(postgres(?:ql)?://[^:/@]*):[^@]*@", re.IGNORECASE)
_INSTALL = "pip install 'robustprompt[postgres]'"

Row = tuple[Any, ...]


class Executor(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Database(Protocol):
    where: str  # the file or the URL, its password masked: safe to print

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    def transaction(self) -> Any: ...  # a context manager yielding an Executor

    def close(self) -> None: ...


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and bool(_URL.match(location))


def redacted(url: str) -> str:
    """The URL with its password, if any, replaced by ***."""
    return _PASSWORD.sub(r"\1:***@", url)


def connect(location: str | Path, what: str) -> Database:
    """The database at `location`: a PostgreSQL URL, else a SQLite file path. `what` names it in errors."""
    return _Postgres(str(location), what) if is_url(location) else SQLite(Path(location), what)


class SQLite(SqliteFile):
    """A SQLite file (`SqliteFile`: WAL mode, one connection behind a lock) with the queries and transactions the
    store runs on either database."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(path, what)
        self.where = str(self.path)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteExecutor(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


class _SQLiteExecutor:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return self._db.execute(sql, args).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)


class _Postgres:
    def __init__(self, url: str, what: str) -> None:
        self.where = redacted(url)
        try:
            import psycopg
        except ImportError:
            raise ConfigError(f"{what} {self.where!r} is a PostgreSQL URL, which needs psycopg: {_INSTALL}") from None
        self._lock = threading.Lock()
        try:
            self._db: Any = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            # psycopg's message names the host and user, never the password.
            raise ConfigError(f"cannot open {what} {self.where!r}: {str(exc).strip()}") from exc

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return list(self._db.execute(_pg(sql), args).fetchall())

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._lock, self._db.transaction():
            yield _PostgresExecutor(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _PostgresExecutor:
    def __init__(self, db: Any) -> None:
        self._db = db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        cursor = self._db.execute(_pg(sql), args)
        return list(cursor.fetchall()) if cursor.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._db.cursor().executemany(_pg(sql), rows)


def _pg(sql: str) -> str:
    # The stores' SQL holds no literal "?" or "%": placeholders are the only ones.
    return sql.replace("?", "%s")
