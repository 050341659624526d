"""Scale: `task.map` over many inputs against the loopback server: wall time, peak RSS, RSS growth.

    python map_bench.py --url http://127.0.0.1:PORT [--n 100000] [--concurrency 64] [--cpu 1]

RSS is sampled every 50 ms from /proc/self/statm by a thread. The baseline is taken after the inputs are
built and a warm-up batch has run (pools, caches, lazy imports), right before the map; growth is the peak
during the map minus that baseline, so it is what the batch itself holds: in-flight calls and the list of
results (one validated Person per input: a batch's answer has to live somewhere).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import INSTRUCTIONS, MODEL_ID, PERSON, Doc, Person, pin, text

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


class Sampler(threading.Thread):
    def __init__(self, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.done.is_set():
            self.samples.append((time.perf_counter() - start, rss_mb()))
            self.done.wait(self.every)


def intrinsic(n: int) -> float:
    """RSS taken by n validated Person outputs alone (the floor for any batch API that returns them all), built
    the way the engine builds them: json.loads, then model_validate (model_validate_json would share its cached
    short strings between outputs and under-count)."""
    body = json.dumps(PERSON)
    gc.collect()
    before = rss_mb()
    outputs = [Person.model_validate(json.loads(body)) for _ in range(n)]
    size = rss_mb() - before
    del outputs
    return size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--intrinsic", action="store_true", help="only measure what n validated outputs occupy")
    args = parser.parse_args()
    pin(args.cpu)
    if args.intrinsic:
        print(json.dumps({"n": args.n, "outputs_mb": intrinsic(args.n)}), flush=True)
        return

    import robustprompt as rp

    task = rp.Task("extract_person", input=Doc, output=Person, instructions=INSTRUCTIONS)
    model = rp.model(f"openai:{MODEL_ID}", base_url=f"{args.url}/v1", api_key="bench")
    task.map([Doc(text=text(i)) for i in range(500)], model=model, concurrency=args.concurrency, progress=False)
    inputs = [Doc(text=text(i)) for i in range(args.n)]
    gc.collect()
    baseline = rss_mb()
    sampler = Sampler()
    sampler.start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    results = task.map(inputs, model=model, concurrency=args.concurrency, progress=False)
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    sampler.done.set()
    sampler.join()
    after = rss_mb()
    ok = sum(isinstance(r, Person) and r.model_dump() == PERSON for r in results)
    del results
    gc.collect()
    released = rss_mb()
    peak = max(mb for _, mb in sampler.samples)
    step = max(1, len(sampler.samples) // 20)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(
        json.dumps(
            {
                "n": args.n,
                "concurrency": args.concurrency,
                "ok": ok,
                "wall_s": wall,
                "rps": args.n / wall,
                "cpu_ms_per_call": 1000 * cpu / args.n,
                "baseline_rss_mb": baseline,
                "peak_rss_mb": peak,
                "growth_mb": peak - baseline,
                "rss_after_mb": after,
                "rss_after_results_freed_mb": released,
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_curve": [(round(t, 1), round(mb, 1)) for t, mb in sampler.samples[::step]],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
