"""Cascade amplification: a deviation injected at link k of an n-link pipeline, with the contracts on and off.

    python benchmarks/cascade.py [N]            # N inputs per row (default 200); a few seconds, no model needed

Each link is a small task on a deterministic test double: it takes a record {id, trail, total}, appends k to the
trail and adds k to the total; its check is that the total is the trail's sum. A healthy model reads its input as
a language model would: it does its best with what it is given (a missing trail is empty, a missing total is 0),
so a bad value upstream becomes a plausible, internally consistent, wrong value downstream.

Faults, injected at link k only:
- wrong schema: on a quarter of the inputs (id % 4 == 0), `{"id", "trail": "1,2", "sum": 3}`, on every re-ask too;
- caught by checks: on a quarter of the inputs, the right trail with a total off by one (schema-valid, plausible);
- dead model: every call to link k's model raises ModelNotFoundError.

Contracts OFF is the unguarded app: the same prompts to the same models, `json.loads` of each answer, handed on
as it is; an exception ends the run wherever it is raised. Contracts ON is a Pipeline of the same tasks and
models: output validated (schema + checks) with one re-ask, and each link's declared handling, by position:
links 1, 4 fall back to a healthy spare model, links 2, 5 hand on a declared default, link 3 stops the run.

"bad value at end" is a run that returns an output other than the right one with nothing to say so (with the
contracts on, a run that took a default is counted apart: its trace flags it). "stopped, link named" is a run
that ended in a PipelineError naming link k.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel

import robustprompt as rp
from robustprompt._pipeline import Link, Pipeline, PipelineError, PipelineRun
from robustprompt._prompt import OutputMode, Prompt, render
from robustprompt.testing import FunctionModel

Fault = Literal["wrong schema", "caught by checks", "dead model"]
FAULTS: tuple[Fault, ...] = ("wrong schema", "caught by checks", "dead model")
POLICY = rp.Policy(reasks=1, transport_retries=0)


class Stage(BaseModel):
    id: int
    trail: list[int]
    total: int


def consistent(stage: Stage) -> str | None:
    return None if stage.total == sum(stage.trail) else f"total {stage.total} is not the trail's sum"


DEFAULT = Stage(id=-1, trail=[], total=0)


def task(k: int) -> rp.Task[Stage, Stage]:
    return rp.Task(
        f"step{k}",
        input=Stage,
        output=Stage,
        instructions=f"Append {k} to the trail and add {k} to the total.",
        checks=[consistent],
    )


def handling(k: int) -> str:
    return ("fallback", "default", "stop")[(k - 1) % 3]


def given(prompt: Prompt) -> Any:
    inputs = [m.content for m in prompt.messages if m.role == "user" and m.content.startswith("Input:")]
    return json.loads(inputs[-1].split("\n", 1)[1])


def healthy(k: int, record: Any) -> dict[str, Any]:
    """Link k's right answer, made the best of whatever came in, as a language model would."""
    record = record if isinstance(record, dict) else {}
    trail = record.get("trail") if isinstance(record.get("trail"), list) else []
    total = record.get("total") if isinstance(record.get("total"), int) else 0
    return {"id": record.get("id", 0), "trail": [*trail, k], "total": total + k}


def faulty(k: int, fault: Fault, record: Any) -> dict[str, Any]:
    right = healthy(k, record)
    if fault == "dead model":
        # As a real provider says it: the model's name, which several links of an app may share, and no link.
        raise rp.ModelNotFoundError("the model does not exist", provider="bench", model="shared-model")
    if right["id"] % 4:
        return right
    if fault == "wrong schema":
        return {"id": right["id"], "trail": ",".join(map(str, right["trail"])), "sum": right["total"]}
    return {**right, "total": right["total"] + 1}


def model(name: str, answer: Callable[[Any], dict[str, Any]]) -> FunctionModel:
    return FunctionModel(lambda prompt: json.dumps(answer(given(prompt))), name=name)


def models(n: int, k: int, fault: Fault | None, tag: str) -> list[FunctionModel]:
    """Link j's model; link k's misbehaves. Names are unique per row: a model's health is remembered by name."""
    return [
        model(f"bench:{tag}-link{j}", partial(faulty, j, fault) if j == k and fault else partial(healthy, j))
        for j in range(1, n + 1)
    ]


def inputs(count: int) -> list[Stage]:
    return [Stage(id=i, trail=[i % 10], total=i % 10) for i in range(count)]


