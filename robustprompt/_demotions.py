"""Output modes a model is not trusted with for one task, remembered for the process, and for a while only.

A server that rejects a mode (or a task's schema in it) says so: one rejection demotes the mode. An answer that
needed repairs in a constrained mode only suggests the server ignored the mode (a clean answer wrapped in a code
fence is one repair): `IGNORED_TO_DEMOTE` such answers in a row are needed, and a clean one clears the count.
Either demotion lapses after `DEMOTION_SECONDS`, so a server fixed since, or one bad hour, does not decide the
mode for the rest of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from robustprompt._prompt import OutputMode

__all__ = ["DEMOTION_SECONDS", "IGNORED_TO_DEMOTE", "Demotions"]

IGNORED_TO_DEMOTE = 3
DEMOTION_SECONDS = 600.0

_Key = tuple[str, str]  # (model key, task fingerprint)


class Demotions:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._until: dict[_Key, dict[OutputMode, float]] = {}
        self._ignored: dict[tuple[_Key, OutputMode], int] = {}
        self._refused: set[tuple[_Key, OutputMode]] = set()  # demoted by the server's own word, not by suspicion
        self._lock = threading.Lock()

    def demoted(self, key: _Key) -> set[OutputMode]:
        """The modes not to start with for `key` now."""
        with self._lock:
            until = self._until.get(key)
            if not until:
                return set()
            now = self._clock()
            for mode in [m for m, end in until.items() if end <= now]:
                del until[mode]  # lapsed: the next call tries the mode again
            return set(until)

    def rejected(self, key: _Key, mode: OutputMode) -> None:
        """The server refused `mode` for this task: demote it at once."""
        with self._lock:
            self._refused.add((key, mode))
            self._demote(key, mode)

    def refusals(self) -> dict[_Key, frozenset[OutputMode]]:
        """The demotions a server's rejection made and that have not lapsed: what another process may start from."""
        with self._lock:
            refused = sorted(self._refused, key=repr)
        found: dict[_Key, set[OutputMode]] = {}
        for key, mode in refused:
            if mode in self.demoted(key):
                found.setdefault(key, set()).add(mode)
        return {key: frozenset(modes) for key, modes in found.items()}

    def ignored(self, key: _Key, mode: OutputMode) -> None:
        """An answer in `mode` needed repairs: one more sign the server ignores the mode."""
        with self._lock:
            count = self._ignored.get((key, mode), 0) + 1
            if count >= IGNORED_TO_DEMOTE:
                self._ignored.pop((key, mode), None)
                self._demote(key, mode)
            else:
                self._ignored[(key, mode)] = count

    def followed(self, key: _Key, mode: OutputMode) -> None:
        """A clean answer in `mode`: the server does follow it."""
        if (key, mode) in self._ignored:  # read without the lock first: the common case has nothing to clear
            with self._lock:
                self._ignored.pop((key, mode), None)

    def clear(self) -> None:
        with self._lock:
            self._until.clear()
            self._ignored.clear()
            self._refused.clear()

    def _demote(self, key: _Key, mode: OutputMode) -> None:
        self._until.setdefault(key, {})[mode] = self._clock() + DEMOTION_SECONDS
