"""Rate limits that hold across the workers of a Ray cluster, not per worker.

A provider limits a key's requests and tokens per minute whoever sends them, so `--rpm 600` on four workers must
mean 600 in all, not 600 each. Each limit is one token bucket, kept by one named Ray actor that every worker asks
for permits. Asking per request would put a round trip to the actor before every call, so a worker leases a block
of permits at a time and spends it locally (`LeasedBucket`, behind the same `Permits` protocol as the in-process
buckets, so the engine paces every request it sends, re-asks and retries included, the same way).

The actor never sleeps and keeps no queue: a lease is granted at once, together with how long its holder must wait
before spending it, and the debt it leaves is what later leases wait for (`Reservations`). Leases are therefore
served in arrival order, and only the actor's clock counts: the workers sleep the durations it gives.

Bound. With rate r per second, W workers and blocks of b = max(1, r * LEASE_SECONDS / W) permits, the bucket holds
at most one block, and each worker holds at most one block it has not spent yet. In any window of T seconds at
most r * T + (W + 1) * b permits are spent: with LEASE_SECONDS = 0.5, less than a second's worth of the rate
above r * T, whatever T. Leases are spent one round trip after they are granted; a varying round trip can move a
spend by its variation, no more. A token estimate larger than a block is leased whole and leaves the bucket in
debt, as the in-process bucket does. `benchmarks/ray_scale.py` measures what a server sees.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from robustprompt._batch import limited_by
from robustprompt._model import Model

__all__ = ["LEASE_SECONDS", "LeasedBucket", "Reservations", "SharedLimits", "block_size"]

LEASE_SECONDS = 0.5  # a block is this long's share of the rate, split between the workers
REQUESTS, TOKENS = "requests", "tokens"

Reserve = Callable[[str, float], Awaitable[float]]  # (limit, amount) -> seconds to wait before spending it


def block_size(per_minute: float, workers: int) -> float:
    """Permits a worker leases at a time: its share of LEASE_SECONDS of the rate, at least one."""
    return max(1.0, per_minute / 60.0 * LEASE_SECONDS / workers)


@dataclasses.dataclass
class _Level:
    rate: float  # permits a second
    capacity: float
    level: float
    stamp: float
    granted: float = 0.0


class Reservations:
    """Token buckets that grant a lease at once and say how long its holder waits (no I/O; `now` is given).

    A lease of `amount` waits until the bucket holds `min(amount, capacity)`, then takes all of it: a lease larger
    than the bucket leaves it in debt, so any size gets through and the long-run rate holds."""

    def __init__(self, limits: dict[str, tuple[float, float]], now: float) -> None:
        """`limits`: name -> (permits a minute, capacity). Each bucket starts full."""
        self._buckets = {name: _Level(rate / 60.0, cap, cap, now) for name, (rate, cap) in limits.items()}

    def reserve(self, name: str, amount: float, now: float) -> float:
        bucket = self._buckets[name]
        bucket.level = min(bucket.capacity, bucket.level + (now - bucket.stamp) * bucket.rate)
        bucket.stamp = now
        wait = max(0.0, (min(amount, bucket.capacity) - bucket.level) / bucket.rate)
        bucket.level -= amount
        bucket.granted += amount
        return wait

    def granted(self) -> dict[str, float]:
        """Permits leased so far, by limit."""
        return {name: bucket.granted for name, bucket in self._buckets.items()}


class _Limiter:
    """The Ray actor around `Reservations`, timed by its own clock."""

    def __init__(self, limits: dict[str, tuple[float, float]]) -> None:
        self._reservations = Reservations(limits, time.monotonic())

    def reserve(self, name: str, amount: float) -> float:
        return self._reservations.reserve(name, amount, time.monotonic())

    def granted(self) -> dict[str, float]:
        return self._reservations.granted()


class LeasedBucket:
    """One worker's side of a shared bucket: it spends a local allowance and leases the next block when that runs
    out. One lease at a time per worker (the lock): the worker's calls wait for it in arrival order."""

    def __init__(
        self, reserve: Reserve, name: str, block: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self._reserve = reserve
        self._name = name
        self._block = block
        self._sleep = sleep
        self._allowance = 0.0
        self._lock = asyncio.Lock()

    async def take(self, cost: float) -> None:
        async with self._lock:
            if self._allowance < cost:
                amount = max(self._block, cost - self._allowance)
                wait = await self._reserve(self._name, amount)
                if wait > 0:
                    await self._sleep(wait)
                self._allowance += amount  # only once usable: a call cancelled while it waits spends nothing
            self._allowance -= cost

    def charge(self, extra: float) -> None:
        # Paid out of the next lease: an answer longer than its estimate makes this worker lease sooner.
        self._allowance -= extra


@dataclasses.dataclass(frozen=True)
class SharedLimits:
    """A run's limits on a Ray cluster: the actor that keeps them and each worker's block sizes. Made by the driver
    with `start`, handed to the workers (it pickles with the actor's handle), bound to a model on each."""

    actor: Any  # a Ray actor handle of _Limiter
    name: str
    blocks: dict[str, float]  # limit -> block size

    @classmethod
    def start(cls, rpm: float | None, tpm: float | None, workers: int) -> SharedLimits | None:
        """The limits' actor on the connected cluster (None when neither limit is set). Kill it with `stop`."""
        rates = {REQUESTS: rpm, TOKENS: tpm}
        blocks = {name: block_size(rate, workers) for name, rate in rates.items() if rate is not None}
        if not blocks:
            return None
        import ray

        # Named, so `ray list actors` shows which run's limits it keeps; no CPU: it only does arithmetic.
        name = f"robustprompt-limits-{uuid.uuid4().hex[:12]}"
        limits = {limit: (rate, blocks[limit]) for limit, rate in rates.items() if rate is not None}
        actor = ray.remote(num_cpus=0, max_restarts=0)(_Limiter).options(name=name).remote(limits)
        return cls(actor, name, blocks)

    def bind(self, model: Model) -> Model:
        """`model` paced by these limits; called on a worker, inside the event loop that runs its calls."""

        async def reserve(name: str, amount: float) -> float:
            wait: float = await self.actor.reserve.remote(name, amount)
            return wait

        buckets = {name: LeasedBucket(reserve, name, block) for name, block in self.blocks.items()}
        return limited_by(model, buckets.get(REQUESTS), buckets.get(TOKENS))

    def granted(self) -> dict[str, float]:
        """Permits leased so far, by limit (blocks leased, spent or not)."""
        import ray

        granted: dict[str, float] = ray.get(self.actor.granted.remote())
        return granted

    def stop(self) -> None:
        import ray

        ray.kill(self.actor)
