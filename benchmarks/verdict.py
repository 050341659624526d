"""The migration verdict on real recorded answers: "cannot judge" where nothing was measured, and the LLMDrift verdicts.

    python benchmarks/verdict.py            # a few seconds, no model needed: LLMDrift's recorded answers replayed

1. All-invalid replay. The 500 primes of LLMDrift's "is N prime?" file, gpt-4-0314 against gpt-4-0613, read by a
   task whose output is `{is_prime: bool, smallest_factor: int}`: no recorded answer holds that object, so both
   sides are 0 % valid. Before issue 18 the verdict was "no regression" and exit 0; now "cannot judge", exit 3,
   with the top failure reasons named.
2. The same 500 primes read by the yes/no task the example declares (the answers parse): the verdict stands, and
   the accuracy drop the recorded answers show is what the gate sees.

3. With `--local`: sampling noise on the embedded SmolLM2. A headline task, 6 reviews, each run 4 times
   (`robustprompt run --repeat 4`), once with the provider's default sampling and once with the default
   deterministic settings (temperature 0, seed 0): the share of cases whose 4 runs all agree. ~1 min on 2 cores.

Prints one line per comparison: verdict, exit code, each side's valid rate and accuracy, and the first reasons.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.llmdrift_prime import recording_path  # noqa: E402
from robustprompt.cli import main  # noqa: E402

FACTOR_TASK = """
from pydantic import BaseModel

import robustprompt as rp


class Factor(BaseModel):
    is_prime: bool
    smallest_factor: int


factor = rp.Task("factor", input=int, output=Factor, instructions="Is N prime? Give its smallest factor > 1.")
"""


def primes(recording: Path) -> list[tuple[str, int]]:
    with recording.open(encoding="utf-8", newline="") as handle:
        return [
            (row["id"], int(re.search(r"Is (\d+)", row["query"]).group(1)))  # type: ignore[union-attr]
            for row in csv.DictReader(handle)
            if row["model"] == "openaichat/gpt-4-0314" and row["ref_answer"].lower() == "yes"
        ]


def compare(task: str, cases: Path, recording: Path, folder: Path) -> str:
    report = folder / "report.json"
    argv = ["migrate", task, "--cases", str(cases), "--store", str(folder / "store.sqlite"), "--json", str(report)]
    argv += ["--from", f"replay:{recording}#model=openaichat/gpt-4-0314"]
    argv += ["--to", f"replay:{recording}#model=openaichat/gpt-4-0613"]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    c = json.loads(report.read_text())
    lines = out.getvalue().splitlines()
    verdict = next(line for line in lines if line.startswith("verdict: ")).removeprefix("verdict: ")
    reasons = [line.removeprefix("  - ").replace(str(recording), "FILE") for line in lines if line.startswith("  - ")]
    sides = ", ".join(
        f"{label} valid {100 * c[side]['valid']['value']:.1f} % accuracy {100 * c[side]['accuracy']['value']:.1f} %"
        for label, side in (("A", "a"), ("B", "b"))
    )
    name = task.rsplit("/", 1)[-1]
    return f"{name}: exit {code}, {verdict}; {sides}\n    " + "\n    ".join(reasons[:5])


HEADLINE_TASK = """
from pydantic import BaseModel

import robustprompt as rp


class Headline(BaseModel):
    headline: str


headline = rp.Task("headline", input=str, output=Headline, instructions="Write a short headline for the review.")
"""

REVIEWS = [
    "The zipper broke after two days and support never answered.",
    "Lovely colour, fits well, and it arrived a day early.",
    "Battery lasts a week; the screen is hard to read in the sun.",
    "Too small for my laptop, but the fabric feels sturdy.",
    "Great value: I bought a second one for my brother.",
    "The smell of the plastic did not go away after a month.",
]


def noise(folder: Path) -> None:
    (folder / "headline_task.py").write_text(HEADLINE_TASK)
    cases = folder / "reviews.jsonl"
    cases.write_text("".join(json.dumps({"id": str(i), "input": r}) + "\n" for i, r in enumerate(REVIEWS)))
    for label, extra in (
        ("provider default sampling", ["--temperature", "default", "--seed", "none"]),
        ("deterministic default", []),
    ):
        argv = ["run", f"{folder / 'headline_task.py'}:headline", "--cases", str(cases), "--model", "local:smollm2"]
        argv += ["--repeat", "4", "--concurrency", "1", "--store", str(folder / f"{len(extra)}.sqlite"), *extra]
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
            main(argv)
        stable = next(line for line in out.getvalue().splitlines() if line.startswith("stable cases"))
        print(f"local:smollm2, {label}: {' '.join(stable.split()[5:8])} cases stable over 4 runs")


def run() -> None:
    recording = recording_path()
    if not recording.is_file():
        raise SystemExit(f"LLMDrift recording not found at {recording}")
    found = primes(recording)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "factor_task.py").write_text(FACTOR_TASK)
        factor_cases, yes_no_cases = folder / "factor.jsonl", folder / "yes_no.jsonl"
        factor_cases.write_text(
            "".join(
                json.dumps({"id": i, "input": n, "expected": {"is_prime": True, "smallest_factor": n}}) + "\n"
                for i, n in found
            )
        )
        yes_no_cases.write_text("".join(json.dumps({"id": i, "input": n, "expected": "yes"}) + "\n" for i, n in found))
        print(f"{len(found)} primes, gpt-4-0314 (A) -> gpt-4-0613 (B), replayed")
        print(compare(f"{folder / 'factor_task.py'}:factor", factor_cases, recording, folder))
        print(compare(f"{ROOT / 'examples' / 'llmdrift_prime.py'}:task", yes_no_cases, recording, folder))
        if "--local" in sys.argv[1:]:
            noise(folder)


if __name__ == "__main__":
    run()
