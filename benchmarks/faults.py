"""Reliability under faults: 10,000 task calls through `task.map` against a provider that misbehaves.

    python benchmarks/faults.py [N]          # N calls (default 10,000); about a minute on 2 cores
    python benchmarks/faults.py N hostile    # scenario 3 only, so that peak RSS is its own
    python benchmarks/faults.py N hostile gzip_bomb      # scenario 3 with those fault kinds alone

Scenario 1: the loopback fault server (OpenAI wire) faults 30 % of requests, drawn from a seeded mix of every
transient kind (429 with Retry-After or retry-after-ms, 500, 502, 503, 529, a hang past the client's timeout, a
reset connection, a truncated body, malformed JSON, a schema-invalid answer, a cut-off answer) plus refusals.
It counts outcomes by kind, checks every input is accounted for, that no call used more requests than its budget,
that no retry came before the Retry-After the server asked for, and reports wall time and peak RSS.

Scenario 2: the primary model is retired (its server answers 404 model_not_found to everything) and the policy
falls back to a healthy model: every call must be served by the fallback, with one wasted call at most.

Scenario 3: hostile servers, OpenAI and Anthropic wires, async (`task.amap`, the pool `task.map` runs) and blocking
(`task.run` in a loop):
10 % of requests trickle their headers or body a byte at a time, send a `gzip, gzip` bomb (512 MiB inflated),
report 10^12 output tokens, or answer with a lone surrogate, on top of the transient mix, with `tpm=` pacing and a
deadline. It checks every input is accounted for as a value or a typed error, reports the slowest call against the
deadline, the longest the event loop was blocked (no deadline fires meanwhile), and peak RSS against the 32 MiB
body cap.
"""

from __future__ import annotations

import asyncio
import collections
import resource
import sys
import time
import warnings
from typing import Literal

import httpx
from pydantic import BaseModel

import robustprompt as rp
from robustprompt.testing import Fault, FaultPlan, FaultServer, answer_from
from robustprompt.testing._faults import HOSTILE, TRANSIENT


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


TASK = rp.Task(
    "classify",
    input=Review,
    output=Sentiment,
    instructions="Classify the sentiment of the review.",
    examples=[rp.Example(Review(text="Loved it"), Sentiment(label="positive"))],
)
POLICY = rp.Policy(transport_retries=3, reasks=2, backoff_initial=0.05, backoff_max=0.5)
BUDGET = (POLICY.transport_retries + 1) * (POLICY.reasks + 1)  # requests one call may send at most
TIMEOUT = 0.5  # the client's per-request timeout; the fault server's hangs last twice as long
answer = answer_from(lambda review: {"label": "negative" if "bad" in review["text"] else "positive"})