def right_end(stage: Stage, n: int) -> dict[str, Any]:
    steps = list(range(1, n + 1))
    return {"id": stage.id, "trail": [*stage.trail, *steps], "total": stage.total + sum(steps)}


def run_off(tasks: list[rp.Task[Stage, Stage]], chain: list[FunctionModel], stage: Stage) -> Any:
    """The unguarded app: each answer parsed as JSON and handed on as it is."""
    value: Any = stage.model_dump()
    for t, m in zip(tasks, chain, strict=True):
        prompt = render(t.instructions, t.examples, json.dumps(value), t.spec, OutputMode.PROMPTED)
        value = json.loads(m.backend.complete(prompt).text)
    return value


def off(n: int, k: int, fault: Fault, items: list[Stage]) -> Counter[str]:
    tasks, chain = [task(j) for j in range(1, n + 1)], models(n, k, fault, f"off-n{n}-k{k}-{fault}")
    counts: Counter[str] = Counter()
    for stage in items:
        try:
            end = run_off(tasks, chain, stage)
        except Exception:  # the unguarded app crashes wherever the error surfaces, naming no link
            counts["crashed"] += 1
            continue
        counts["bad" if end != right_end(stage, n) else "right"] += 1
    return counts


def pipeline(n: int, k: int, fault: Fault | None, tag: str) -> Pipeline:
    links = []
    for j, m in enumerate(models(n, k, fault, tag), 1):
        how = handling(j)
        options: dict[str, Any] = {}
        if how == "fallback":
            options["fallback"] = model(f"bench:{tag}-spare{j}", partial(healthy, j))
        elif how == "default":
            options["default"] = DEFAULT
        links.append(Link(f"link{j}", task(j), model=m, policy=POLICY, **options))
    return Pipeline(f"cascade{n}", links)


def on(n: int, k: int, fault: Fault, items: list[Stage]) -> Counter[str]:
    batch = pipeline(n, k, fault, f"on-n{n}-k{k}-{fault}").map(items, batch=rp.Batch(concurrency=16))
    counts: Counter[str] = Counter()
    for stage, item in zip(items, batch.items, strict=True):
        counts[_on_outcome(stage, item, n, k)] += 1
    return counts


def _on_outcome(stage: Stage, item: PipelineRun | rp.RobustPromptError, n: int, k: int) -> str:
    if isinstance(item, PipelineError):
        return "named" if item.link == f"link{k}" else "stopped elsewhere"
    if not isinstance(item, PipelineRun):
        return "other error"
    outcomes = {t.outcome for t in item.trace.values()}
    if "default" in outcomes:
        return "default"
    if item.output.model_dump() != right_end(stage, n):
        return "bad"
    return "fallback" if "fallback" in outcomes else "right"


def pct(count: int, total: int) -> str:
    return f"{100 * count / total:.1f} %"


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    items = inputs(count)
    share = pct(sum(stage.id % 4 == 0 for stage in items), count)
    print(f"{count} inputs per row; output faults hit the inputs with id % 4 == 0 ({share})\n")
    print(
        "| n | fault | k | k on failure | off: bad value at end | off: crashed, no link named | on: bad value at end "
        "| on: stopped, link named | on: recovered by fallback | on: default handed on (flagged) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    surprises: Counter[str] = Counter()
    for n in (3, 5):
        for fault in FAULTS:
            for k in range(1, n + 1):
                a, b = off(n, k, fault, items), on(n, k, fault, items)
                surprises.update({key: b[key] for key in ("stopped elsewhere", "other error")})
                cells = [pct(a["bad"], count), pct(a["crashed"], count)]
                cells += [pct(b[key], count) for key in ("bad", "named", "fallback", "default")]
                print(f"| {n} | {fault} | {k} | {handling(k)} | " + " | ".join(cells) + " |")
    clean = pipeline(5, 0, None, "clean").map(items, batch=rp.Batch(concurrency=16))
    right = sum(
        isinstance(run, PipelineRun) and run.ok and run.output.model_dump() == right_end(stage, 5)
        for stage, run in zip(items, clean.items, strict=True)
    )
    print(f"\nno fault, n = 5, contracts on: {pct(right, count)} right with every link ok")
    print(f"runs stopped at a link other than the faulted one, or by another error: {sum(surprises.values())}")


if __name__ == "__main__":
    main()
