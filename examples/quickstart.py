"""Quickstart: a typed task with few-shot examples, run on the embedded local model (no key, no network).

python examples/quickstart.py            # local:smollm2, or the model named by ROBUSTPROMPT_MODEL
"""

from __future__ import annotations

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


def main() -> None:
    model = rp.model("local:smollm2", temperature=0, max_output_tokens=32)
    for text in [
        "Fantastic quality, I would buy it again.",
        "Terrible. It stopped working and support ignored me.",
    ]:
        run = classify.run(Review(text=text), model=model)
        print(
            f"{run.output!r:<38} {len(run.attempts)} attempt(s), mode={run.mode.value if run.mode else '-'}, "
            f"{run.usage.total_tokens} tokens, {run.latency * 1000:.0f} ms  <- {text!r}"
        )


if __name__ == "__main__":
    main()
