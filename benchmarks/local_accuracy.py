"""Accuracy and schema-valid rate of the embedded models, as-is and adapted, on three small labelled sets.

    python benchmarks/local_accuracy.py                       # both embedded models, all three tasks
    python benchmarks/local_accuracy.py local:smollm2 --json out.json
    python benchmarks/local_accuracy.py --as-is                # the profile defaults only, no adapt
    python benchmarks/local_accuracy.py --examples dev --budget 600   # tasks carrying 16 examples

Tasks (each case file in benchmarks/data was written for this benchmark; no test case is among a task's examples):
- sentiment: 40 short product reviews, positive / negative, 4 examples;
- tickets: 20 support tickets, a four-way topic label, 4 examples (one per topic);
- people: 20 sentences, extraction of name, age and city, 4 examples.

For each model and task: "as-is" runs the test cases with the model profile's default configuration; "adapted" first
runs `task.adapt(model)` with no cases, so it scores the rendering space on the task's own examples only (each left
out in turn) within the default budget, then runs the same test cases with the configuration it chose. The test cases
are never shown to adapt. Every call is at temperature 0 with at most one re-ask. "valid" is the share of cases with a
schema-valid output; "accuracy" counts an invalid answer as wrong; n is the number of test cases. The adaptation
cost (calls, tokens, seconds) and, per layout/input format, the best leave-one-out score adapt measured are printed too.

`--examples dev` gives each task a larger pool: its 4 examples and the 12 labelled cases of benchmarks/data/dev
(written apart from the test cases), 16 in all. "as-is" then shows all 16; adapt scores leave-one-out on the 16,
and can show a few per input (`similar` by shared words, `nearest` by the model's own embeddings). Where every
example copies its fields from its input (people), adapt ends by trying its winner with copied spans.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

import robustprompt as rp

DATA = Path(__file__).parent / "data"


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


class Ticket(BaseModel):
    text: str


class Topic(BaseModel):
    topic: Literal["billing", "shipping", "technical", "account"]


class Sentence(BaseModel):
    text: str


class Person(BaseModel):
    name: str
    age: int
    city: str


TASKS: dict[str, tuple[rp.Task[Any, Any], str]] = {
    "sentiment": (
        rp.Task(
            "classify_review",
            input=Review,
            output=Sentiment,
            instructions="Classify the sentiment of the product review as positive or negative.",
            examples=[
                rp.Example(Review(text="Works great and arrived early, very pleased."), Sentiment(label="positive")),
                rp.Example(Review(text="Stopped working after a day, total junk."), Sentiment(label="negative")),
                rp.Example(Review(text="Soft fabric and a perfect fit, I love it."), Sentiment(label="positive")),
                rp.Example(Review(text="Arrived broken and the seller refused a refund."), Sentiment(label="negative")),
            ],
        ),
        "sentiment.jsonl",
    ),
    "tickets": (
        rp.Task(
            "ticket_topic",
            input=Ticket,
            output=Topic,
            instructions="Give the topic of the customer support ticket: billing, shipping, technical or account.",
            examples=[
                rp.Example(Ticket(text="My invoice shows a price higher than the offer."), Topic(topic="billing")),
                rp.Example(Ticket(text="The package never arrived at my door."), Topic(topic="shipping")),
                rp.Example(Ticket(text="The page shows a blank screen after login."), Topic(topic="technical")),
                rp.Example(Ticket(text="I forgot my username, can you reset it?"), Topic(topic="account")),
            ],
        ),
        "tickets.jsonl",
    ),
    "people": (
        rp.Task(
            "extract_person",
            input=Sentence,
            output=Person,
            instructions="Extract the person's full name, age in years and city from the sentence.",
            examples=[
                rp.Example(
                    Sentence(text="Anna Weber, 52, lives in Graz."), Person(name="Anna Weber", age=52, city="Graz")
                ),
                rp.Example(
                    Sentence(text="Yesterday Paulo Silva (23) flew home to Recife."),
                    Person(name="Paulo Silva", age=23, city="Recife"),
                ),
                rp.Example(
                    Sentence(text="In Oslo, the 67-year-old Ingrid Dahl still skis."),
                    Person(name="Ingrid Dahl", age=67, city="Oslo"),
                ),
                rp.Example(
                    Sentence(text="Mark Evans is 30 and works in Cardiff."),
                    Person(name="Mark Evans", age=30, city="Cardiff"),
                ),
            ],
        ),
        "people.jsonl",
    ),
}


def with_dev_examples(task: rp.Task[Any, Any], file: str) -> rp.Task[Any, Any]:
    """The same task carrying its examples and the dev cases as examples (never the test cases)."""
    dev = [json.loads(line) for line in (DATA / "dev" / file).read_text().splitlines() if line.strip()]
    extra = [
        rp.Example(task.input_type.model_validate(d["input"]), task.output_type.model_validate(d["expected"]))
        for d in dev
    ]
    declared = [
        rp.Example(task.input_type.model_validate_json(i), task.output_type.model_validate_json(o))
        for i, o in task.examples
    ]
    return rp.Task(
        task.name,
        input=task.input_type,
        output=task.output_type,
        instructions=task.instructions,
        examples=declared + extra,
    )


def measure(task: rp.Task[Any, Any], model: rp.Model, cases: list[dict[str, Any]]) -> dict[str, Any]:
    valid = correct = 0
    configuration = None
    start = time.perf_counter()
    for case in cases:
        try:
            run = task.run(case["input"], model=model, policy=rp.Policy(reasks=1))
        except rp.OutputError as exc:
            configuration = exc.run.configuration
            continue
        configuration = run.configuration
        valid += 1
        correct += task.output_record(run.output) == case["expected"]
    n = len(cases)
    return {
        "n": n,
        "valid": valid / n,
        "accuracy": correct / n,
        "seconds": time.perf_counter() - start,
        "configuration": configuration,
    }


def per_member(adaptation: rp.Adaptation) -> dict[str, str]:
    """The best leave-one-out score adapt measured for each layout/input format, among its most-scored candidates."""
    best: dict[str, rp.Score] = {}
    for score in adaptation.candidates:
        key = f"{score.configuration.layout}/{score.configuration.input_format}"
        held = best.get(key)
        if held is None or (score.n, score.accuracy) > (held.n, held.accuracy):
            best[key] = score
    return {key: f"{s.correct}/{s.n}" for key, s in sorted(best.items())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=["local:smollm2", "local:gemma3-270m"])
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--json", help="write every figure as JSON")
    parser.add_argument("--limit", type=int, help="only N evenly spaced test cases of each task (a partial run)")
    parser.add_argument("--budget", type=int, default=None, help="adapt's budget of scored calls (its default)")
    parser.add_argument("--as-is", action="store_true", help="only the profile's default configuration: no adapt")
    parser.add_argument(
        "--examples", choices=["task", "dev"], default="task", help="dev: the tasks also carry the 12 dev cases"
    )
    parser.add_argument(
        "--embedder",
        dest="embedders",
        action="append",
        default=[],
        help="a model whose embeddings adapt may also rank examples by (repeatable)",
    )
    args = parser.parse_args()
    records = Path(tempfile.mkdtemp()) / "robustprompt.adapt.json"  # never the app's own records
    results: list[dict[str, Any]] = []
    print(
        "| model | task | n | as-is valid | as-is accuracy | adapted valid | adapted accuracy | configuration chosen |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = rp.model(name, temperature=0, max_output_tokens=64)
        for key in args.tasks:
            task, file = TASKS[key]
            if args.examples == "dev":
                task = with_dev_examples(task, file)
            task.adaptations = records
            cases = [json.loads(line) for line in (DATA / file).read_text().splitlines() if line.strip()]
            if args.limit:  # evenly spaced, so a file sorted by label still gives every label
                cases = cases[:: max(1, len(cases) // args.limit)][: args.limit]
            as_is = measure(task, model, cases)
            if args.as_is:
                results.append({"model": name, "task": key, "as_is": as_is})
                print(f"| {name} | {key} | {as_is['n']} | {as_is['valid']:.0%} | {as_is['accuracy']:.0%} | | | |")
                continue
            # The task's own examples only: the test cases are never shown to adapt.
            adaptation = task.adapt(model, budget=args.budget, progress=False, embedders=args.embedders)
            adapted = measure(task, model, cases)
            row = {
                "model": name,
                "task": key,
                "as_is": as_is,
                "adapted": adapted,
                "adapt_cost": {"calls": adaptation.calls, "tokens": adaptation.tokens, "seconds": adaptation.seconds},
                "chosen": adaptation.chosen.label,
                "per_member_loo": per_member(adaptation),
                "record": adaptation.to_json(),
            }
            results.append(row)
            print(
                f"| {name} | {key} | {as_is['n']} | {as_is['valid']:.0%} | {as_is['accuracy']:.0%} "
                f"| {adapted['valid']:.0%} | {adapted['accuracy']:.0%} | {adaptation.chosen.label} |",
                flush=True,
            )
    print("\n| model | task | adapt calls | adapt tokens | adapt seconds | best leave-one-out score per rendering |")
    print("|---|---|---|---|---|---|")
    for row in results:
        if "adapt_cost" not in row:
            continue
        cost = row["adapt_cost"]
        members = ", ".join(f"{k} {v}" for k, v in row["per_member_loo"].items())
        where = f"| {row['model']} | {row['task']} "
        print(f"{where}| {cost['calls']} | {cost['tokens']} | {cost['seconds']:.0f} | {members} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
