"""The verdict of `robustprompt migrate` at the command line: no green on no evidence."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustprompt.cli import main
from robustprompt.evals._commands import EXIT_CANNOT_JUDGE
from robustprompt.testing import OpenAIServer
from robustprompt.testing._openai_server import chat_reply
from robustprompt.testing._server import Received, Reply

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTPROMPT_SHARED") or REPO.parent / "shared")
RECORDING = SHARED / "data" / "llmdrift" / "PRIME_FULL_EVAL.csv"

TASKS = """
from typing import Literal

from pydantic import BaseModel

import robustprompt as rp


class Factor(BaseModel):
    is_prime: bool
    smallest_factor: int


# The recorded answers are prose ending in [Yes] / [No]: no answer holds this JSON object.
factor = rp.Task("factor", input=int, output=Factor, instructions="Is N prime? Give its smallest factor > 1.")
yes_no = rp.Task("yes_no", input=int, output=Literal["yes", "no"], instructions="Is the number prime?")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "tasks.py").write_text(TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTPROMPT_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("tasks", None)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


# ------------------------------------------------------------------------------- 1. no green on no evidence


@pytest.mark.skipif(not RECORDING.is_file(), reason=f"LLMDrift recording not found at {RECORDING}")
def test_an_all_invalid_replay_cannot_be_judged_and_names_the_failures(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 500 primes of the recording, read by a task whose output no recorded answer holds: 0 % against 0 %."""
    rows = []
    with RECORDING.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["model"] == "openaichat/gpt-4-0314" and row["ref_answer"].lower() == "yes":
                n = int(re.search(r"Is (\d+)", row["query"]).group(1))  # type: ignore[union-attr]
                rows.append({"id": row["id"], "input": n, "expected": {"is_prime": True, "smallest_factor": n}})
    assert len(rows) == 500
    file = write_jsonl(project / "primes.jsonl", rows)
    a, b = (f"replay:{RECORDING}#model=openaichat/{m}" for m in ("gpt-4-0314", "gpt-4-0613"))
    argv = ["migrate", "tasks.py:factor", "--cases", file, "--from", a, "--to", b]
    code, out, _ = run_cli(capsys, *argv, "--json", "out.json", "--report", "out.html")
    assert code == EXIT_CANNOT_JUDGE == 3
    assert "verdict: CANNOT JUDGE" in out and "no regression" not in out.split("\n")[1]
    assert "A (" in out and "is schema-valid on 0.0 % of 500 case(s), under the 50.0 % floor" in out
    assert "0 paired case(s) are valid on both sides, fewer than the 10 needed" in out
    # The parser now tells a malformed answer from one with no JSON at all: the top reason is counted per kind.
    assert re.search(r"top failure on A: OutputError x\d+ of 500: no valid output after N attempt\(s\): ", out)
    assert re.search(r"top failure on B: OutputError x\d+ of 500: no valid output after N attempt\(s\): ", out)
    report = json.loads((project / "out.json").read_text())
    assert report["verdict"] == "cannot judge" and not report["regressed"]
    assert sum(f["count"] for f in report["a"]["top_failures"]) == 500  # every case failed, by reason
    assert 'class="verdict unsure"' in (project / "out.html").read_text()
    # The floors are the user's to set: with none, the same evidence reads as it did before.
    code, out, _ = run_cli(capsys, *argv, "--min-valid", "0", "--min-pairs", "0")
    assert code == 0 and "verdict: no regression" in out


def yes_no_replay(project: Path, a: dict[str, str], b: dict[str, str]) -> str:
    rows = [{"model": m, "id": i, "answer": t} for m, answers in (("a", a), ("b", b)) for i, t in answers.items()]
    return "replay:" + write_jsonl(project / "rec.jsonl", rows)  # type: ignore[arg-type]


def yes_cases(project: Path, n: int) -> str:
    return write_jsonl(project / "cases.jsonl", [{"id": str(i), "input": i, "expected": "yes"} for i in range(n)])


def test_a_regression_stands_even_when_b_is_under_the_floor(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = yes_no_replay(project, {str(i): "[Yes]" for i in range(20)}, {str(i): "who knows" for i in range(20)})
    code, out, _ = run_cli(
        capsys, "migrate", "tasks.py:yes_no", "--cases", yes_cases(project, 20),
        "--from", f"{answers}#model=a", "--to", f"{answers}#model=b",
    )  # fmt: skip
    assert code == 1 and "B REGRESSES" in out


def test_a_side_under_the_floor_with_no_regression_cannot_be_judged(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A parses on 8 of 20 cases (40 %): B looks better, but A's side measured mostly the parser."""
    a = {str(i): "[Yes]" if i < 8 else "who knows" for i in range(20)}
    answers = yes_no_replay(project, a, {str(i): "[Yes]" for i in range(20)})
    argv = ["migrate", "tasks.py:yes_no", "--cases", yes_cases(project, 20)]
    argv += ["--from", f"{answers}#model=a", "--to", f"{answers}#model=b"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 3 and "A (replay:" in out and "is schema-valid on 40.0 % of 20 case(s)" in out
    code, out, _ = run_cli(capsys, *argv, "--min-valid", "40%", "--min-pairs", "8")
    assert code == 0, out


def test_too_few_cases_cannot_be_judged(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = yes_no_replay(project, {str(i): "[Yes]" for i in range(5)}, {str(i): "[Yes]" for i in range(5)})
    argv = ["migrate", "tasks.py:yes_no", "--cases", yes_cases(project, 5)]
    argv += ["--from", f"{answers}#model=a", "--to", f"{answers}#model=b"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 3 and "5 paired case(s) are valid on both sides, fewer than the 10 needed" in out
    assert run_cli(capsys, *argv, "--min-pairs", "5")[0] == 0


@pytest.mark.parametrize(("flag", "value"), [("--min-valid", "120"), ("--min-valid", "half"), ("--min-pairs", "-1")])
def test_bad_floors_are_usage_errors(capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["migrate", "t.py:t", "--cases", "c.jsonl", "--from", "a", "--to", "b", flag, value])
    assert stop.value.code == 2 and flag in capsys.readouterr().err


# ------------------------------------------------------------------------- 2. deterministic, with repeats


def number_of(received: Received) -> int:
    user = [m["content"] for m in received.body["messages"] if m["role"] == "user"][-1]
    return int(user.rsplit("\n", 1)[-1].strip())


@pytest.fixture
def sampler(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """gpt-4.1-mini says "yes" to every number but 13, where it flips a coin (alternating); gpt-4.1-nano says the
    same, except "no" to 4 every time: one unstable case on each side, and one real change."""
    calls: Counter[tuple[str, int]] = Counter()

    def responder(received: Received) -> Reply:
        model, n = received.body["model"], number_of(received)
        calls[model, n] += 1
        answer = "yes"
        if n == 13:
            answer = "yes" if calls[model, n] % 2 else "no"
        elif n == 4 and model == "gpt-4.1-nano":
            answer = "no"
        return chat_reply(json.dumps({"answer": answer}))

    with OpenAIServer(api_key="sk-test", responder=responder) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        yield server


def test_comparisons_are_deterministic_by_default_and_say_so(
    project: Path, sampler: OpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["migrate", "tasks.py:yes_no", "--cases", yes_cases(project, 12)]
    code, out, _ = run_cli(capsys, *argv, "--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano")
    assert code == 0, out
    assert {(r.body["temperature"], r.body["seed"]) for r in sampler.requests} == {(0, 0)}
    assert "settings A: temperature 0, seed 0 (the seed is sent where the provider takes one), 1 run per case" in out
    sampler.requests.clear()
    code, out, _ = run_cli(
        capsys, *argv, "--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano", "--temperature", "0.7",
        "--seed", "42", "--json", "out.json",
    )  # fmt: skip
    # Results stored today under other settings are not today's results under these: all 24 run again.
    assert len(sampler.requests) == 24
    assert {(r.body["temperature"], r.body["seed"]) for r in sampler.requests} == {(0.7, 42)}
    assert json.loads((project / "out.json").read_text())["settings"]["B"].startswith("temperature 0.7, seed 42")
    sampler.requests.clear()
    run_cli(capsys, *argv, "--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano", "--temperature", "default",
            "--seed", "none")  # fmt: skip
    assert all("temperature" not in r.body and "seed" not in r.body for r in sampler.requests)


def test_repeats_give_each_cases_stability_and_tell_instability_from_change(
    project: Path, sampler: OpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["migrate", "tasks.py:yes_no", "--cases", yes_cases(project, 20), "--repeat", "4", "--json", "out.json"]
    code, out, err = run_cli(capsys, *argv, "--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano")
    assert code == 0, out
    assert len(sampler.requests) == 2 * 20 * 4
    assert "openai:gpt-4.1-mini: running 80 case(s) (4 runs per case)" in err
    assert "-- stability: 4 runs per case" in out
    assert "unstable on A (share of runs giving the commonest answer): 13 (50 %)" in out
    report = json.loads((project / "out.json").read_text())
    stability = report["stability"]
    assert stability["a"]["13"] == 0.5 and stability["a"]["4"] == 1.0 and stability["b"]["4"] == 1.0
    assert stability["a_stable"]["k"] == 19 and stability["b_stable"]["k"] == 19
    # Case 4 changed on stable answers (change); case 13, if its settled answers differ, is instability.
    assert stability["changed_stable"] == 1
    assert report["mismatch"]["k"] == stability["changed_stable"] + stability["changed_unstable"]
    code, _, _ = run_cli(capsys, *argv, "--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano",
                         "--report", "out.html")  # fmt: skip
    page = (project / "out.html").read_text()
    assert "Unstable on A: 1 cases" in page and "stable cases (all runs agree)" in page
    # The repeats are stored: the same command again asks nothing.
    sampler.requests.clear()
    assert run_cli(capsys, *argv, "--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano")[0] == 0
    assert sampler.requests == []


def test_run_reports_stability_too(project: Path, sampler: OpenAIServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "tasks.py:yes_no", "--cases", yes_cases(project, 14), "--model", "openai:gpt-4.1-mini"]
    code, out, _ = run_cli(capsys, *argv, "--repeat", "2")
    assert code == 0 and "settings: temperature 0, seed 0" in out and "unstable: 13 (50 %)" in out


@pytest.mark.parametrize(("flag", "value"), [("--temperature", "hot"), ("--temperature", "3"), ("--seed", "-2"),
                                             ("--repeat", "0")])  # fmt: skip
def test_bad_sampling_settings_are_usage_errors(capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["run", "t.py:t", "--cases", "c.jsonl", "--model", "a", flag, value])
    assert stop.value.code == 2 and flag in capsys.readouterr().err


# ---------------------------------------------------------------- 3. migrate --link keeps the other links fixed

PIPELINES = """
import itertools
import json
import random
from typing import Literal

from pydantic import BaseModel

import robustprompt as rp
from robustprompt.testing import FunctionModel


class Ticket(BaseModel):
    text: str


class Summary(BaseModel):
    text: str
    tone: Literal["calm", "angry"]


class Topic(BaseModel):
    topic: Literal["billing", "shipping", "other"]


calls = itertools.count()
stamps = itertools.count()
dice = random.Random(7)


def summarize_fn(prompt):
    # Samples: the tone is a coin toss on every call, as an unseeded model's would be.
    next(calls)
    text = json.loads(prompt.messages[-1].content.split("\\n", 1)[1])["text"]
    return json.dumps({"text": text, "tone": dice.choice(["calm", "angry"])})


summarize = rp.Task("summarize", input=Ticket, output=Summary, instructions="Summarize the ticket and its tone.")
classify = rp.Task("classify", input=Ticket, output=Topic, instructions="Which topic is the ticket about?")
QUEUES = {"billing": "finance", "shipping": "logistics"}
noisy = FunctionModel(summarize_fn, name="test:summarizer")

links = [
    rp.Link("summarize", summarize, model=noisy),
    rp.Link("classify", classify, model="openai:gpt-4.1-mini", input=lambda s: Ticket(text=s.text)),
    rp.Step("reply", lambda topic, summary: f"{QUEUES.get(topic.topic, 'desk')}/{summary.tone}",
            after=("classify", "summarize")),
]
pipeline = rp.Pipeline("support", links, input=Ticket)
stamped = rp.Pipeline(
    "stamped",
    [rp.Step("stamp", lambda t: Ticket(text=f"{t.text} #{next(stamps)}"), output=Ticket), *links],
    input=Ticket,
)
"""


def classify_responder(received: Received) -> Reply:
    user = [m["content"] for m in received.body["messages"] if m["role"] == "user"][-1]
    text = json.loads(user.split("\n", 1)[1])["text"]
    topic = "billing" if "bill" in text else "shipping" if received.body["model"] == "gpt-4.1-mini" else "other"
    return chat_reply(json.dumps({"topic": topic}))


@pytest.fixture
def pipeline_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (project / "pipelines.py").write_text(PIPELINES)
    tickets = [f"parcel {i} is late" for i in range(10)] + [f"bill {i} charged twice" for i in range(10)]
    rows = [{"id": f"t{i}", "input": {"text": t}} for i, t in enumerate(tickets)]
    write_jsonl(project / "tickets.jsonl", rows)  # type: ignore[arg-type]
    with OpenAIServer(api_key="sk-test", responder=classify_responder) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        yield project
    sys.modules.pop("pipelines", None)


def migrate_link(capsys: pytest.CaptureFixture[str], spec: str, to: str) -> tuple[int, str, str]:
    argv = ["migrate", spec, "--link", "classify", "--cases", "tickets.jsonl", "--json", "out.json"]
    return run_cli(capsys, *argv, "--from", "openai:gpt-4.1-mini", "--to", to, "--min-pairs", "1")


def test_one_run_of_the_unchanged_links_feeds_both_sides(
    pipeline_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = migrate_link(capsys, "pipelines:pipeline", "openai:gpt-4.1-mini")
    # The summarizer samples, but it ran once per case, for both sides: the same model on the link changes nothing.
    assert code == 0, out
    assert next(sys.modules["pipelines"].calls) == 20
    assert "note: unchanged link summarize: the same value on both sides in 20 of 20 case(s) (100.0 %)" in out
    assert "unchanged link reply: the same value on both sides in 20 of 20 case(s) (100.0 %)" in out
    assert json.loads((pipeline_project / "out.json").read_text())["mismatch"]["k"] == 0
    assert "WARNING" not in out


def test_only_the_migrated_link_differs(pipeline_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = migrate_link(capsys, "pipelines:pipeline", "openai:gpt-4.1-nano")
    assert code == 0, out  # no expected outputs: both sides valid, the change shows as mismatch
    assert "note: unchanged link summarize: the same value on both sides in 20 of 20 case(s) (100.0 %)" in out
    # The reply step reads the link's answer: it changed exactly where the link's did, and nowhere else.
    assert "unchanged link reply: the same value on both sides in 10 of 20 case(s) (50.0 %); its input changed" in out
    report = json.loads((pipeline_project / "out.json").read_text())
    assert report["mismatch"]["k"] == 10 and "WARNING" not in out


def test_anything_else_that_changed_is_warned_about(pipeline_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, err = migrate_link(capsys, "pipelines:stamped", "openai:gpt-4.1-mini")
    warning = "WARNING: link stamp was kept fixed but gave another value for the same input in 20 case(s)"
    assert warning in out and warning in err


# ------------------------------------------------------------------------------------------ 4. per-field gates

EXTRACT = """
from pydantic import BaseModel

import robustprompt as rp


class Order(BaseModel):
    product: str
    quantity: int
    colour: str
    note: str  # free text: no two models word it alike


def mentions(expected, got):
    return float(expected.lower() in got.lower())


extract = rp.Task("extract", input=str, output=Order, instructions="Extract the order.")
scored = rp.Task("extract_scored", input=str, output=Order, instructions="Extract the order.",
                 scorers={"note": mentions})
"""


def order_replay(project: Path) -> str:
    """40 orders. A gets the product right on 28 (70 %), B on 18 (45 %); exact match (product, quantity and colour)
    goes 8 -> 10 (20 % -> 25 %): accuracy rises while one field sinks. A's notes mention the gift, B's do not."""
    rows = []
    for i in range(40):
        a = {"product": f"p{i}" if i < 28 else "?", "quantity": i if i < 8 or i >= 28 else -1, "colour": "red",
             "note": f"a gift, order {i}"}  # fmt: skip
        b = {"product": f"p{i}" if i < 18 else "?", "quantity": i if i < 10 or i >= 28 else -1, "colour": "red",
             "note": f"order {i}" if i < 30 else f"gift {i}"}  # fmt: skip
        rows += [
            {"model": "a", "id": str(i), "answer": json.dumps(a)},
            {"model": "b", "id": str(i), "answer": json.dumps(b)},
        ]
    return "replay:" + write_jsonl(project / "orders.jsonl", rows)  # type: ignore[arg-type]


def order_cases(project: Path, *, note: bool = False) -> str:
    rows = [
        {"id": str(i), "input": f"order {i}",
         "expected": {"product": f"p{i}", "quantity": i, "colour": "red", **({"note": "gift"} if note else {})}}
        for i in range(40)
    ]  # fmt: skip
    return write_jsonl(project / "order_cases.jsonl", rows)  # type: ignore[arg-type]


@pytest.fixture
def orders(project: Path) -> list[str]:
    (project / "extract.py").write_text(EXTRACT)
    answers = order_replay(project)
    return ["--from", f"{answers}#model=a", "--to", f"{answers}#model=b", "--json", "out.json"]


def test_a_sinking_field_is_named_even_when_accuracy_rises_and_no_gate_is_set(
    project: Path, orders: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "migrate", "extract.py:extract", "--cases", order_cases(project), *orders)
    assert code == 0, out
    report = json.loads((project / "out.json").read_text())
    accuracy = next(r for r in report["rates"] if r["metric"] == "accuracy")
    assert (accuracy["a"]["value"], accuracy["b"]["value"]) == (0.2, 0.25)
    assert "note: field product fell significantly: 25.0 pts (70.0 % -> 45.0 %, n=40, p = 0.0020; not gated" in out
    assert "field quantity fell" not in out and "field colour fell" not in out
    # The note field is left out of every expected output: free text, not judged.
    assert [f["metric"] for f in report["fields"]] == ["field colour", "field product", "field quantity"]


def test_a_gated_field_decides_the_verdict(
    project: Path, orders: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["migrate", "extract.py:extract", "--cases", order_cases(project), *orders]
    code, out, _ = run_cli(capsys, *argv, "--gate", "field=product:max-drop=5pts")
    assert code == 1 and "B REGRESSES" in out
    assert "  - field product fell 25.0 pts (70.0 % -> 45.0 %, n=40 paired)" in out
    assert "! field product (gated)" in out
    # A gates section in a config file does the same; a flag overrides it field by field.
    (project / "gates.json").write_text(json.dumps({"gates": {"product": "30pts"}}))
    assert run_cli(capsys, *argv, "--config", "gates.json")[0] == 0
    (project / "gates.yaml").write_text("gates:\n  product: 5pts\n")
    assert run_cli(capsys, *argv, "--config", "gates.yaml")[0] == 1
    assert run_cli(capsys, *argv, "--config", "gates.yaml", "--gate", "field=product:max-drop=30")[0] == 0


def test_a_task_scorer_scores_a_free_text_field(
    project: Path, orders: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["migrate", "extract.py:scored", "--cases", order_cases(project, note=True), *orders]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0, out
    report = json.loads((project / "out.json").read_text())
    [score] = report["field_scores"]
    assert (score["metric"], score["a"], score["b"]) == ("score note", 1.0, 0.25)
    assert "note: score note fell significantly: 0.750" in out
    # The scored field is not part of exact match: accuracy reads as without it.
    assert next(r for r in report["rates"] if r["metric"] == "accuracy")["a"]["value"] == 0.2
    code, out, _ = run_cli(capsys, *argv, "--gate", "field=note:max-drop=10pts")
    assert code == 1 and "  - score note fell 0.750 (mean 1.000 -> 0.250, n=40 paired)" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gate", "field=prodcut:max-drop=5pts"], "gate on field(s) 'prodcut', which no expected output gives"),
        (["--config", "missing.json"], "no config file at 'missing.json'"),
        (["--config", "bad.json"], "a config file holds a 'gates' mapping of field to max drop"),
    ],
)
def test_gate_mistakes_are_usage_errors(
    project: Path, orders: list[str], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (project / "bad.json").write_text(json.dumps({"gate": {"product": "5pts"}}))
    code, _, err = run_cli(capsys, "migrate", "extract.py:extract", "--cases", order_cases(project), *orders, *extra)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("text", ["product:5pts", "field=product", "field=product:max-drop=5pts:alpha=0.1"])
def test_a_malformed_gate_flag_says_how_to_write_one(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["migrate", "t.py:t", "--cases", "c.jsonl", "--from", "a", "--to", "b", "--gate", text])
    assert stop.value.code == 2 and "field=NAME:max-drop=POINTS" in capsys.readouterr().err


def test_a_scorer_must_name_an_output_field() -> None:
    from pydantic import BaseModel

    import robustprompt as rp

    class Out(BaseModel):
        summary: str

    with pytest.raises(rp.ConfigError, match=r"scorer for 'sumary', which is not an output field \(summary\)"):
        rp.Task("t", input=str, output=Out, instructions="x", scorers={"sumary": lambda e, g: 1.0})


def test_an_expected_output_may_leave_fields_out_but_not_get_them_wrong(project: Path) -> None:
    from robustprompt.evals import load_cases

    (project / "extract.py").write_text(EXTRACT)
    sys.path.insert(0, str(project))
    from robustprompt.evals._loading import load_task

    task = load_task("extract.py:extract")
    file = write_jsonl(
        project / "c.jsonl",
        [{"id": "ok", "input": "x", "expected": {"product": "p", "quantity": "3"}},
         {"id": "bad", "input": "x", "expected": {"product": "p", "quantity": "three"}},
         {"id": "extra", "input": "x", "expected": {"product": "p", "size": 3}}],
    )  # fmt: skip
    cases = load_cases(file, task)
    assert [c.expected for c in cases.cases] == [{"product": "p", "quantity": 3}, None, None]
    assert [p.case_id for p in cases.problems] == ["bad", "extra"]


# ------------------------------------------------------------------------------ 5. fail fast, before any call


def test_a_typo_in_b_is_caught_before_a_runs(
    project: Path, sampler: OpenAIServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["migrate", "tasks.py:yes_no", "--cases", yes_cases(project, 12), "--from", "openai:gpt-4.1-mini"]
    code, _, err = run_cli(capsys, *argv, "--to", "openai:gpt-4.1-mnii")
    assert code == 2 and sampler.requests == []
    assert "the catalog does not list 'openai:gpt-4.1-mnii' — did you mean 'openai:gpt-4.1-mini'" in err
    assert "pass --unlisted" in err
    # A missing key on B, too: nothing is spent on A first.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code, _, err = run_cli(capsys, *argv, "--to", "anthropic:claude-sonnet-4-5")
    assert code == 2 and sampler.requests == [] and "no API key for anthropic" in err
    # A name the user vouches for runs as given.
    code, _, _ = run_cli(capsys, *argv, "--to", "openai:gpt-4.1-mnii", "--unlisted", "--min-pairs", "0")
    assert code == 0 and {r.body["model"] for r in sampler.requests} == {"gpt-4.1-mini", "gpt-4.1-mnii"}


def test_a_case_whose_input_does_not_fit_the_task_is_reported_at_load_with_its_line(
    project: Path, sampler: OpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_jsonl(project / "c.jsonl", [{"id": "1", "input": 1}, {"id": "seven", "input": "seven"}])
    code, _, err = run_cli(capsys, "run", "tasks.py:yes_no", "--cases", file, "--model", "openai:gpt-4.1-mini")
    assert code == 0 and len(sampler.requests) == 1
    assert f"robustprompt: {file}:2 (case 'seven'): task 'yes_no': input does not match int" in err
    assert err.splitlines()[0].endswith("; not run")


def test_a_pipeline_case_is_checked_against_the_pipelines_input_type(
    pipeline_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(pipeline_project / "tickets.jsonl", [{"id": "t0", "input": {"body": "late"}}])
    code, _, err = migrate_link(capsys, "pipelines:pipeline", "openai:gpt-4.1-mini")
    assert code == 2 and "tickets.jsonl:1 (case 't0'): pipeline 'support': the input does not match" in err
    assert "holds no case that can run" in err


# ------------------------------------------------------------------------------------------------ 6. cost


def test_a_run_carries_its_cost_and_a_ledger_totals_a_batch(sampler: OpenAIServer) -> None:
    import robustprompt as rp
    from robustprompt._catalog import lookup

    profile = lookup("openai:gpt-4.1-mini")
    assert profile is not None and profile.input_price is not None and profile.output_price is not None
    per_call = (10 * profile.input_price + 5 * profile.output_price) / 1e6  # the server's usage: 10 in, 5 out
    task = rp.Task("yes_no", input=int, output=str, instructions="Is the number prime?")
    run = task.run(3, model="openai:gpt-4.1-mini")
    assert run.cost == pytest.approx(per_call) and run.usage.input_tokens == 10
    ledger = rp.Ledger()
    task.map(range(6), model="openai:gpt-4.1-mini", ledger=ledger)
    line = ledger.by_model()["openai:gpt-4.1-mini"]
    assert (line.calls, line.requests, line.input_tokens, line.output_tokens) == (6, 6, 60, 30)
    assert line.cost == pytest.approx(6 * per_call)
    assert ledger.by_task()["yes_no"] == line == ledger.total


def test_run_and_migrate_report_what_they_spent_per_model_and_task(
    project: Path, sampler: OpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["migrate", "tasks.py:yes_no", "--cases", yes_cases(project, 12), "--json", "out.json"]
    code, out, _ = run_cli(capsys, *argv, "--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano")
    assert code == 0
    assert re.search(r"cost: openai:gpt-4\.1-mini on task yes_no: \$0\.\d{4} for 12 call\(s\), 12 request\(s\), "
                     r"120 input / 60 output tokens", out)  # fmt: skip
    assert "cost: openai:gpt-4.1-nano on task yes_no: $" in out
    report = json.loads((project / "out.json").read_text())
    assert report["a"]["cost"]["value"] > 0 and report["b"]["cost"]["value"] > 0


def test_migrate_link_reports_each_links_cost(pipeline_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = migrate_link(capsys, "pipelines:pipeline", "openai:gpt-4.1-nano")
    assert (
        "cost: openai:gpt-4.1-mini on task classify: $" in out and "cost: openai:gpt-4.1-nano on task classify" in out
    )
    # The summarizer's answers were made once, for A, and fed B: 20 calls, not 40.
    assert "cost: test:summarizer on task summarize: $0.0000 for 20 call(s), 20 request(s)" in out


# ---------------------------------------------------------------------------------------- 8. drift history


def test_drift_lists_the_snapshots_and_the_trend_over_every_stored_date(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = yes_cases(project, 20)
    recording = project / "rec.jsonl"
    model = f"replay:{recording}"
    argv = ["tasks.py:yes_no", "--cases", cases, "--model", model]

    def on(date: str, wrong: int) -> None:
        monkeypatch.setattr("robustprompt.evals._commands.today", lambda: date)
        rows = [{"id": str(i), "answer": "[No]" if i < wrong else "[Yes]"} for i in range(20)]
        write_jsonl(recording, rows)  # type: ignore[arg-type]

    on("2025-03-01", 0)
    assert run_cli(capsys, "snapshot", "march", *argv)[0] == 0
    on("2025-04-01", 4)
    code, out, err = run_cli(capsys, "drift", *argv, "--baseline", "march", "--report", "drift.html")
    assert code == 0  # 4 discordant cases of 20: p = 0.125, not a regression
    trend = out.split("trend over every stored date:\n")[1].splitlines()
    assert trend[1].startswith("2025-03-01  20     100.0 %") and trend[1].endswith("0.0 % [0.0, 16.1]")
    assert trend[2].startswith("2025-04-01  20     80.0 %") and trend[2].endswith("20.0 % [8.1, 41.6]")
    assert f"snapshots of task yes_no:\n  march: {model} on 2025-03-01, 20 case(s)" in err
    assert 'id="trend-chart"' in (project / "drift.html").read_text()
    on("2025-05-01", 10)
    code, out, _ = run_cli(capsys, "drift", *argv)
    assert code == 0 and out.startswith(f"model {model}\ntrend over every stored date:")
    assert [line.split()[0] for line in out.splitlines()[3:]] == ["2025-03-01", "2025-04-01", "2025-05-01"]
    assert "mismatch vs 2025-03-01" in out and out.splitlines()[-1].split("  ")[-1].startswith("50.0 %")


# ------------------------------------------------------------------ 7. mode downgrades kept across processes


def test_a_rejected_mode_is_learned_once_across_processes(project: Path) -> None:
    """The server rejects json_schema. The first process pays one rejected request per task to learn it; the
    second, a new process on the same store, starts from the mode that works."""
    import subprocess

    from robustprompt.testing._openai_server import schema_rejected

    def responder(received: Received) -> Reply:
        if received.body.get("response_format", {}).get("type") == "json_schema":
            return schema_rejected("yes_no", "this server takes no json_schema")
        return chat_reply(json.dumps({"answer": "yes"}))

    cases = str(project / "cases.jsonl")
    with OpenAIServer(api_key="sk-test", responder=responder) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        argv = [sys.executable, "-m", "robustprompt", "run", "tasks.py:yes_no", "--cases", cases]
        argv += ["--model", "openai:gpt-4.1-mini", "--store", str(project / "store.sqlite"), "--concurrency", "1"]

        def run(first: int) -> list[str]:
            server.requests.clear()
            rows = [{"id": str(i), "input": i} for i in range(first, first + 3)]  # new cases: none stored yet
            write_jsonl(project / "cases.jsonl", rows)  # type: ignore[arg-type]
            done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return [(r.body.get("response_format") or {}).get("type", "tools" if "tools" in r.body else "none")
                    for r in server.requests]  # fmt: skip

        first = run(0)
        assert first.count("json_schema") == 1 and len(first) == 4  # one rejection, then 3 answers
        second = run(10)
        assert "json_schema" not in second and len(second) == 3


def test_a_learned_downgrade_expires(tmp_path: Path) -> None:
    from robustprompt._prompt import OutputMode
    from robustprompt.evals import Store

    with Store(tmp_path / "s.sqlite") as store:
        store.remember_downgrades({("openai:m@http://x", "fp"): {OutputMode.JSON_SCHEMA}}, now=1000.0)
        store.remember_downgrades({("openai:m@http://x", "fp"): {OutputMode.JSON_SCHEMA}}, now=5000.0)
        assert store.downgrades(now=1500.0, ttl=600) == {("openai:m@http://x", "fp"): {OutputMode.JSON_SCHEMA}}
        # Kept from when it was first learned, not when it was last seen: it expires 600 s after 1000.
        assert store.downgrades(now=1700.0, ttl=600) == {}
        # Another address is another server.
        store.remember_downgrades({("openai:m@http://y", "fp"): {OutputMode.TOOL_CALL}}, now=2000.0)
        assert set(store.downgrades(now=2000.0, ttl=600)) == {("openai:m@http://y", "fp")}


def test_a_version_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    from robustprompt.evals import Store

    path = tmp_path / "old.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:  # as robustprompt 0.1 left it: no downgrades table, version 1
        db.execute("DROP TABLE downgrades")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Store(path) as store:
        assert store.downgrades(now=0.0, ttl=1.0) == {}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
