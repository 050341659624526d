"""Answers you can trust: robustprompt's parser against json-repair on the same inputs, per category (issue 14).

    python benchmarks/parse_trust.py [--recording PATH] [--json out.json]

Each case is an answer text, the task's output type, and what a careful reader takes it to say: a value, or
"no answer" (cut off, ambiguous, or not there), where the right outcome is a typed error. Every contender turns
the text into a validated output or an error, and each outcome is one of:

- right: the expected value, or a typed error where no answer can be trusted;
- typed error: an error where a careful reader finds the value (safe, costs a re-ask);
- wrong: a value other than the expected one, accepted as valid (the outcome the contract forbids).

robustprompt runs the engine's own path (`parse` then the task's validator); json-repair runs `json_repair.loads`
then pydantic on the output type (as `{"answer": value}` for a plain output type, like robustprompt's wrapper).
json-repair is a benchmark-only peer: install it into the benchmark's environment, it is no dependency.

The recorded part replays LLMDrift's 4,000 real answers ("Is N prime? ... answer [Yes] or [No]") through the
CLI's replay path; the expected reading is the one bracket mark an answer holds, where it holds exactly one kind.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel

import robustprompt as rp
from robustprompt._parse import ParseError, parse

REPO = Path(__file__).resolve().parents[1]
NO_ANSWER = object()  # the right outcome is a typed error


class Person(BaseModel):
    name: str
    age: int


class Employee(BaseModel):
    name: str
    title: str
    manager: Employee | None = None


class Item(BaseModel):
    key: str
    key2: str | None = None


class Level(BaseModel):
    level: Literal["ONE", "TWO", "THREE"]


class Mood(BaseModel):
    mood: Literal["POS", "NEG"] = pydantic.Field(description="POS: good, happy; NEG: bad, sad")


class Summary(BaseModel):
    summary: str


Letter = Literal["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L"]


@dataclass(frozen=True)
class Case:
    text: str
    output: Any  # a model class or a plain type (wrapped as {"answer": ...} like a task does)
    expected: Any  # the output value, or NO_ANSWER


ANN = Person(name="Ann", age=41)

CATEGORIES: dict[str, list[Case]] = {
    # ------------------------------------------------------------------ wrong values that validate (items 1-8)
    "1 code fences": [
        Case("```python\nbob = {'name': 'Bob', 'age': 7}\n```\n{\"name\": \"Ann\", \"age\": 41}", Person, ANN),
        Case('```js\nconst p = {name: \'Bob\', age: 7}\n```\nResult: {"name": "Ann", "age": 41}', Person, ANN),
        Case('```py\n{"name": "Bob", "age": 7}\n```\n```json\n{"name": "Ann", "age": 41}\n```', Person, ANN),
        Case('{"name": "Ann", "age": 41, "note": "```python\nx = {\'name\': \'Bob\', \'age\': 7}\n```"}', Person, ANN),
        Case(
            'Here: {"name": "Ann", "note": "\n```json\n{\\"name\\": \\"Bob\\", \\"age\\": 7}\n```", "age": 41}',
            Person,
            ANN,
        ),
    ],
    "2 nested fragment of broken JSON": [
        Case(
            '{"name": "Ann", "title": "Buyer of 27" monitors", "manager": {"name": "Bob", "title": "CEO"}}',
            Employee,
            NO_ANSWER,
        ),
        Case(
            '{"name": "Ann", "title": "the "best" buyer", "manager": {"name": "Bob", "title": "CEO"}}',
            Employee,
            NO_ANSWER,
        ),
        Case(
            'Result: {"name": "Ann" title: Buyer "x", "manager": {"name": "Bob", "title": "CEO"}} done',
            Employee,
            NO_ANSWER,
        ),
    ],
    "3 cut-off answer": [
        Case('{"name": "Ann", "age": 4', Person, NO_ANSWER),
        Case('{"name": "Ann", "age": 41, "name2": "Bo', Person, NO_ANSWER),
        Case('```json\n{"name": "Ann", "age": 41,\n"manager": {"name": "B', Person, NO_ANSWER),
        Case("[1, 2, 3", list[int], NO_ANSWER),
        Case('{"answer": "The first half of the summ', str, NO_ANSWER),
    ],
    "4 several top-level values": [
        Case('{"key": "value"}, "key2": "value2"}', Item, NO_ANSWER),
        Case('{"name": "Ann"} "age": 41}', Person, NO_ANSWER),
        Case('{"name": "Ann", "age": 41} or {"name": "Bob", "age": 7}', Person, NO_ANSWER),
        Case('{"name": "Ann", "age": 41}\nSame again: {"name": "Ann", "age": 41}', Person, ANN),
    ],
    "5 unterminated string": [
        Case('{"key": "value}', Item, Item(key="value")),
        Case('{"key": "a", "key2": "b}', Item, Item(key="a", key2="b")),
        Case('{"answer": ["x", "y]}', list[str], ["x", "y"]),
    ],
    "6 letters read from words": [
        Case("As an AI, I cannot be sure, but a careful guess is hard.", Letter, NO_ANSWER),
        Case("I think this is a trick question.", Letter, NO_ANSWER),
        Case("As an AI, I think the answer is (B).", Letter, "B"),
        Case("I'd pick C) because a square has four sides.", Letter, "C"),
        Case("The answer: D", Letter, "D"),
        Case("E", Letter, "E"),
        Case("Not A. On reflection, it is option H.", Letter, "H"),
    ],
    "8 prose for a one-field string model": [
        Case("The review is about a blender that broke.", Summary, NO_ANSWER),
        Case("Summary: a blender that broke.", Summary, NO_ANSWER),
        Case('{"summary": "a blender that broke"}', Summary, Summary(summary="a blender that broke")),
    ],
    # ---------------------------------------------------------------------- answers a careful reader finds
    "final-answer conventions": [
        Case("6 * 7 = 42, so the answer is \\boxed{42}.", int, 42),
        Case("First \\boxed{41}. Wait, recount: \\boxed{42}", int, 42),
        Case("Adding them up.\nAnswer: 12,111", int, 12111),
        Case("After checking each case, the answer is true", bool, True),
        Case("[Yes]\n\nExplanation: it has no divisor.", bool, True),
        Case("Maybe [Yes]... no: on reflection [No].", bool, False),
        Case("See [1]. The answer is 9.", int, 9),
    ],
    "numbers written for people": [
        Case('{"answer": "12,111"}', int, 12111),
        Case('{"answer": "1/5"}', float, 0.2),
        Case('{"answer": "$19.50"}', float, 19.5),
        Case("The price is $19.50.\nAnswer: $19.50", float, 19.5),
        Case('{"answer": "12,11"}', int, NO_ANSWER),
    ],
    "enum values": [
        Case('{"level": "two"}', Level, Level(level="TWO")),
        Case('{"level": "ONE: the lowest level"}', Level, Level(level="ONE")),
        Case('{"level": "Three - top"}', Level, Level(level="THREE")),
        Case('{"level": "ONE or TWO"}', Level, NO_ANSWER),
        Case('{"mood": "happy"}', Mood, Mood(mood="POS")),
    ],
    "near-JSON syntax": [
        Case("{name: Ann, age: 41}", Person, ANN),
        Case('{"name": "Ann" "age": 41}', Person, ANN),
        Case('{"name": "Ann", "age": 41, "ok": TRUE, "x": Null}', Person, ANN),
        Case('{"answer": .25}', float, 0.25),
        Case("{“name”: “Ann”, “age”: 41}", Person, ANN),
        Case('{\\"name\\": \\"Ann\\", \\"age\\": 41}', Person, ANN),
        Case(json.dumps(json.dumps({"name": "Ann", "age": 41})), Person, ANN),
    ],
    "wrapper and wrong-case keys": [
        Case('{"Name": "Ann", "Age": 41}', Person, ANN),
        Case('{"person": {"name": "Ann", "age": 41}}', Person, ANN),
        Case('[{"name": "Ann", "age": 41}]', Person, ANN),
        Case('[{"name": "Ann", "age": 41}, {"name": "Bob", "age": 7}]', Person, NO_ANSWER),
    ],
    "bare array or value for a non-object output": [
        Case("[1, 2, 3,]", list[int], [1, 2, 3]),
        Case("The list: [1, 2, 3]", list[int], [1, 2, 3]),
        Case("```json\n[\"a\", 'b']\n```", list[str], ["a", "b"]),
        Case("42", int, 42),
    ],
    "plain str output": [
        Case("def f():\n    return {}\n", str, "def f():\n    return {}"),
        Case('Use {"a": 1} as the body.', str, 'Use {"a": 1} as the body.'),
        Case('{"answer": "hello"}', str, "hello"),
    ],
}


class Tags(BaseModel):
    tags: list[str]


class Order(BaseModel):
    id: int
    items: list[str]
    paid: bool


# Written after the fixes and run once, as they stand: the categories of peers' suites (BAML's jsonish tests,
# json_repair's tests), none of their cases.
HELD_OUT: dict[str, list[Case]] = {
    "held out: comments and markdown": [
        Case(
            '{"id": 1, // the id\n "items": ["a"], /* paid? */ "paid": true}',
            Order,
            Order(id=1, items=["a"], paid=True),
        ),
        Case(
            'Here is the order:\n\n```json\n{"id": 2, "items": ["b", "c"], "paid": false}\n```\n\nThanks!',
            Order,
            Order(id=2, items=["b", "c"], paid=False),
        ),
        Case('```\n{"id": 3, "items": [], "paid": true}\n```', Order, Order(id=3, items=[], paid=True)),
        Case('**Order**: {"id": 4, "items": ["x"], "paid": true}.', Order, Order(id=4, items=["x"], paid=True)),
    ],
    "held out: quotes and escapes": [
        Case("{'id': 5, 'items': ['it\\'s'], 'paid': True}", Order, Order(id=5, items=["it's"], paid=True)),
        Case('{"id": 6, "items": ["say \\"hi\\""], "paid": false}', Order, Order(id=6, items=['say "hi"'], paid=False)),
        Case('{"id": 7, "items": ["line\nbreak"], "paid": true}', Order, Order(id=7, items=["line\nbreak"], paid=True)),
        Case('{"id": 8, "items": ["tab\there"], "paid": true}', Order, Order(id=8, items=["tab\there"], paid=True)),
    ],
    "held out: numbers and literals": [
        Case('{"id": "9", "items": ["a"], "paid": "true"}', Order, Order(id=9, items=["a"], paid=True)),
        Case('{"id": 1e1, "items": ["a"], "paid": "yes"}', Order, Order(id=10, items=["a"], paid=True)),
        Case('{"id": 11.5, "items": ["a"], "paid": true}', Order, NO_ANSWER),
        Case('{"id": 12, "items": ["a"], "paid": False}', Order, Order(id=12, items=["a"], paid=False)),
        Case('{"id": -0, "items": ["a"], "paid": true}', Order, Order(id=0, items=["a"], paid=True)),
    ],
    "held out: shapes": [
        Case('{"tags": "solo"}', Tags, Tags(tags=["solo"])),
        Case('{"tags": ["a", "b",],}', Tags, Tags(tags=["a", "b"])),
        Case('["a", "b"]', Tags, Tags(tags=["a", "b"])),
        Case('{"tags": ["a", "b"]} {"tags": ["c"]}', Tags, NO_ANSWER),
        Case('{"order": {"id": 13, "items": ["a"], "paid": true}}', Order, Order(id=13, items=["a"], paid=True)),
    ],
    "held out: broken or cut": [
        Case('{"id": 14, "items": ["a", "b"', Order, NO_ANSWER),
        Case('{"id": 15, "items": ["a"], "paid": tr', Order, NO_ANSWER),
        Case('{"id": 16, "items": ["a"] "paid": true}', Order, Order(id=16, items=["a"], paid=True)),
        Case('{"id": 17, "items": ["a"], "paid": true}}', Order, Order(id=17, items=["a"], paid=True)),
        Case('{"id": 18 "items": ["a"], "paid": true', Order, NO_ANSWER),
    ],
    "held out: prose answers": [
        Case("Let me count: 3 + 4 = 7. **Final answer: 7**", int, 7),
        Case("The result is 7.", int, NO_ANSWER),
        Case("So the answer is $\\boxed{\\frac{1}{5}}$.", float, 0.2),
        Case("Answer: No.", bool, False),
        Case("I believe the correct option is (C), not (A).", Literal["A", "B", "C", "D"], "C"),
        Case("Option A is wrong; B is right.", Literal["A", "B", "C", "D"], NO_ANSWER),
    ],
}


def _validator(output: Any) -> tuple[rp.Task[Any, Any], type[BaseModel]]:
    task: rp.Task[Any, Any] = rp.Task("bench", input=str, output=output, instructions="Answer.")
    return task, task.validator.model


Outcome = tuple[str, Any]  # ("value", v) or ("error", message)


def robustprompt_reads(text: str, output: Any) -> Outcome:
    task, _ = _validator(output)
    try:
        parsed = parse(text, task.spec.schema, text_output=output is str)
    except ParseError as exc:
        return "error", str(exc)
    value, errors = task.validator.validate(parsed.value)
    return ("error", errors) if errors else ("value", value)


def json_repair_reads(text: str, output: Any) -> Outcome:
    import json_repair

    task, model = _validator(output)
    try:
        value = json_repair.loads(text)
    except Exception as exc:  # any failure of the peer is its typed error
        return "error", repr(exc)
    wrapped = not (isinstance(output, type) and issubclass(output, BaseModel))
    try:
        obj = model.model_validate({"answer": value} if wrapped else value)
    except pydantic.ValidationError as exc:
        return "error", str(exc)
    return "value", task.validator.unwrap(obj)


def grade(outcome: Outcome, expected: Any) -> str:
    kind, value = outcome
    if kind == "error":
        return "right" if expected is NO_ANSWER else "typed error"
    return "right" if expected is not NO_ANSWER and value == expected else "wrong"


CONTENDERS: dict[str, Callable[[str, Any], Outcome]] = {
    "robustprompt": robustprompt_reads,
    "json_repair": json_repair_reads,
}


def synthetic() -> dict[str, dict[str, Counter[str]]]:
    table: dict[str, dict[str, Counter[str]]] = {}
    for category, cases in (CATEGORIES | HELD_OUT).items():
        for name, reads in CONTENDERS.items():
            counts = table.setdefault(category, {}).setdefault(name, Counter())
            for case in cases:
                counts[grade(reads(case.text, case.output), case.expected)] += 1
    return table


_MARK = re.compile(r"\[\s*(yes|no)\s*\]", re.I)


def recorded(path: Path) -> dict[str, Counter[str]]:
    """LLMDrift's answers through the replay path, graded where the answer marks exactly one of [Yes] / [No]."""
    sys.path.insert(0, str(REPO / "examples"))
    import llmdrift_prime

    from robustprompt.evals._cases import load_cases
    from robustprompt.evals._replay import ReplaySource

    with tempfile.TemporaryDirectory() as tmp:
        cases_file = Path(tmp) / "cases.jsonl"
        llmdrift_prime.write_cases(path, cases_file)
        cases = load_cases(cases_file, llmdrift_prime.task).cases
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    models = sorted({row["model"] for row in rows})
    counts: dict[str, Counter[str]] = {name: Counter() for name in CONTENDERS}
    for model in models:
        source = ReplaySource.open(f"replay:{path}#model={model}")
        texts = {row["id"]: row["answer"] for row in rows if row["model"] == model}
        for case, result in zip(cases, source.results(llmdrift_prime.task, cases), strict=True):
            marks = {mark.lower() for mark in _MARK.findall(texts[case.id])}
            expected = marks.pop() if len(marks) == 1 else NO_ANSWER
            ours: Outcome = ("value", result.output["answer"]) if result.ok and result.output else ("error", None)
            counts["robustprompt"][_graded_recorded(ours, expected)] += 1
            counts["json_repair"][
                _graded_recorded(json_repair_reads(texts[case.id], Literal["yes", "no"]), expected)
            ] += 1
    return counts


