"""Quickstart: a typed task with few-shot examples, run on an embedded local model (no key, no network).

    python examples/quickstart.py                  # Gemma-3-270M
    python examples/quickstart.py local:smollm2    # or any other model name

Gemma-3-270M ships with the `local` extra. It is a base model that follows few-shot examples well: on the 40
reviews of benchmarks/local_accuracy.py it scores 85 % zero-shot and 100 % with four examples.
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import BaseModel

import robustprompt as rp


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


classify = rp.Task(
    "classify_review",
    instructions="Classify the sentiment of the product review as positive or negative.",
    input=Review,
    output=Sentiment,
    examples=[
        rp.Example(Review(text="Loved it, works perfectly."), Sentiment(label="positive")),
        rp.Example(Review(text="Broke after two days. Waste of money."), Sentiment(label="negative")),
    ],
)

REVIEWS = [
    "Fantastic quality, I would buy it again.",
    "Terrible. It stopped working and support ignored me.",
]


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "local:gemma3-270m"
    model = rp.model(name, temperature=0, max_output_tokens=32)
    for text in REVIEWS:
        run = classify.run(Review(text=text), model=model)
        mode = run.mode.value if run.mode else "-"
        print(
            f"{run.output!r:<30} {len(run.attempts)} attempt(s), mode={mode}, {run.usage.total_tokens} tokens, "
            f"{run.latency * 1000:.0f} ms  <- {text!r}"
        )


if __name__ == "__main__":
    main()
