"""What the process remembers between calls, in one place: `robustprompt.reset()` forgets it.

- breakers: each model's circuit (failures, cooldowns, models found dead or retired), timed by `clock`;
- demotions: output modes a server rejected, or ignored repeatedly, per model and task (the next call starts
  lower, until the demotion lapses), timed by `clock`;
- warned retirements: models whose retirement warning was given (once per process);
- resolved names: the handle a model name resolved to, so its HTTP pools are reused (each handle keeps its own
  async client per event loop);
- embedders: the handles given to rank examples by (`nearest`), by name, so a configuration naming one finds it;
- hooks: what `rp.hooks.add` registered;
- registered models: the profiles `rp.register_model` added to the catalog (kept by the catalog itself);
- routed clients: the clients a cassette routes every HTTP call through while its `with` block runs.

Process-wide rather than per call, because that is what they are for: a model found dead in one thread must be
skipped by the next call in any thread. Users' tests isolate themselves with `reset()`, the way this project's own
tests do before and after each test.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from robustprompt import _catalog
from robustprompt._breaker import Breakers
from robustprompt._demotions import Demotions

if TYPE_CHECKING:
    from robustprompt._events import Hook
    from robustprompt._model import Model

__all__ = ["Clock", "ProcessState", "reset", "state"]

Clock = Callable[[], float]
_RESOLVED_MAX = 64  # handles kept by name; the least recently used goes first


class ProcessState:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.breakers = Breakers(lambda: self.clock())  # read late: `reset(clock=...)` takes effect at once
        self.demotions = Demotions(lambda: self.clock())
        self.warned_retirements: set[str | tuple[str, str]] = set()  # a name, or ("replaced", name)
        self.resolved: collections.OrderedDict[tuple[str, int], Model] = collections.OrderedDict()
        self.embedders: dict[str, Model] = {}
        self.hooks: tuple[Hook, ...] = ()  # replaced, never mutated: calls read it without the lock
        # Innermost last. Process-wide rather than a context variable, so that calls from threads the test did not
        # start (a web framework's test client, an executor) cannot slip past a replay to the network.
        self.routed_clients: list[tuple[httpx.Client, httpx.AsyncClient]] = []

    def resolved_model(self, key: tuple[str, int], build: Callable[[], Model]) -> Model:
        """The handle resolved for `key` before, else `build()`'s, kept for the next call."""
        with self.lock:
            found = self.resolved.get(key)
            if found is not None:
                self.resolved.move_to_end(key)
                return found
        built = build()  # outside the lock: building may read files or the environment
        with self.lock:
            kept = self.resolved.setdefault(key, built)
            self.resolved.move_to_end(key)
            while len(self.resolved) > _RESOLVED_MAX:
                self.resolved.popitem(last=False)
        return kept

    def reset(self, clock: Clock | None = None) -> None:
        with self.lock:
            self.clock = clock or time.monotonic  # a fake clock a test injected ends with the next reset
            self.warned_retirements.clear()
            self.resolved.clear()
            self.embedders.clear()
            self.hooks = ()
        self.breakers.reset()
        self.demotions.clear()
        _catalog.forget_registered()


state = ProcessState()


def reset(*, clock: Clock | None = None) -> None:
    """Forget what the process remembers between calls: circuit breakers, demoted output modes, retirement
    warnings given, handles resolved by name, embedders handed to adapt, registered hooks, and the models added
    with `register_model` (the shipped catalog shows again: register them anew after a reset). `clock` (seconds,
    monotonic) times the breakers' cooldowns and the demotions' lapse from now on, so a test can move time forward
    without sleeping; without it, the real clock (`time.monotonic`) takes over again.

    Left as it is: the routes of a cassette whose `with` block is still open (dropping them would send a replayed
    test to the network).
    """
    state.reset(clock)
