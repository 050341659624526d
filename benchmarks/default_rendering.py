"""Each model's default rendering, measured on dev cases across the benchmark tasks.

    python benchmarks/default_rendering.py                         # both embedded models
    python benchmarks/default_rendering.py openai-compatible:smollm2  # OPENAI_COMPATIBLE_BASE_URL=.../v1

A model profile's default (`ModelProfile.rendering`, a catalog field) is a layout and an input format, shown with
all of the task's examples, in the model's best output mode: what a task that was never adapted starts from. For
each model, this runs every layout/input format of the rendering space on the dev cases of the three tasks of
local_accuracy.py (benchmarks/data/dev: 12 cases each, written apart from the test cases, which it never reads),
at temperature 0 with at most one re-ask, and ranks the renderings by the lower bound of the 95 % Wilson interval
of their accuracy over all tasks, ties in the space's own order (today's default, `turns/json`, first). The first
is the value for the catalog; local_accuracy.py then reports it on the test cases ("as-is").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from local_accuracy import DATA, TASKS  # noqa: E402

import robustprompt as rp  # noqa: E402
from robustprompt._renderings import INPUT_FORMATS, LAYOUTS, Configuration  # noqa: E402
from robustprompt.evals._stats import wilson  # noqa: E402


def correct(task: rp.Task[Any, Any], model: rp.Model, config: Configuration, case: dict[str, Any]) -> bool:
    try:
        run = task.run(case["input"], model=model, policy=rp.Policy(reasks=1, configuration=config))
    except rp.OutputError:
        return False
    return bool(task.output_record(run.output) == case["expected"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=["local:smollm2", "local:gemma3-270m"])
    parser.add_argument("--json", help="write every figure as JSON")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    for name in args.models:
        model = rp.model(name, temperature=0, max_output_tokens=64)
        rows = []
        for layout in LAYOUTS:
            for input_format in INPUT_FORMATS:
                config = Configuration(layout, input_format)
                per_task = {}
                for key, (task, _) in TASKS.items():
                    lines = (DATA / "dev" / f"{key}.jsonl").read_text().splitlines()
                    cases = [json.loads(line) for line in lines if line.strip()]
                    per_task[key] = (sum(correct(task, model, config, case) for case in cases), len(cases))
                right = sum(c for c, _ in per_task.values())
                n = sum(k for _, k in per_task.values())
                interval = wilson(right, n)
                low = interval.low if interval is not None else 0.0
                rows.append((-low, len(rows), f"{layout}/{input_format}", per_task, right, n))
                print(f"{name} {layout}/{input_format}: {right}/{n}", file=sys.stderr, flush=True)
        rows.sort()
        figures[name] = [{"rendering": r, "per_task": p, "correct": c, "n": n} for _, _, r, p, c, n in rows]
        print(f"\n{name}: dev accuracy with all examples (best first; the first is the catalog default)")
        print("| rendering | " + " | ".join(TASKS) + " | total | 95 % lower bound |")
        print("|---|" + "---|" * len(TASKS) + "---|---|")
        for neg_low, _, rendering, per_task, right, n in rows:
            cells = " | ".join(f"{c}/{k}" for c, k in per_task.values())
            print(f"| {rendering} | {cells} | {right}/{n} | {-neg_low:.2f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
