"""Where a client's CPU goes: py-spy samples of the timed calls, summarised by package and by function.

`Sampler` attaches py-spy (a sampling profiler that runs outside the process, so the client runs at full
speed) to this process for the timed section only; `summarize` reads its raw output ("frame;frame;... count"
lines, idle samples left out by py-spy) and gives percentages of the busy samples.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from typing import Any


class Sampler:
    """py-spy on this process from `start()` to `stop()`, writing raw stacks to `out`."""

    def __init__(self, pyspy: str, out: str, rate: int = 250, cpu: int | None = None) -> None:
        self.pyspy, self.out, self.rate, self.cpu = pyspy, out, rate, cpu
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [self.pyspy, "record", "--pid", str(os.getpid()), "--nonblocking", "-r", str(self.rate)]
        cmd += ["-f", "raw", "-o", self.out]
        cpu = self.cpu

        def pin() -> None:  # keep the sampler off the client's core
            if cpu is not None and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, {cpu})

        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin)
        time.sleep(0.5)  # let it attach

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)


def _frame(frame: str) -> tuple[str, str]:
    """'func (pkg/mod.py:12)' -> ('func', 'pkg/mod.py')."""
    func, _, where = frame.rpartition(" (")
    return func, where.rstrip(")").rsplit(":", 1)[0]


def _package(path: str) -> str:
    if path.startswith("<frozen importlib"):
        return "importlib (failed imports)"
    if path.startswith(("adapters/", "robustprompt/")) or "/robustprompt/" in path or "/adapters/" in path:
        return "robustprompt"
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if head else path


def summarize(raw_path: str, top: int = 25) -> dict[str, Any]:
    """Self share per package and per function, inclusive share per robustprompt function (of busy samples)."""
    self_fn: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw_path) as raw:
        for line in raw:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = [f for f in stack.split(";") if " (" in f]
            if not frames or "Sampler.start" in stack:  # the sampler attaching, not the client
                total -= n
                continue
            func, path = _frame(frames[-1])
            self_fn[f"{func} ({path})"] += n
            by_package[_package(path)] += n
            seen: set[str] = set()
            for frame in frames:
                f, p = _frame(frame)
                if _package(p) == "robustprompt" and (key := f"{f} ({p})") not in seen:
                    seen.add(key)
                    inclusive[key] += n
    total = max(total, 1)

    def pct(n: int) -> float:
        return round(100 * n / total, 1)

    return {
        "samples": total,
        "by_package_self_pct": [(k, pct(v)) for k, v in by_package.most_common(top)],
        "top_self_pct": [(k, pct(v)) for k, v in self_fn.most_common(top)],
        "robustprompt_inclusive_pct": [(k, pct(v)) for k, v in inclusive.most_common(top)],
    }
