"""The same suite on a local Ray cluster with 2 workers against one process, through a loopback OpenAI server.

    python benchmarks/ray_scale.py [--cases 2000] [--latency 0.05] [--rpm 1200] [--limited-cases 400]

The server (robustprompt's OpenAI loopback, the real wire format) runs in a child process of its own and answers
each request after `--latency` seconds, as a provider would; it records when each request arrived. Measured:

- throughput: `robustprompt run` over `--cases` cases, in one process (`--concurrency 8`, and 16: as many calls in
  flight as the two workers together) and with `--engine ray --workers 2 --concurrency 8`. The cluster is started
  before the clock runs; the pipeline's own start (actors, model handles) is inside it.
- the rate limit: the same with `--rpm` over `--limited-cases` cases, one process and 2 workers; from the
  server's arrival times, the most requests seen in any window of 1 s, 10 s and 60 s against what the limit
  allows there (rpm / 60 per second), and the mean rate.

Figures go to stdout as Markdown rows for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = """
from typing import Literal

import robustprompt as rp

task = rp.Task("yes_no", input=int, output=Literal["yes", "no"], instructions="Is the number prime?")
"""

SERVE = """
import dataclasses, json, sys, threading, time
from robustprompt.testing import OpenAIServer
from robustprompt.testing._openai_server import chat_reply

latency = float(sys.argv[1])
arrivals = []
lock = threading.Lock()

def reply(received):
    with lock:
        arrivals.append(time.monotonic())
    return dataclasses.replace(chat_reply('{"answer": "no"}', prompt_tokens=40, completion_tokens=5), delay=latency)

with OpenAIServer(api_key="sk-bench", responder=reply) as server:
    print(server.base_url, flush=True)
    for _ in sys.stdin:  # each line asks for the arrivals since the last one
        with lock:
            print(json.dumps(arrivals), flush=True)
            arrivals.clear()
"""


@dataclasses.dataclass(frozen=True)
class Figures:
    label: str
    cases: int
    seconds: float
    arrivals: list[float]

    @property
    def per_second(self) -> float:
        return self.cases / self.seconds

    def most_in(self, window: float) -> int:
        times, most, start = self.arrivals, 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            most = max(most, end - start + 1)
        return most

    @property
    def mean_rate(self) -> float:
        span = self.arrivals[-1] - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else float("inf")


class _Server:
    """The loopback server in a child process, one for the whole benchmark: the cluster's workers read its
    address from the environment they were started with."""

    def __init__(self, latency: float) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert self._child.stdin is not None and self._child.stdout is not None
        self._stdin, self._stdout = self._child.stdin, self._child.stdout
        self.base_url = self._stdout.readline().strip()

    def arrivals(self) -> list[float]:
        """When each request since the last call arrived, in order."""
        self._stdin.write("\n")
        self._stdin.flush()
        times: list[float] = json.loads(self._stdout.readline())
        return sorted(times)

    def close(self) -> None:
        self._stdin.close()
        self._child.wait(timeout=60)


def _run(folder: Path, server: _Server, label: str, cases: int, extra: Sequence[str]) -> Figures:
    from robustprompt import reset
    from robustprompt.cli import main

    reset()  # no handle or breaker carried over from the run before
    server.arrivals()
    store = folder / f"{label.replace(' ', '_').replace(',', '')}.sqlite"
    argv = ["run", str(folder / "tasks.py:task"), "--cases", str(folder / "cases.jsonl"), "--limit", str(cases),
            "--model", "openai:gpt-4.1-mini", "--store", str(store), *extra]  # fmt: skip
    quiet = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        code = main(argv)
    seconds = time.perf_counter() - started
    arrivals = server.arrivals()
    if code != 0 or len(arrivals) != cases:
        raise SystemExit(f"{label}: exit {code}, {len(arrivals)} of {cases} requests\n{quiet.getvalue()}")
    return Figures(label, cases, seconds, arrivals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server takes to answer")
    parser.add_argument("--rpm", type=float, default=1200)
    parser.add_argument("--limited-cases", type=int, default=400)
    args = parser.parse_args()

    import ray

    folder = Path(tempfile.mkdtemp(prefix="ray-scale-"))
    (folder / "tasks.py").write_text(TASKS)
    total = max(args.cases, args.limited_cases)
    (folder / "cases.jsonl").write_text("".join(json.dumps({"id": str(n), "input": n}) + "\n" for n in range(total)))
    server = _Server(args.latency)
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    os.environ["OPENAI_BASE_URL"] = server.base_url  # before the cluster starts: its workers inherit it
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"local Ray cluster started in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    ray_args = ["--engine", "ray", "--workers", "2", "--concurrency", "8"]
    limited_cases = args.limited_cases
    rpm = ["--rpm", f"{args.rpm:g}"]
    try:
        throughput = [
            _run(folder, server, "one process, concurrency 8", args.cases, ["--concurrency", "8"]),
            _run(folder, server, "one process, concurrency 16", args.cases, ["--concurrency", "16"]),
            _run(folder, server, "Ray, 2 workers x 8", args.cases, ray_args),
        ]
        limited = [
            _run(folder, server, f"one process x 16, rpm {args.rpm:g}", limited_cases, ["--concurrency", "16", *rpm]),
            _run(folder, server, f"Ray, 2 workers x 8, rpm {args.rpm:g}", limited_cases, [*ray_args, *rpm]),
        ]
    finally:
        ray.shutdown()
        server.close()
    _report(args, throughput, limited)


def _report(args: argparse.Namespace, throughput: list[Figures], limited: list[Figures]) -> None:
    print(f"\nthroughput: {args.cases} cases, server latency {args.latency * 1000:.0f} ms\n")
    print("| engine | wall time | cases/s |")
    print("|---|---|---|")
    for f in throughput:
        print(f"| {f.label} | {f.seconds:.1f} s | {f.per_second:.0f} |")
    per_second = args.rpm / 60
    print(f"\nrate limit: {args.limited_cases} cases at --rpm {args.rpm:g} ({per_second:g}/s), as the server saw it\n")
    print("| engine | mean rate | most in 1 s (limit) | most in 10 s (limit) | most in 60 s (limit) | held |")
    print("|---|---|---|---|---|---|")
    for f in limited:
        cells, held = [], True
        for window in (1.0, 10.0, 60.0):
            allowed = per_second * window
            most = f.most_in(window)
            cells.append(f"{most} ({allowed:g})")
            # The documented bound (robustprompt/_ray_limits.py): rate x window + (workers + 1) blocks.
            held &= most <= allowed + 3 * max(1.0, per_second * 0.5 / 2) + 1
        print(f"| {f.label} | {f.mean_rate:.2f}/s | {' | '.join(cells)} | {'yes' if held else 'NO'} |")


if __name__ == "__main__":
    main()
