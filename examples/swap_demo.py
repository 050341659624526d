"""Swap demo: migrate one task from local:smollm2 to local:gemma3-270m, zero-shot and then with the task's examples.

    python examples/swap_demo.py [OUT_DIR]      # about a minute on 2 cores; writes two HTML reports

Both models run embedded (no key, no network), at temperature 0 with grammar-constrained decoding, on the 40
labelled reviews of benchmarks/data/sentiment.jsonl, with the task and the four examples of
benchmarks/local_accuracy.py. What it printed on this machine:

    zero-shot: accuracy 97.5 % -> 85.0 % (n=40), B - A -12.5 pts, McNemar p = 0.1250: B lower, not significant at n=40
    4 examples: accuracy 50.0 % -> 100.0 % (n=40), B - A +50.0 pts, McNemar p < 0.0001: B better

- Zero-shot, Gemma-3-270M (a base model) calls 6 negative reviews positive that SmolLM2 (an instruction-tuned
  chat model) gets right, and gets right the 1 that SmolLM2 misses: a drop of 12.5 points that 40 cases cannot
  confirm (6 against 1 discordant cases, p = 0.125), so the gate does not call it a regression, and the report
  says why. Run more cases before trusting a zero-shot swap.
- With the task's four examples, Gemma gets every review right and the gap is closed: B is significantly better.
  The same examples cost SmolLM2 half its accuracy (it answers "positive" to all 40 reviews), so the
  comparison that matters is the task as it will run, examples included, read in both columns.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

import robustprompt as rp
from robustprompt.evals import Case, CaseResult, Comparison, compare, format_p, format_pct, load_cases, render_html

CASES = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "sentiment.jsonl"
OLD, NEW = "local:smollm2", "local:gemma3-270m"


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


def classify(shots: int) -> rp.Task[Review, Sentiment]:
    return rp.Task(
        "classify_review",
        input=Review,
        output=Sentiment,
        instructions="Classify the sentiment of the product review as positive or negative.",
        examples=EXAMPLES[:shots],
    )


def results(task: rp.Task[Any, Any], cases: tuple[Case, ...], name: str) -> list[CaseResult]:
    model = rp.model(name, temperature=0, max_output_tokens=48)
    # One at a time: an embedded model decodes one sequence at a time anyway.
    outcomes = task.map([case.input for case in cases], model=model, batch=rp.Batch(concurrency=1), runs=True)
    return [
        CaseResult.from_outcome(case.id, task, outcome, model=name, expected=case.expected, profile=model.profile)
        for case, outcome in zip(cases, outcomes, strict=True)
    ]


def headline(label: str, c: Comparison) -> str:
    [accuracy] = [r for r in c.rates if r.metric == "accuracy"]
    diff, p = accuracy.diff or 0.0, accuracy.p_value
    significant = p is not None and p < c.thresholds.alpha
    if c.regressed:
        verdict = "B regresses"
    elif diff < 0:
        verdict = f"B lower, not significant at n={accuracy.n}" if not significant else "B lower, within --max-drop"
    else:
        verdict = "B better" if significant and diff > 0 else "no significant change"
    return (
        f"{label}: accuracy {format_pct(c.a.accuracy.value)} -> {format_pct(c.b.accuracy.value)} (n={accuracy.n}), "
        f"B - A {100 * diff:+.1f} pts, McNemar {format_p(p)}: {verdict}"
    )


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
    out.mkdir(parents=True, exist_ok=True)
    for shots, label in ((0, "zero-shot"), (len(EXAMPLES), f"{len(EXAMPLES)} examples")):
        task = classify(shots)
        cases = load_cases(CASES, task).cases
        c = compare(task.name, OLD, results(task, cases, OLD), NEW, results(task, cases, NEW))
        report = out / f"swap_{shots}shot.html"
        report.write_text(render_html(c), encoding="utf-8")
        print(f"{headline(label, c)}  [{report}]", flush=True)


if __name__ == "__main__":
    main()
