"""LLMDrift's recorded answers, replayed through the documented example: the study's figures, from the generic parser.

The paper (Chen, Zaharia and Zou, arXiv 2307.09009) reports, on these 1,000 "is N prime?" questions: accuracy
gpt-4-0314 84.0 %, gpt-4-0613 51.1 %, gpt-3.5-turbo-0301 49.6 %, gpt-3.5-turbo-0613 76.2 %; mismatch 62.6 %
(GPT-4) and 59.7 % (GPT-3.5). One figure differs, on purpose: gpt-3.5-turbo-0301 reads 52.9 % here. The paper's
scorer takes "yes" wherever the word appears, before it looks for "no"; in 107 answers that open with "[No]" it
reads the "yes" of sentences such as "If yes, then it is not a prime number". Those answers are "[No]".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from robustprompt.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTPROMPT_SHARED") or REPO.parent / "shared")
RECORDING = SHARED / "data" / "llmdrift" / "PRIME_FULL_EVAL.csv"
EXAMPLE = REPO / "examples" / "llmdrift_prime.py"

PAPER_ACCURACY = {"gpt-4-0314": 84.0, "gpt-4-0613": 51.1, "gpt-3.5-turbo-0301": 49.6, "gpt-3.5-turbo-0613": 76.2}
# Read correctly, see above: the paper's scorer credits 70 "[No]" answers to primes and discredits 37 to composites.
ACCURACY = PAPER_ACCURACY | {"gpt-3.5-turbo-0301": 52.9}
PAPER_MISMATCH = {"gpt-4": 62.6, "gpt-3.5": 59.7}

pytestmark = pytest.mark.skipif(not RECORDING.is_file(), reason=f"LLMDrift recording not found at {RECORDING}")


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The case file, written by the example as its docstring says."""
    out = tmp_path_factory.mktemp("llmdrift") / "prime_cases.jsonl"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(RECORDING), str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("wrote 1000 cases")
    return out


def migrate(cases: Path, old: str, new: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    report = tmp_path / "report.json"
    code = main(
        [
            "migrate",
            f"{EXAMPLE}:task",
            "--cases",
            str(cases),
            "--from",
            f"replay:{RECORDING}#model=openaichat/{old}",
            "--to",
            f"replay:{RECORDING}#model=openaichat/{new}",
            "--store",
            str(tmp_path / "store.sqlite"),
            "--json",
            str(report),
        ]
    )
    loaded: dict[str, Any] = json.loads(report.read_text())
    return code, loaded


def percent(rate: dict[str, Any]) -> float:
    value: float = rate["value"]
    return 100 * value


def accuracy_change(report: dict[str, Any]) -> dict[str, Any]:
    changes: list[dict[str, Any]] = [r for r in report["rates"] if r["metric"] == "accuracy"]
    [change] = changes
    return change


def test_gpt4_march_to_june_is_a_significant_regression(cases: Path, tmp_path: Path) -> None:
    code, report = migrate(cases, "gpt-4-0314", "gpt-4-0613", tmp_path)
    assert code == 1 and report["regressed"]
    assert percent(report["a"]["accuracy"]) == pytest.approx(ACCURACY["gpt-4-0314"], abs=1)
    assert percent(report["b"]["accuracy"]) == pytest.approx(ACCURACY["gpt-4-0613"], abs=1)
    assert percent(report["mismatch"]) == pytest.approx(PAPER_MISMATCH["gpt-4"], abs=1)
    assert report["a"]["accuracy"]["n"] == report["paired"] == 1000
    change = accuracy_change(report)
    assert change["regressed"] and change["p_value"] < 0.05
    assert any(reason.startswith("accuracy fell") for reason in report["reasons"])


def test_gpt35_march_to_june_is_a_significant_improvement(cases: Path, tmp_path: Path) -> None:
    code, report = migrate(cases, "gpt-3.5-turbo-0301", "gpt-3.5-turbo-0613", tmp_path)
    assert percent(report["a"]["accuracy"]) == pytest.approx(ACCURACY["gpt-3.5-turbo-0301"], abs=1)
    assert percent(report["b"]["accuracy"]) == pytest.approx(ACCURACY["gpt-3.5-turbo-0613"], abs=1)
    assert percent(report["mismatch"]) == pytest.approx(PAPER_MISMATCH["gpt-3.5"], abs=1)
    change = accuracy_change(report)
    assert change["diff"] > 0 and change["p_value"] < 0.05 and not change["regressed"]
    assert code == 0, report["reasons"]


def _paper_answer(text: str) -> str | None:
    """The study's scorer as its repository has it: each word wrapped in brackets, then a substring search in which
    "yes" wins wherever it appears ("[No]" becomes "[[no]]", which contains "[no]")."""
    wrapped = " ".join(f"[{w}]" for w in text.lower().replace(",", " ").replace(".", " ").split())
    return "yes" if "[yes]" in wrapped else "no" if "[no]" in wrapped else None


def test_the_papers_own_scorer_gives_its_figures_on_this_recording_and_explains_the_one_gap() -> None:
    import csv
    from collections import defaultdict

    from robustprompt._parse import ParseError, parse

    csv.field_size_limit(1 << 30)
    with RECORDING.open(encoding="utf-8", newline="") as recording:
        rows = list(csv.DictReader(recording))
    paper: dict[str, dict[str, str | None]] = defaultdict(dict)
    for row in rows:
        paper[row["model"].split("/")[1]][row["id"]] = _paper_answer(row["answer"])
    refs = {row["id"]: row["ref_answer"].lower() for row in rows}
    for model, published in PAPER_ACCURACY.items():
        answers = paper[model]
        assert round(100 * sum(answers[i] == refs[i] for i in answers) / len(answers), 1) == published
    for family, (old, new) in {
        "gpt-4": ("gpt-4-0314", "gpt-4-0613"),
        "gpt-3.5": ("gpt-3.5-turbo-0301", "gpt-3.5-turbo-0613"),
    }.items():
        changed = sum(paper[old][i] != paper[new][i] for i in paper[old])
        assert round(100 * changed / len(paper[old]), 1) == PAPER_MISMATCH[family]
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"], "type": "string"}},
        "required": ["answer"],
    }
    disagreements = []
    for row in rows:
        if row["model"].endswith("gpt-3.5-turbo-0301"):
            try:
                ours = parse(row["answer"], schema).value["answer"]
            except ParseError:
                ours = None
            if ours != paper["gpt-3.5-turbo-0301"][row["id"]]:
                disagreements.append(row["answer"])
    assert len(disagreements) == 107
    assert all("[no]" in answer.lower() for answer in disagreements)  # each one says "[No]" explicitly
