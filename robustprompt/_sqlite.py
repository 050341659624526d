"""What the response cache and the results store share: one SQLite connection per file, behind a lock (threads
share it), in WAL mode so that a reader in another process does not block a writer."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from robustprompt._errors import ConfigError

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SqliteFile"]

F = TypeVar("F", bound="SqliteFile")


class SqliteFile:
    """An open SQLite file; `what` names it in errors ("the response cache")."""

    def __init__(self, path: str | Path, what: str) -> None:
        import sqlite3  # here, not at import: most programs never open a cache or a store

        self.path = Path(path)
        self._what = what
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db: sqlite3.Connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._unopenable(exc) from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            self._db.close()
            raise self._unopenable(exc) from exc

    def _unopenable(self, exc: Exception) -> ConfigError:
        return ConfigError(f"cannot open {self._what} {str(self.path)!r}: {exc}")

    def __enter__(self: F) -> F:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()