def inputs(n: int) -> list[Review]:
    return [Review(text=f"review {i}: {'bad' if i % 3 == 0 else 'great'} product") for i in range(n)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scenario_faults(n: int) -> None:
    plan = FaultPlan(rate=0.3, kinds=(*TRANSIENT, Fault.REFUSAL), seed=2026, retry_after=0.2, hang=2 * TIMEOUT)
    items = inputs(n)
    with (
        FaultServer("openai", plan, answer, api_key="bench") as server,
        httpx.Client(limits=httpx.Limits(max_connections=64)) as client,
    ):
        model = rp.model(
            "openai:gpt-4.1-mini", base_url=server.base_url, api_key="bench", timeout=TIMEOUT, http_client=client
        )
        start = time.perf_counter()
        results = TASK.map(items, model=model, policy=POLICY, batch=rp.Batch(concurrency=64), runs=True)
        wall = time.perf_counter() - start
        served, early = dict(server.counts), server.early_retries
    outcomes: collections.Counter[str] = collections.Counter()
    sends, wrong = [], 0
    for item, result in zip(items, results, strict=True):
        run = result.run if isinstance(result, rp.RobustPromptError) else result
        sends.append(sum(1 + len(a.transport_errors) for a in run.attempts) if run else 0)
        if isinstance(result, rp.RobustPromptError):
            outcomes[f"failed: {type(result).__name__}"] += 1
        else:
            outcomes["validated"] += 1
            wrong += result.output != Sentiment(label="negative" if "bad" in item.text else "positive")
    faulted = sum(v for k, v in served.items() if k != "ok")
    print(
        f"## Scenario 1: {n:,} calls, {faulted / sum(served.values()):.1%} of {sum(served.values()):,} requests "
        "faulted\n"
    )
    print("| outcome | calls |\n|---|---|")
    for name, count in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {count:,} |")
    print(f"| **accounted for** | **{sum(outcomes.values()):,} of {n:,} ({sum(outcomes.values()) / n:.0%})** |")
    print(f"\nvalidated outputs with the wrong label: {wrong}")
    print(f"requests per call: mean {sum(sends) / n:.2f}, max {max(sends)} (budget {BUDGET})")
    print(f"retries sent before the server's Retry-After: {early}")
    print(f"wall time {wall:.1f} s ({n / wall:,.0f} calls/s), peak RSS {peak_rss_mb():.0f} MB")
    print("faults served: " + ", ".join(f"{k} {v:,}" for k, v in sorted(served.items(), key=lambda kv: -kv[1])))


def scenario_retired(n: int) -> None:
    retired_plan = FaultPlan(rate=1.0, kinds=(Fault.MODEL_NOT_FOUND,))
    healthy_plan = FaultPlan(rate=0.0)
    with (
        FaultServer("openai", retired_plan, answer, api_key="bench") as gone,
        FaultServer("openai", healthy_plan, answer, api_key="bench") as healthy,
        httpx.Client() as client,
        warnings.catch_warnings(record=True) as warned,
    ):
        warnings.simplefilter("always")
        primary = rp.model("openai:gpt-4", base_url=gone.base_url, api_key="bench", http_client=client)
        fallback = rp.model("openai:gpt-4.1-mini", base_url=healthy.base_url, api_key="bench", http_client=client)
        policy = rp.Policy(fallbacks=(fallback,))
        start = time.perf_counter()
        results = TASK.map(inputs(n), model=primary, policy=policy, batch=rp.Batch(concurrency=64), runs=True)
        wall = time.perf_counter() - start
        wasted = len(gone.requests)
    served_by = collections.Counter(r.model if isinstance(r, rp.Run) else type(r).__name__ for r in results)
    print(f"\n## Scenario 2: {n:,} calls, primary openai:gpt-4 retired, fallback openai:gpt-4.1-mini\n")
    print("| served by | calls |\n|---|---|")
    for name, count in served_by.items():
        print(f"| {name} | {count:,} |")
    print(f"\ncalls that reached the retired model: {wasted} (at most 1 wanted)")
    print(f"warnings: {[str(w.message)[:90] + '...' for w in warned]}")
    print(f"wall time {wall:.1f} s ({n / wall:,.0f} calls/s), peak RSS {peak_rss_mb():.0f} MB")


HOSTILE_DEADLINE = 2.0
HOSTILE_NAMES = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-haiku-4-5"}


def _hostile_outcomes(
    api: str, n: int, blocking: bool, kinds: tuple[Fault, ...]
) -> tuple[collections.Counter[str], float, float, float]:
    plan = FaultPlan(rate=0.1, kinds=kinds, seed=17, retry_after=0.05, hang=2 * TIMEOUT, trickle=0.2)
    # The breaker stays out of it (10 % faults would open it): each call meets the hostile server itself.
    policy = rp.Policy(
        transport_retries=1,
        reasks=1,
        backoff_initial=0.05,
        backoff_max=0.2,
        deadline=HOSTILE_DEADLINE,
        breaker_failures=10**6,
    )
    outcomes: collections.Counter[str] = collections.Counter()
    slowest = stall = 0.0
    with FaultServer(api, plan, answer, api_key="bench-key-0123456789") as server:
        model = rp.model(HOSTILE_NAMES[api], base_url=server.base_url, api_key="bench-key-0123456789", timeout=TIMEOUT)
        start = time.perf_counter()
        if blocking:
            results: list[object] = []
            for item in inputs(n):
                began = time.perf_counter()
                try:
                    results.append(TASK.run(item, model=model, policy=policy).output)
                except rp.RobustPromptError as exc:
                    results.append(exc)
                slowest = max(slowest, time.perf_counter() - began)
        else:
            runs, stall = asyncio.run(_amap_watched(model, policy, n))
            results = [r.output if isinstance(r, rp.Run) else r for r in runs]
            slowest = max((r.latency for r in runs if isinstance(r, rp.Run)), default=0.0)
            slowest = max([slowest, *(e.run.latency for e in runs if isinstance(e, rp.ProviderError) and e.run)])
        wall = time.perf_counter() - start
    for result in results:
        outcomes["validated" if isinstance(result, Sentiment) else f"failed: {type(result).__name__}"] += 1
    return outcomes, wall, slowest, stall


async def _amap_watched(model: rp.Model, policy: rp.Policy, n: int) -> tuple[list[object], float]:
    """`task.amap` (the pool `task.map` runs), and the longest the event loop went without running a ticker: while
    it is blocked, no call's deadline can fire."""
    longest, last = [0.0], [time.perf_counter()]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            longest[0], last[0] = max(longest[0], now - last[0] - 0.005), now

    ticker = asyncio.create_task(tick())
    try:
        batch = rp.Batch(concurrency=32, tpm=10_000_000)
        runs: list[object] = list(await TASK.amap(inputs(n), model=model, policy=policy, batch=batch, runs=True))
    finally:
        ticker.cancel()
    return runs, longest[0]


def scenario_hostile(n: int, kinds: tuple[Fault, ...] = HOSTILE) -> None:
    print(f"\n## Scenario 3: hostile servers, 10 % of requests faulted with {', '.join(f.value for f in kinds)}\n")
    print(f"deadline {HOSTILE_DEADLINE:g} s, timeout {TIMEOUT:g} s per phase\n")
    print("| wire | form | calls | validated | typed errors | untyped | slowest call | longest loop stall | wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for api in HOSTILE_NAMES:
        for blocking, count in ((False, n), (True, max(n // 20, 20))):
            outcomes, wall, slowest, stall = _hostile_outcomes(api, count, blocking, kinds)
            typed = sum(v for k, v in outcomes.items() if k.startswith("failed"))
            untyped = count - outcomes["validated"] - typed
            form = "task.run loop" if blocking else "task.amap"
            print(
                f"| {api} | {form} | {count:,} | {outcomes['validated']:,} | {typed:,} | {untyped} | "
                f"{slowest:.2f} s | {'-' if blocking else f'{stall * 1000:.0f} ms'} | {wall:.1f} s |"
            )
    print(f"\npeak RSS {peak_rss_mb():.0f} MB (body cap 32 MiB; each bomb inflates to 512 MiB unchecked)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    if sys.argv[2:3] == ["hostile"]:  # `hostile gzip_bomb,trickle_body`: those kinds alone
        scenario_hostile(n, tuple(Fault(k) for k in sys.argv[3].split(",")) if sys.argv[3:] else HOSTILE)
        return
    scenario_faults(n)
    scenario_retired(n)
    scenario_hostile(min(n, 2_000))


if __name__ == "__main__":
    main()
