"""Scale: `task.map` over many inputs against the loopback server: wall time, peak RSS, RSS growth.

    python map_bench.py --url http://127.0.0.1:PORT [--n 100000] [--concurrency 64] [--cpu 1] [--stream]

RSS is sampled every 50 ms from /proc/self/statm by a thread. The baseline is taken after the inputs are
built and a warm-up batch has run (pools, caches, lazy imports), right before the map; growth is the peak
during the map minus that baseline, so it is what the batch itself holds: in-flight calls and the list of
results (one validated Person per input: a batch's answer has to live somewhere).

`--stream` measures `task.stream` instead, over a generator of the same inputs, each output checked and dropped
as it lands: growth is then what the batch holds with no list of results, and the keys are prefixed `stream_`
(n and concurrency aside). It is a run of its own because freed memory stays in the process: a measurement
after the other would reuse it and under-count.
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
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import INSTRUCTIONS, MODEL_ID, PERSON, Doc, Person, pin, text

if TYPE_CHECKING:
    import robustprompt as rp

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


class Measured:
    """Wall, CPU and RSS over a `with` block; the baseline is taken on entry, after a collection."""

    def __enter__(self) -> Measured:
        gc.collect()
        self.baseline = rss_mb()
        self.sampler = Sampler()
        self.sampler.start()
        self.cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.start
        self.cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        self.sampler.done.set()
        self.sampler.join()
        self.after = rss_mb()

    def figures(self, n: int) -> dict[str, Any]:
        peak = max(mb for _, mb in self.sampler.samples)
        cpu = (self.cpu1.ru_utime + self.cpu1.ru_stime) - (self.cpu0.ru_utime + self.cpu0.ru_stime)
        return {
            "wall_s": self.wall,
            "rps": n / self.wall,
            "cpu_ms_per_call": 1000 * cpu / n,
            "baseline_rss_mb": self.baseline,
            "peak_rss_mb": peak,
            "growth_mb": peak - self.baseline,
            "rss_after_mb": self.after,
        }

    def curve(self) -> list[tuple[float, float]]:
        step = max(1, len(self.sampler.samples) // 20)
        return [(round(t, 1), round(mb, 1)) for t, mb in self.sampler.samples[::step]]


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def list_form(task: rp.Task[Doc, Person], model: rp.Model, n: int, concurrency: int) -> dict[str, Any]:
    import robustprompt as rp

    task.map(
        [Doc(text=text(i)) for i in range(500)], model=model, batch=rp.Batch(concurrency=concurrency, progress=False)
    )
    inputs = [Doc(text=text(i)) for i in range(n)]
    with Measured() as measured:
        results = task.map(inputs, model=model, batch=rp.Batch(concurrency=concurrency, progress=False))
    ok = sum(isinstance(r, Person) and r.model_dump() == PERSON for r in results)
    del results
    gc.collect()
    released = rss_mb()
    figures = measured.figures(n)
    return {
        "n": n,
        "concurrency": concurrency,
        "ok": ok,
        **figures,
        "rss_after_results_freed_mb": released,
        "max_rss_mb": max_rss_mb(),
        "rss_curve": measured.curve(),
    }


def stream_form(task: rp.Task[Doc, Person], model: rp.Model, n: int, concurrency: int) -> dict[str, Any]:
    import robustprompt as rp

    def valid(count: int) -> int:
        """How many of `count` generated inputs came back as the expected Person; each is dropped on arrival."""
        inputs = (Doc(text=text(i)) for i in range(count))
        outcomes = task.stream(inputs, model=model, batch=rp.Batch(concurrency=concurrency, progress=False))
        return sum(isinstance(output, Person) and output.model_dump() == PERSON for _, output in outcomes)

    valid(500)  # the same warm-up as the list form's
    with Measured() as measured:
        ok = valid(n)
    figures = {**measured.figures(n), "max_rss_mb": max_rss_mb(), "rss_curve": measured.curve()}
    return {"n": n, "concurrency": concurrency, "stream_ok": ok, **{f"stream_{k}": v for k, v in figures.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--intrinsic", action="store_true", help="only measure what n validated outputs occupy")
    parser.add_argument("--stream", action="store_true", help="measure task.stream over a generator of the inputs")
    args = parser.parse_args()
    pin(args.cpu)
    if args.intrinsic:
        print(json.dumps({"n": args.n, "outputs_mb": intrinsic(args.n)}), flush=True)
        return

    import robustprompt as rp

    task: rp.Task[Doc, Person] = rp.Task("extract_person", input=Doc, output=Person, instructions=INSTRUCTIONS)
    model = rp.model(f"openai:{MODEL_ID}", base_url=f"{args.url}/v1", api_key="bench")
    form = stream_form if args.stream else list_form
    print(json.dumps(form(task, model, args.n, args.concurrency)), flush=True)


if __name__ == "__main__":
    main()
