"""`robustprompt adapt` and `migrate --adapt` on a loopback OpenAI server whose model B reads only one rendering."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustprompt.cli import main
from robustprompt.testing import OpenAIServer, Received, Reply
from robustprompt.testing._openai_server import chat_reply

TASKS = """
from typing import Literal

import robustprompt as rp

# One output mode each, so the space is the renderings alone: 24 candidates.
for name in ("model-a", "model-b"):
    rp.register_model(rp.ModelProfile("openai", name, modes=(rp.OutputMode.JSON_SCHEMA,)))

task = rp.Task(
    "parity",
    input=int,
    output=Literal["even", "odd"],
    instructions="Say whether the number is even or odd.",
    examples=[rp.Example(2, "even"), rp.Example(7, "odd"), rp.Example(10, "even"), rp.Example(3, "odd")],
)
"""

NUMBER = re.compile(r"Input:\s*(-?\d+)\s*(?:\nOutput:)?\s*$")


def parity(n: int) -> str:
    return "even" if n % 2 == 0 else "odd"


def responder(received: Received) -> Reply:
    """Model A is always right; model B only when the input ends the user turn as completion text does."""
    last = received.body["messages"][-1]["content"]
    n = int(re.findall(r"-?\d+", last)[-1])
    right = received.body["model"] == "model-a" or last.rstrip().endswith("Output:")
    return chat_reply(json.dumps({"answer": parity(n) if right else "even"}))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, OpenAIServer]]:
    (tmp_path / "adapt_tasks.py").write_text(TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTPROMPT_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with OpenAIServer(api_key="sk-test", responder=responder) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        yield tmp_path, server
    sys.modules.pop("adapt_tasks", None)


def write_cases(path: Path, numbers: range) -> str:
    path.write_text("".join(json.dumps({"id": n, "input": n, "expected": parity(n)}) + "\n" for n in numbers))
    return str(path)


def test_adapt_writes_the_record_and_run_uses_it(
    project: tuple[Path, OpenAIServer], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = project
    code = main(["adapt", "adapt_tasks:task", "--model", "openai:model-b", "--budget", "96"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "96 scored call(s) planned (budget 96)" in err
    assert "chose completion/" in out
    record = json.loads((folder / "robustprompt.adapt.json").read_text())["records"][0]
    assert record["model"] == "openai:model-b" and record["chosen"]["layout"] == "completion"
    assert record["calls"] <= 96
    cases = write_cases(folder / "cases.jsonl", range(20, 26))
    code = main(["run", "adapt_tasks:task", "--cases", cases, "--model", "openai:model-b"])
    out, err = capsys.readouterr()
    assert code == 0 and "configuration completion/" in err and "(adaptation record)" in err


def test_adapt_checks_each_embedder_it_is_given(
    project: tuple[Path, OpenAIServer], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["adapt", "adapt_tasks:task", "--model", "openai:model-b", "--embedder", "openai:model-a"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0 and "'openai:model-a' was given to adapt as an embedder, and it gives no embeddings" in err
    assert not (project[0] / "robustprompt.adapt.json").exists()


def test_migrate_adapt_shows_b_as_is_and_adapted_and_scores_only_on_the_rest(
    project: tuple[Path, OpenAIServer], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, server = project
    cases = write_cases(folder / "cases.jsonl", range(100, 120))
    argv = ["migrate", "adapt_tasks:task", "--cases", cases, "--from", "openai:model-a", "--to", "openai:model-b"]
    code = main([*argv, "--adapt", "--budget", "60", "--json", str(folder / "out.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "B as-is:" in out and "B adapted:" in out
    verdict = json.loads((folder / "out.json").read_text())
    notes = "\n".join(verdict["notes"])
    assert "B as-is (turns/json, examples all): accuracy" in notes
    assert "B adapted (completion/" in notes
    assert "of n=14" in notes  # 6 of the 20 cases adapted B, the verdict counts the other 14
    assert verdict["b"]["accuracy"]["value"] == 1.0
    # Adapting scored B on the dev cases only: A was never asked about them, and no dev case is in the verdict.
    a_inputs = {
        int(re.findall(r"-?\d+", r.body["messages"][-1]["content"])[-1])
        for r in server.requests
        if r.body["model"] == "model-a"
    }
    assert len(a_inputs) == 14 and verdict["b"]["n"] == 14
    b_inputs = {
        int(re.findall(r"-?\d+", r.body["messages"][-1]["content"])[-1])
        for r in server.requests
        if r.body["model"] == "model-b"
    }
    dev = b_inputs - a_inputs
    assert len(dev) == 6 and not dev & a_inputs


def test_migrate_adapt_refuses_a_replayed_b(
    project: tuple[Path, OpenAIServer], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = project
    cases = write_cases(folder / "cases.jsonl", range(4))
    code = main(
        ["migrate", "adapt_tasks:task", "--cases", cases, "--from", "openai:model-a", "--to", "replay:x.csv", "--adapt"]
    )
    assert code == 2 and "only replays answers" in capsys.readouterr().err


def test_migrate_adapt_keeps_the_sampling_seed_apart_from_the_adapt_seed(
    project: tuple[Path, OpenAIServer], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, server = project
    cases = write_cases(folder / "cases.jsonl", range(100, 120))
    argv = ["migrate", "adapt_tasks:task", "--cases", cases, "--from", "openai:model-a", "--to", "openai:model-b"]
    code = main([*argv, "--adapt", "--budget", "30", "--seed", "7", "--adapt-seed", "3"])
    assert code == 0, capsys.readouterr().err
    assert {r.body.get("seed") for r in server.requests} == {7}  # the sampling seed reaches every call


def test_adapt_cache_sits_beside_a_results_file_and_in_the_folder_for_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustprompt.evals._commands import _adapt_cache_path

    monkeypatch.chdir(tmp_path)
    assert _adapt_cache_path(tmp_path / "store.sqlite") == tmp_path / "adapt-cache.sqlite"
    assert _adapt_cache_path("postgresql://u@host/db") == tmp_path / ".robustprompt" / "adapt-cache.sqlite"
