"""Pipeline: extract -> classify -> summarise -> record on the embedded Gemma-3-270M, every hand-off a contract.

    python examples/pipeline.py                    # Gemma-3-270M, three reviews
    python examples/pipeline.py local:smollm2      # or any other model name

- extract: the product and the complaint, from the review (a task)
- classify: the review's sentiment (a task; it takes the pipeline's input, not extract's output, so the async
  form runs it beside extract)
- summarise: a headline from what extract and classify found (a task with a declared default)
- record: a Python step joining the three into a typed Record

Each link's value is validated before the next link sees it; the trace says, per link, which model answered, in
which mode, after how many attempts and repairs, with how many tokens, how fast, and the outcome.
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import BaseModel, Field

import robustprompt as rp


class Review(BaseModel):
    text: str


class Found(BaseModel):
    product: str = Field(max_length=40)
    complaint: str = Field(max_length=80)


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


class Facts(BaseModel):
    product: str
    complaint: str
    sentiment: Literal["positive", "negative"]


class Headline(BaseModel):
    headline: str = Field(max_length=60)


class Record(BaseModel):
    product: str
    sentiment: Literal["positive", "negative"]
    headline: str


extract: rp.Task[Review, Found] = rp.Task(
    "extract",
    input=Review,
    output=Found,
    instructions="Name the product the review is about, and the reviewer's main complaint ('none' if there is none).",
    examples=[
        rp.Example(
            Review(text="The kettle leaks from the lid after a week."),
            Found(product="kettle", complaint="leaks from the lid"),
        ),
        rp.Example(Review(text="Lovely scarf, soft and warm."), Found(product="scarf", complaint="none")),
    ],
)

classify: rp.Task[Review, Sentiment] = rp.Task(
    "classify",
    input=Review,
    output=Sentiment,
    instructions="Classify the sentiment of the product review as positive or negative.",
    examples=[
        rp.Example(Review(text="Loved it, works perfectly."), Sentiment(label="positive")),
        rp.Example(Review(text="Broke after two days. Waste of money."), Sentiment(label="negative")),
    ],
)

summarise: rp.Task[Facts, Headline] = rp.Task(
    "summarise",
    input=Facts,
    output=Headline,
    instructions="Write a short headline for the review from these facts.",
    examples=[
        rp.Example(
            Facts(product="kettle", complaint="leaks from the lid", sentiment="negative"),
            Headline(headline="Kettle leaks from the lid"),
        ),
        rp.Example(
            Facts(product="scarf", complaint="none", sentiment="positive"),
            Headline(headline="Soft, warm scarf"),
        ),
    ],
)

REVIEWS = [
    Review(text="My headphones stopped charging after a month."),
    Review(text="This backpack is sturdy and roomy, great for travel."),
    Review(text="The blender is loud and the jar cracked."),
]


def build(model: rp.Model) -> rp.Pipeline:
    return rp.Pipeline(
        "review_to_record",
        [
            rp.Link("extract", extract, model=model),
            rp.Link("classify", classify, model=model, after=("input",)),
            rp.Link(
                "summarise",
                summarise,
                model=model,
                after=("extract", "classify"),
                input=lambda found, mood: Facts(product=found.product, complaint=found.complaint, sentiment=mood.label),
                default=Headline(headline="(no headline)"),
            ),
            rp.Step(
                "record",
                lambda found, mood, title: Record(product=found.product, sentiment=mood.label, headline=title.headline),
                after=("extract", "classify", "summarise"),
                output=Record,
            ),
        ],
        input=Review,
    )


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "local:gemma3-270m"
    pipeline = build(rp.model(name, temperature=0, max_output_tokens=48))
    batch = pipeline.map(
        REVIEWS, batch=rp.Batch(concurrency=1)
    )  # an embedded model decodes one sequence at a time anyway
    for review, item, run in zip(REVIEWS, batch.items, batch.runs, strict=True):
        print(f"<- {review.text!r}")
        print(f"-> {item.output!r}" if isinstance(item, rp.PipelineRun) else f"!! {item}")
        print(run.format_trace() if run is not None else "", flush=True)
    print(batch.format_outcomes(), end="")


if __name__ == "__main__":
    main()
