"""Parse + validate throughput on a corpus of realistic model outputs, on one core.

    python parse_bench.py [--per-kind 1000] [--cpu 1]

The corpus is generated (seeded): Person objects written the ways models write them: clean compact JSON,
pretty JSON, a ```json fence, JSON inside prose, and broken JSON (trailing commas, single quotes / Python
literals, an answer cut off mid-way). Three contenders turn each text into a validated `Person` or a failure:

- robustprompt: `robustprompt._parse.parse(text, schema)` then `task.validator.validate(parsed.value)`,
  the engine's own path (extraction, repair, schema-aligned coercion, pydantic);
- json_repair: `json_repair.loads(text)` then `Person.model_validate(value)`;
- pydantic: `Person.model_validate_json(text)` alone (fails on anything but bare JSON).

Prints one JSON line: per kind and for the "typical" mix, outputs per second and the share validated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import INSTRUCTIONS, Doc, Person, pin

# The share of each kind in the "typical" mix: most answers clean (native structured output or a well-behaved
# model), a fair share fenced or wrapped in prose (prompted JSON), a few broken.
TYPICAL = {
    "clean": 0.55,
    "pretty": 0.10,
    "fenced": 0.15,
    "prose": 0.12,
    "trailing_comma": 0.03,
    "single_quotes": 0.03,
    "truncated": 0.02,
}
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken", "Margaret"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman", "Thompson"]
CITIES = ["London", "New York", "Zürich", "Amsterdam", "Paris", "Boston", "Tokyo", "São Paulo", "Berlin"]
LANGS = ["English", "French", "Italian", "German", "Dutch", "Japanese", "Portuguese", "Spanish", "Greek"]
PROSE_BEFORE = [
    "Sure! Here is the extracted information:\n\n",
    "Based on the text, the person is:\n",
    "I found one person in the text. ",
    "Here's the JSON you asked for:\n\n",
]
PROSE_AFTER = ["\n\nLet me know if you need anything else.", "", "\nI hope this helps!", " (all fields were present)"]


def _person(rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "name": f"{first} {last}",
        "age": rng.randint(18, 95),
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com",
        "city": rng.choice(CITIES),
        "languages": rng.sample(LANGS, rng.randint(1, 4)),
    }


def _trailing_commas(value: dict[str, Any]) -> str:
    items = [f'  "{k}": {json.dumps(v, ensure_ascii=False)}' for k, v in value.items()]
    langs = ", ".join(json.dumps(x, ensure_ascii=False) for x in value["languages"])
    items[-1] = f'  "languages": [{langs},]'
    return "{\n" + ",\n".join(items) + ",\n}"


def _render(kind: str, value: dict[str, Any], rng: random.Random) -> str:
    compact = json.dumps(value, ensure_ascii=False)
    pretty = json.dumps(value, ensure_ascii=False, indent=2)
    if kind == "clean":
        return compact
    if kind == "pretty":
        return pretty
    if kind == "fenced":
        return f"```json\n{pretty}\n```"
    if kind == "prose":
        return rng.choice(PROSE_BEFORE) + compact + rng.choice(PROSE_AFTER)
    if kind == "trailing_comma":
        return _trailing_commas(value)
    if kind == "single_quotes":
        return repr(value)  # Python's dict repr: single quotes
    if kind == "truncated":
        return compact[: int(len(compact) * rng.uniform(0.75, 0.95))]  # cut off at the token limit
    raise ValueError(kind)


def corpus(per_kind: int, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {kind: [_render(kind, _person(rng), rng) for _ in range(per_kind)] for kind in TYPICAL}


def _contenders() -> dict[str, Callable[[str], bool]]:
    import json_repair
    import pydantic

    import robustprompt as rp
    from robustprompt._parse import ParseError, parse

    task = rp.Task("extract_person", input=Doc, output=Person, instructions=INSTRUCTIONS)
    schema, validator = task.spec.schema, task.validator

    def robustprompt_path(text: str) -> bool:
        try:
            parsed = parse(text, schema)
        except ParseError:
            return False
        output, errors = validator.validate(parsed.value)
        return not errors and isinstance(output, Person)

    def json_repair_path(text: str) -> bool:
        try:
            Person.model_validate(json_repair.loads(text))
        except (pydantic.ValidationError, ValueError, TypeError):
            return False
        return True

    def pydantic_path(text: str) -> bool:
        try:
            Person.model_validate_json(text)
        except pydantic.ValidationError:
            return False
        return True

    return {"robustprompt": robustprompt_path, "json_repair": json_repair_path, "pydantic": pydantic_path}


def _time(fn: Callable[[str], bool], texts: list[str], repeats: int) -> tuple[float, int]:
    """Best seconds per text over `repeats` passes, and how many validated."""
    best, ok = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        ok = sum(map(fn, texts))
        best = min(best, time.perf_counter() - start)
    return best / len(texts), ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-kind", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    pin(args.cpu)
    texts = corpus(args.per_kind)
    results: dict[str, Any] = {"per_kind": args.per_kind, "typical_mix": TYPICAL, "kinds": {}, "typical": {}}
    for name, fn in _contenders().items():
        for text in texts["clean"][:50]:  # warm caches (schema walks, validators)
            fn(text)
        per_text: dict[str, float] = {}
        for kind, items in texts.items():
            seconds, ok = _time(fn, items, args.repeats)
            per_text[kind] = seconds
            results["kinds"].setdefault(kind, {})[name] = {"per_s": 1 / seconds, "valid_pct": 100 * ok / len(items)}
        mean = sum(TYPICAL[k] * per_text[k] for k in TYPICAL)  # the mix's average cost per output
        valid = sum(TYPICAL[k] * results["kinds"][k][name]["valid_pct"] for k in TYPICAL)
        results["typical"][name] = {"per_s": 1 / mean, "valid_pct": valid}
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
