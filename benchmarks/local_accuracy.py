"""Schema-valid rate and accuracy of the embedded models on a small labelled set, zero-shot vs with examples.

    python benchmarks/local_accuracy.py            # about two minutes on 2 cores

The set (benchmarks/data/sentiment.jsonl) is 40 short product reviews written for this benchmark, 20 positive and
20 negative; the 4 few-shot examples below are not in it. Every cell runs all 40 cases at temperature 0.
"valid@1" is the share whose first answer validated; "valid" the share valid after at most one re-ask;
"accuracy" counts an invalid answer as wrong.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

import robustprompt as rp

DATA = Path(__file__).parent / "data" / "sentiment.jsonl"


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


EXAMPLES = [
    rp.Example(Review(text="Works great and arrived early, very pleased."), Sentiment(label="positive")),
    rp.Example(Review(text="Stopped working after a day, total junk."), Sentiment(label="negative")),
    rp.Example(Review(text="Soft fabric and a perfect fit, I love it."), Sentiment(label="positive")),
    rp.Example(Review(text="Arrived broken and the seller refused a refund."), Sentiment(label="negative")),
]
INSTRUCTIONS = "Classify the sentiment of the product review as positive or negative."


def task(shots: int) -> rp.Task[Review, Sentiment]:
    return rp.Task(
        "classify_review", input=Review, output=Sentiment, instructions=INSTRUCTIONS, examples=EXAMPLES[:shots]
    )


def measure(model: rp.Model, mode: rp.OutputMode, shots: int, cases: list[dict[str, object]]) -> dict[str, float]:
    t = task(shots)
    policy = rp.Policy(reasks=1, mode=mode)
    first_valid = valid = correct = 0
    start = time.perf_counter()
    for case in cases:
        expected = Sentiment.model_validate(case["expected"])
        try:
            run = t.run(Review.model_validate(case["input"]), model=model, policy=policy)
        except rp.OutputError as exc:
            first_valid += exc.run.attempts[0].ok
            continue
        first_valid += run.attempts[0].ok
        valid += 1
        correct += run.output == expected
    n = len(cases)
    return {
        "n": n,
        "valid@1": first_valid / n,
        "valid": valid / n,
        "accuracy": correct / n,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    cases = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    names = sys.argv[1:] or ["local:smollm2", "local:gemma3-270m"]
    print("| model | mode | examples | n | valid@1 | valid (≤1 re-ask) | accuracy | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        model = rp.model(name, temperature=0, max_output_tokens=48)
        for mode in (rp.OutputMode.GRAMMAR, rp.OutputMode.PROMPTED):
            for shots in (0, len(EXAMPLES)):
                r = measure(model, mode, shots, cases)
                print(
                    f"| {name} | {mode.value} | {shots} | {r['n']} | {r['valid@1']:.0%} | {r['valid']:.0%} "
                    f"| {r['accuracy']:.0%} | {r['seconds']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
