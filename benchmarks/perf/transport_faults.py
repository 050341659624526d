"""Does each transport keep robustprompt's fault handling? The faults benchmark, per transport.

    .bench-venvs/transports/bin/python transport_faults.py --transport default [--n 2000]

Runs scenario 1 of benchmarks/faults.py (the loopback fault server faulting 30 % of requests with every
transient kind: 429s with Retry-After, 5xx, hangs past the timeout, resets, truncated and malformed bodies,
invalid answers) through `task.map` with the async client built on the given transport: `default`
(robustprompt's own aiohttp-backed transport), `httpx` (an injected httpx.AsyncClient: httpx's own pool),
`httpx-aiohttp` (httpx.AsyncClient over httpx_aiohttp.AiohttpTransport), or `httpx2` (alias_httpx, then an
injected client).
Prints one JSON line: outcomes by kind, whether every input is accounted for, the most requests one call
sent against its budget, retries sent before the server's Retry-After, and wall time. The fault schedule is
seeded per request, and requests arrive in a different order under each transport, so the outcome counts are
close, not identical; what must hold for every transport is all inputs accounted for, no call over its budget,
no early retry. (httpx-aiohttp's transport, injected, logs "Unclosed client session" at exit: its session
outlives the event loop `task.map` ran in. robustprompt's own closes its session with its loop.)
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _faults_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_faults", os.path.join(HERE, "..", "faults.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("default", "httpx", "httpx-aiohttp", "httpx2"), default="default")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    if args.transport == "httpx2":
        import httpx2

        httpx2.alias_httpx()
    import httpx

    import robustprompt as rp
    from robustprompt.testing import Fault, FaultPlan, FaultServer
    from robustprompt.testing._faults import TRANSIENT

    faults = _faults_module()
    client: Any = None
    if args.transport == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        client = httpx.AsyncClient(transport=AiohttpTransport())
    elif args.transport in ("httpx", "httpx2"):
        client = httpx.AsyncClient()
    plan = FaultPlan(rate=0.3, kinds=(*TRANSIENT, Fault.REFUSAL), seed=2026, retry_after=0.2, hang=2 * faults.TIMEOUT)
    items = faults.inputs(args.n)
    with FaultServer("openai", plan, faults.answer, api_key="bench") as server:
        model = rp.model(
            "openai:gpt-4.1-mini",
            base_url=server.base_url,
            api_key="bench",
            timeout=faults.TIMEOUT,
            async_http_client=client,
        )
        start = time.perf_counter()
        results = faults.TASK.map(items, model=model, policy=faults.POLICY, batch=rp.Batch(concurrency=64), runs=True)
        wall = time.perf_counter() - start
        early = server.early_retries
    outcomes: collections.Counter[str] = collections.Counter()
    sends = []
    for result in results:
        run = result.run if isinstance(result, rp.RobustPromptError) else result
        sends.append(sum(1 + len(a.transport_errors) for a in run.attempts) if run else 0)
        outcomes["validated" if isinstance(result, rp.Run) else f"failed: {type(result).__name__}"] += 1
    print(
        json.dumps(
            {
                "transport": args.transport,
                "n": args.n,
                "outcomes": dict(outcomes.most_common()),
                "accounted_for": sum(outcomes.values()),
                "max_requests_per_call": max(sends),
                "budget": faults.BUDGET,
                "early_retries": early,
                "wall_s": round(wall, 1),
            }
        )
    )


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
