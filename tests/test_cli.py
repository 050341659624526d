"""The robustprompt command: clear messages for bad input, no case lost, exit codes CI can gate on."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import robustprompt as rp
from robustprompt.cli import main, render_models
from robustprompt.evals._commands import alpha, max_drop
from robustprompt.testing import OpenAIServer
from robustprompt.testing._openai_server import chat_reply

TASKS = """
from typing import Literal

import robustprompt as rp

task = rp.Task("yes_no", input=int, output=Literal["yes", "no"], instructions="Is the number prime?")
other = rp.Task("other", input=str, output=str, instructions="Repeat.")
not_a_task = 42
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with a task module, the store inside it, and the current directory set to it."""
    (tmp_path / "tasks.py").write_text(TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTPROMPT_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI puts the current directory on it
    yield tmp_path
    for name in ("tasks", "broken"):  # imported by name: another test's folder has its own
        sys.modules.pop(name, None)


def cases(path: Path, *rows: object) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def recording(path: Path, answers: dict[str, dict[str, str]]) -> str:
    """A JSONL recording of several models' answers: {model: {case id: answer}}."""
    rows = [{"model": m, "id": i, "answer": a} for m, by_id in answers.items() for i, a in by_id.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


TASK = "tasks.py:task"
PRIMES = {str(n): ("yes" if n in (2, 3, 5, 7, 11, 13, 17, 19) else "no") for n in range(2, 22)}


@pytest.fixture
def prime_cases(project: Path) -> str:
    return cases(project / "cases.jsonl", *({"id": k, "input": int(k), "expected": v} for k, v in PRIMES.items()))


# ------------------------------------------------------------------------------------------------- tasks


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tasks.py", "TASK must be module:attribute or path/to/file.py:attribute"),
        ("missing.py:task", "no Python file at 'missing.py'"),
        ("no_such_module:task", "no module named 'no_such_module'"),
        ("tasks.py:nope", "tasks.py has no attribute 'nope' (its tasks: other, task)"),
        ("tasks.py:not_a_task", "tasks.py:not_a_task is a int, not a robustprompt Task (its tasks: other, task)"),
        ("tasks:task.missing", "tasks has no attribute 'task.missing'"),
    ],
)
def test_a_bad_task_path_is_a_usage_error(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    code, out, err = run_cli(capsys, "run", spec, "--cases", prime_cases, "--model", "replay:x.csv")
    assert code == 2 and out == ""
    assert message in err and err.startswith("robustprompt: error: ")


def test_a_task_module_that_fails_to_import_says_why(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "broken.py").write_text("import definitely_not_installed\n")
    code, _, err = run_cli(capsys, "run", "broken.py:task", "--cases", prime_cases, "--model", "replay:x.csv")
    assert code == 2 and "importing broken.py failed: ModuleNotFoundError" in err
    code, _, err = run_cli(capsys, "run", "broken:task", "--cases", prime_cases, "--model", "replay:x.csv")
    assert code == 2 and "importing broken failed: No module named 'definitely_not_installed'" in err


def test_a_task_by_module_name_from_the_current_directory(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = recording(project / "rec.jsonl", {"a": dict.fromkeys(PRIMES, "[No]")})
    code, out, _ = run_cli(capsys, "run", "tasks:task", "--cases", prime_cases, "--model", f"replay:{answers}#model=a")
    assert code == 0 and f"model replay:{answers}#model=a" in out


# ------------------------------------------------------------------------------------------------- cases


def test_malformed_lines_are_reported_with_their_line_and_the_rest_run(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = cases(project / "cases.jsonl", {"id": "2", "input": 2}, "{broken", {"id": "4", "input": 4}, "[]")
    answers = recording(project / "rec.jsonl", {"a": {"2": "[Yes]", "4": "[No]"}, "b": {"2": "[Yes]", "4": "[Yes]"}})
    code, out, err = run_cli(
        capsys,
        "migrate",
        TASK,
        "--cases",
        file,
        "--from",
        f"replay:{answers}#model=a",
        "--to",
        f"replay:{answers}#model=b",
        "--json",
        "out.json",
        "--min-pairs",
        "2",
    )
    assert code == 0
    assert f"robustprompt: {file}:2: not valid JSON" in err
    assert f"{file}:4: a case is an object with 'input', got list" in err
    report = json.loads((project / "out.json").read_text())
    assert report["paired"] == 2
    assert any(note.startswith(f"case file: {file}:2: not valid JSON") for note in report["notes"])
    assert f"case file: {file}:2" in out  # the terminal table shows them too


def test_an_invalid_expected_output_still_runs_and_is_left_out_of_accuracy(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = cases(
        project / "cases.jsonl",
        {"id": "2", "input": 2, "expected": "yes"},
        {"id": "4", "input": 4, "expected": "maybe"},
    )
    answers = recording(project / "rec.jsonl", {"a": {"2": "[Yes]", "4": "[No]"}, "b": {"2": "[Yes]", "4": "[No]"}})
    code, _, err = run_cli(
        capsys,
        "migrate",
        TASK,
        "--cases",
        file,
        "--from",
        f"replay:{answers}#model=a",
        "--to",
        f"replay:{answers}#model=b",
        "--json",
        "out.json",
        "--min-pairs",
        "2",
    )
    assert code == 0
    assert f"{file}:2 (case '4'): expected output is invalid" in err
    report = json.loads((project / "out.json").read_text())
    assert report["a"]["n"] == 2 and report["a"]["valid"]["n"] == 2
    assert report["a"]["accuracy"]["n"] == 1
    assert any("case '4'" in note and "left out of accuracy" in note for note in report["notes"])


def test_a_case_file_with_nothing_to_run_is_a_usage_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = cases(project / "cases.jsonl", "nope")
    code, _, err = run_cli(capsys, "run", TASK, "--cases", file, "--model", "replay:x.csv")
    assert code == 2 and "holds no case that can run" in err


def test_a_missing_case_file_is_a_usage_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", TASK, "--cases", "nope.jsonl", "--model", "replay:x.csv")
    assert code == 2 and "no case file at 'nope.jsonl'" in err


# ----------------------------------------------------------------------------------------------- verdicts


def migrate(capsys: pytest.CaptureFixture[str], file: str, answers: str, *extra: str) -> tuple[int, str, str]:
    return run_cli(
        capsys, "migrate", TASK, "--cases", file, "--from", f"{answers}#model=a", "--to", f"{answers}#model=b", *extra
    )


def test_a_real_drop_exits_1_and_writes_the_reports(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = {k: "[No]" for k in PRIMES}  # B says no to every prime: 8 of 20 wrong
    answers = "replay:" + recording(project / "rec.jsonl", {"a": {k: f"[{v}]" for k, v in PRIMES.items()}, "b": wrong})
    code, out, err = migrate(capsys, prime_cases, answers, "--report", "out.html", "--json", "out.json")
    assert code == 1
    assert "B REGRESSES" in out and "accuracy fell 40.0 pts" in out
    assert "<!doctype html>" in (project / "out.html").read_text()
    assert json.loads((project / "out.json").read_text())["regressed"] is True
    assert "wrote out.html" in err


def test_a_small_drop_within_max_drop_exits_0(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str]
) -> None:
    b = {k: f"[{v}]" for k, v in PRIMES.items()} | {"2": "[No]"}  # one case of 20: 5 points, not significant
    answers = "replay:" + recording(project / "rec.jsonl", {"a": {k: f"[{v}]" for k, v in PRIMES.items()}, "b": b})
    code, out, _ = migrate(capsys, prime_cases, answers)
    assert code == 0 and "no regression" in out
    code, _, _ = migrate(capsys, prime_cases, answers, "--max-drop", "10pts", "--alpha", "0.5")
    assert code == 0


def test_a_model_that_fails_every_call_shows_every_case_as_failed(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = "replay:" + recording(project / "rec.jsonl", {"a": {k: f"[{v}]" for k, v in PRIMES.items()}})
    with OpenAIServer(api_key="sk-right") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        code, out, err = run_cli(
            capsys,
            "migrate",
            TASK,
            "--cases",
            prime_cases,
            "--from",
            f"{answers}#model=a",
            "--to",
            "openai:gpt-4.1-mini",
            "--json",
            "out.json",
        )
    assert code == 1
    assert "openai:gpt-4.1-mini: 20 of 20 case(s) failed (" in err and "AuthError" in err
    report = json.loads((project / "out.json").read_text())
    assert report["paired"] == 20
    assert sorted(f["case_id"] for f in report["b"]["failed"]) == sorted(PRIMES)
    assert report["b"]["valid"]["k"] == 0 and report["b"]["valid"]["n"] == 20
    assert "failed on openai:gpt-4.1-mini: " in out


def serve_yes() -> OpenAIServer:
    return OpenAIServer(api_key="sk-test", responder=lambda _: chat_reply('{"answer": "yes"}'))


@pytest.fixture
def live_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    with serve_yes() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        yield server


def test_a_rerun_today_costs_no_calls(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str], live_server: OpenAIServer
) -> None:
    code, out, err = run_cli(capsys, "run", TASK, "--cases", prime_cases, "--model", "openai:gpt-4.1-mini")
    assert code == 0 and len(live_server.requests) == 20
    assert "running 20 case(s)" in err and "model openai:gpt-4.1-mini" in out
    code, again, err = run_cli(capsys, "run", TASK, "--cases", prime_cases, "--model", "openai:gpt-4.1-mini")
    assert code == 0 and len(live_server.requests) == 20 and "running" not in err
    assert again.split("\ncost: ")[0] == out.split("\ncost: ")[0]  # the same figures; only nothing was spent now
    assert "cost: openai:gpt-4.1-mini on task yes_no: $" in out and "cost: no call made now" in again


def test_yesterdays_results_are_never_todays(
    project: Path,
    prime_cases: str,
    capsys: pytest.CaptureFixture[str],
    live_server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["run", TASK, "--cases", prime_cases, "--model", "openai:gpt-4.1-mini", "--limit", "4"]
    monkeypatch.setattr("robustprompt.evals._commands.today", lambda: "2025-01-01")
    assert run_cli(capsys, *args)[0] == 0
    monkeypatch.setattr("robustprompt.evals._commands.today", lambda: "2025-01-02")
    assert run_cli(capsys, *args)[0] == 0
    assert len(live_server.requests) == 8


def test_failures_before_any_answer_run_again(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenAIServer(api_key="sk-right") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        code, _, _ = run_cli(
            capsys, "run", TASK, "--cases", prime_cases, "--model", "openai:gpt-4.1-mini", "--limit", "3"
        )
    assert code == 0
    with serve_yes() as fixed:
        monkeypatch.setenv("OPENAI_BASE_URL", fixed.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        code, _, err = run_cli(
            capsys, "run", TASK, "--cases", prime_cases, "--model", "openai:gpt-4.1-mini", "--limit", "3"
        )
    assert code == 0 and len(fixed.requests) == 3 and "running 3 case(s)\n" in err
    assert "failed" not in err


def test_limit_and_store_options(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str], live_server: OpenAIServer
) -> None:
    code, _, _ = run_cli(
        capsys, "run", TASK, "--cases", prime_cases, "--model", "openai:gpt-4.1-mini", "--limit", "5",
        "--store", str(project / "elsewhere.sqlite"), "--concurrency", "2", "--rpm", "100000", "--tpm", "10000000",
    )  # fmt: skip
    assert code == 0 and len(live_server.requests) == 5
    assert (project / "elsewhere.sqlite").exists() and not (project / "store.sqlite").exists()


def test_an_unknown_model_is_a_usage_error(project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", TASK, "--cases", prime_cases, "--model", "nosuch:model")
    assert code == 2 and "unknown provider 'nosuch'" in err


# ------------------------------------------------------------------------------------------ snapshot, drift


def test_drift_against_a_snapshot(project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str]) -> None:
    right = {k: f"[{v}]" for k, v in PRIMES.items()}
    answers = "replay:" + recording(project / "rec.jsonl", {"a": right, "b": dict.fromkeys(PRIMES, "[No]")})
    code, out, _ = run_cli(capsys, "snapshot", "march", TASK, "--cases", prime_cases, "--model", f"{answers}#model=a")
    assert code == 0 and f"snapshot 'march': 20 result(s) of {answers}#model=a" in out
    argv = ["drift", TASK, "--cases", prime_cases, "--model", f"{answers}#model=b", "--baseline", "march"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and f"snapshot 'march' was recorded on {answers}#model=a, not {answers}#model=b" in err
    code, out, _ = run_cli(capsys, *argv, "--other-model")
    assert code == 1 and "(snapshot march)" in out and "accuracy fell 40.0 pts" in out
    code, out, _ = run_cli(
        capsys, "drift", TASK, "--cases", prime_cases, "--model", f"{answers}#model=a", "--baseline", "march"
    )
    assert code == 0


def test_drift_without_the_snapshot_says_what_exists(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = "replay:" + recording(project / "rec.jsonl", {"a": dict.fromkeys(PRIMES, "[No]")})
    run_cli(capsys, "snapshot", "march", TASK, "--cases", prime_cases, "--model", f"{answers}#model=a")
    args = ["drift", TASK, "--cases", prime_cases, "--model", f"{answers}#model=a"]
    code, _, err = run_cli(capsys, *args, "--baseline", "mrach")
    assert code == 2 and "no snapshot named 'mrach'" in err and "did you mean 'march'?" in err
    (project / "tasks.py").write_text(TASKS.replace("Is the number prime?", "Is this number prime?"))
    code, _, err = run_cli(capsys, "drift", "tasks:task", *args[2:], "--baseline", "march")
    assert code == 2 and "was taken of another version of task 'yes_no'" in err


# -------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("text", "fraction"),
    [("2", 0.02), ("2pts", 0.02), ("2 pts", 0.02), ("2%", 0.02), ("0.5", 0.005), ("10 points", 0.1)],
)
def test_max_drop_is_in_percentage_points(text: str, fraction: float) -> None:
    assert max_drop(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["-1", "101", "two", "2 apples", ""])
def test_bad_max_drops_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="percentage points"):
        max_drop(text)


@pytest.mark.parametrize("text", ["0", "1", "x", "-0.1"])
def test_alpha_is_strictly_between_0_and_1(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        alpha(text)
    assert alpha("0.01") == 0.01


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["migrate", TASK, "--cases", "c.jsonl", "--from", "a", "--to", "b", "--max-drop", "lots"])
    assert exited.value.code == 2
    assert "is not a number of percentage points" in capsys.readouterr().err


def test_models_lists_upcoming_retirements_first() -> None:
    profiles = [
        rp.ModelProfile("p", "plain", input_price=1.0, output_price=2.0),
        rp.ModelProfile("p", "gone", retired=dt.date(2025, 1, 1), replacement="p:plain"),
        rp.ModelProfile("p", "later", retired=dt.date(2025, 9, 1), replacement="p:plain"),
        rp.ModelProfile("p", "soon", retired=dt.date(2025, 7, 1), deprecated=dt.date(2025, 3, 1)),
    ]
    table = render_models(profiles, dt.date(2025, 6, 1))
    names = [line.split()[0] for line in table.splitlines()]
    assert names == ["model", "p:soon", "p:later", "p:gone", "p:plain"]
    assert "2025-01-01 (retired)  p:plain" in table and "2025-03-01" in table
    assert table.splitlines()[-1].split()[3:5] == ["1", "2"]


def test_the_module_runs_as_a_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "robustprompt", "models"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("model ") and "openai:gpt-4.1-mini" in done.stdout


def test_an_edited_case_input_is_run_again_not_answered_from_the_store(
    project: Path, capsys: pytest.CaptureFixture[str], live_server: OpenAIServer
) -> None:
    args = ["run", TASK, "--model", "openai:gpt-4.1-mini", "--cases"]
    first = cases(project / "edit.jsonl", {"id": "c1", "input": 7, "expected": "yes"})
    assert run_cli(capsys, *args, first)[0] == 0
    edited = cases(project / "edit.jsonl", {"id": "c1", "input": 8, "expected": "no"})
    assert run_cli(capsys, *args, edited)[0] == 0
    assert len(live_server.requests) == 2


def test_drift_scores_the_baseline_against_todays_expected_outputs(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = "replay:" + recording(project / "rec.jsonl", {"a": {k: f"[{v}]" for k, v in PRIMES.items()}})
    assert run_cli(capsys, "snapshot", "base", TASK, "--cases", prime_cases, "--model", f"{answers}#model=a")[0] == 0
    flipped = cases(
        project / "flipped.jsonl",
        *({"id": k, "input": int(k), "expected": "no" if v == "yes" else "yes"} for k, v in PRIMES.items()),
    )
    code, out, _ = run_cli(
        capsys, "drift", TASK, "--cases", flipped, "--model", f"{answers}#model=a", "--baseline", "base"
    )
    assert code == 0, out  # the same answers: no drift, whatever the expected outputs say now
    assert "mismatch (answer changed)" in out


def test_a_crash_exits_2_never_1(
    project: Path, prime_cases: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("robustprompt.evals._commands.compare", explode)
    answers = "replay:" + recording(project / "rec.jsonl", {"a": {"2": "[Yes]"}, "b": {"2": "[Yes]"}})
    code, _, err = run_cli(
        capsys, "migrate", TASK, "--cases", prime_cases, "--from", f"{answers}#model=a", "--to", f"{answers}#model=b"
    )
    assert code == 2
    assert "internal error: RuntimeError: disk on fire" in err
