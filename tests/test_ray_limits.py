"""Without Ray: the shared rate limit's arithmetic (the bucket that grants leases with a wait, a worker's lease of
blocks), and `--engine ray` refused with the extra to install. (tests/test_ray.py runs them on a cluster.)"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustprompt._ray_limits import LEASE_SECONDS, LeasedBucket, Reservations, block_size
from robustprompt.cli import main


def test_a_block_is_a_share_of_half_a_second_of_the_rate_and_never_less_than_one() -> None:
    assert block_size(600, 2) == 600 / 60 * LEASE_SECONDS / 2 == 2.5
    assert block_size(60, 4) == 1.0
    assert block_size(600_000, 1) == 5000.0


def test_leases_are_granted_at_once_with_the_wait_their_debt_implies() -> None:
    bucket = Reservations({"requests": (60.0, 2.0)}, now=0.0)  # one a second, two in the bucket
    assert bucket.reserve("requests", 2, now=0.0) == 0.0  # starts full
    assert bucket.reserve("requests", 2, now=0.0) == pytest.approx(2.0)  # waits for the refill
    assert bucket.reserve("requests", 2, now=0.0) == pytest.approx(4.0)  # and after the one before it
    assert bucket.reserve("requests", 2, now=10.0) == 0.0  # the debt is paid by then; full again
    assert bucket.granted() == {"requests": 8.0}


def test_a_lease_larger_than_the_bucket_waits_for_a_full_bucket_and_leaves_debt() -> None:
    bucket = Reservations({"tokens": (600.0, 10.0)}, now=0.0)  # 10 a second
    assert bucket.reserve("tokens", 25, now=0.0) == 0.0
    # 15 owed, then 10 more needed: 2.5 s at 10 a second.
    assert bucket.reserve("tokens", 10, now=0.0) == pytest.approx(2.5)


@settings(max_examples=200, deadline=None)
@given(
    per_minute=st.floats(6, 6000),
    block=st.floats(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
    window=st.floats(0.01, 30),
)
def test_in_any_window_the_leases_usable_in_it_are_within_the_rate_and_one_block(
    per_minute: float, block: float, gaps: list[float], window: float
) -> None:
    """The bucket's half of the documented bound: leases of one block, asked for at any times, become usable no
    faster than the rate plus the bucket's one block, in arrival order."""
    bucket = Reservations({"requests": (per_minute, block)}, now=0.0)
    usable = []
    for now in itertools.accumulate(gaps):
        usable.append(now + bucket.reserve("requests", block, now=now))
    assert usable == sorted(usable)
    rate = per_minute / 60
    for start in usable:
        inside = sum(block for at in usable if start <= at <= start + window)
        assert inside <= rate * window + block + 1e-6 * inside


class _Leases:
    """A fake actor on a virtual clock: each lease's wait is slept by advancing the clock."""

    def __init__(self, per_minute: float, capacity: float, name: str = "requests") -> None:
        self.now = 0.0
        self.bucket = Reservations({name: (per_minute, capacity)}, now=0.0)
        self.asked: list[float] = []

    async def reserve(self, name: str, amount: float) -> float:
        self.asked.append(amount)
        return self.bucket.reserve(name, amount, self.now)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_worker_spends_its_block_locally_and_leases_the_next_when_it_runs_out() -> None:
    leases = _Leases(per_minute=60, capacity=3)
    bucket = LeasedBucket(leases.reserve, "requests", 3, sleep=leases.sleep)

    async def spend(times: int) -> None:
        for _ in range(times):
            await bucket.take(1)

    asyncio.run(spend(7))
    assert leases.asked == [3, 3, 3]  # one round trip per block, not per request
    assert leases.now == pytest.approx(6.0)  # the third block waited for six seconds of refill


def test_tokens_found_after_the_answer_are_paid_out_of_the_next_lease() -> None:
    leases = _Leases(per_minute=6000, capacity=100, name="tokens")
    bucket = LeasedBucket(leases.reserve, "tokens", 100, sleep=leases.sleep)

    async def run() -> None:
        await bucket.take(40)  # leases 100, 60 left
        bucket.charge(90)  # the answer was 90 tokens longer than estimated: 30 owed
        await bucket.take(40)  # 70 short: leases the block of 100

    asyncio.run(run())
    assert leases.asked == [100, 100]
    # A prompt larger than a block is leased whole.
    asyncio.run(bucket.take(250))
    assert leases.asked[-1] == 250 - 30  # what it had left


def test_a_call_cancelled_while_it_waits_spends_nothing() -> None:
    async def run() -> None:
        async def reserve(name: str, amount: float) -> float:
            return 60.0

        bucket = LeasedBucket(reserve, "requests", 1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(bucket.take(1), 0.01)
        assert bucket._allowance == 0.0

    asyncio.run(run())


def test_the_ray_engine_without_ray_installed_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tasks.py").write_text(
        "import robustprompt as rp\ntask = rp.Task('echo', input=str, output=str, instructions='Repeat.')\n"
    )
    (tmp_path / "cases.jsonl").write_text('{"id": "1", "input": "x"}\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    args = ["run", "tasks.py:task", "--cases", "cases.jsonl", "--model", "openai:gpt-4.1-mini",
            "--store", str(tmp_path / "store.sqlite")]  # fmt: skip
    assert main([*args, "--engine", "ray"]) == 2
    assert "--engine ray needs Ray Data: pip install 'robustprompt[ray]'" in capsys.readouterr().err
    assert main([*args, "--workers", "2"]) == 2
    assert "--workers sets the Ray workers: add --engine ray" in capsys.readouterr().err
    assert main([*args, "--batch", "--engine", "ray"]) == 2
    assert "--batch hands the cases to the provider's batch API, --engine ray runs them live" in capsys.readouterr().err