def _graded_recorded(outcome: Outcome, expected: Any) -> str:
    if expected is NO_ANSWER:  # no single mark: not graded, only counted by what the contender did
        return "ungraded: value" if outcome[0] == "value" else "ungraded: error"
    return grade(outcome, expected)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--recording", type=Path, default=REPO.parent / "shared" / "data" / "llmdrift" / "PRIME_FULL_EVAL.csv"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    table = synthetic()
    width = max(len(c) for c in table)
    print(
        f"{'category':<{width}}  {'cases':>5}  {'robustprompt right/typed error/wrong':>33}"
        f"  {'json_repair right/typed error/wrong':>33}"
    )
    totals: dict[str, Counter[str]] = {name: Counter() for name in CONTENDERS}
    for category, by_name in table.items():
        cells = []
        for name in CONTENDERS:
            c = by_name[name]
            totals[name].update(c)
            cells.append(f"{c['right']:>3} / {c['typed error']:>3} / {c['wrong']:>3}")
        print(f"{category:<{width}}  {len((CATEGORIES | HELD_OUT)[category]):>5}  {cells[0]:>33}  {cells[1]:>33}")
    cells = [f"{t['right']:>3} / {t['typed error']:>3} / {t['wrong']:>3}" for t in totals.values()]
    print(f"{'all':<{width}}  {sum(map(len, (CATEGORIES | HELD_OUT).values())):>5}  {cells[0]:>33}  {cells[1]:>33}")
    out: dict[str, Any] = {"synthetic": {k: {n: dict(c) for n, c in v.items()} for k, v in table.items()}}
    if args.recording.is_file():
        counts = recorded(args.recording)
        print("\nLLMDrift, 4,000 recorded answers through replay (graded where one [Yes]/[No] mark):")
        for name, c in counts.items():
            print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
        out["recorded"] = {n: dict(c) for n, c in counts.items()}
    else:
        print(f"\n(no recording at {args.recording}: the recorded part is skipped)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
