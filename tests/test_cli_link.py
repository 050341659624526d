"""`robustprompt migrate PIPELINE --link NAME`: model B tried on one link, the rest fixed, end outputs compared."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustprompt.cli import main
from robustprompt.testing import OpenAIServer
from robustprompt.testing._openai_server import chat_reply, model_not_found
from robustprompt.testing._server import Received, Reply

PIPELINES = """
import json
from typing import Literal

from pydantic import BaseModel

import robustprompt as rp
from robustprompt.testing import FunctionModel


class Ticket(BaseModel):
    text: str


class Topic(BaseModel):
    topic: Literal["billing", "shipping", "other"]


class Route(BaseModel):
    queue: str


classify = rp.Task("classify", input=Ticket, output=Topic, instructions="Which topic is the ticket about?")
route = rp.Task("route", input=Topic, output=Route, instructions="Pick the queue for the topic.")
QUEUES = {"billing": "finance", "shipping": "logistics"}


def queue_for(prompt):
    topic = json.loads(prompt.messages[-1].content.split("\\n", 1)[1])["topic"]
    return json.dumps({"queue": QUEUES.get(topic, "desk")})


pipeline = rp.Pipeline(
    "support",
    [
        rp.Step("clean", lambda t: Ticket(text=t.text.strip().lower()), output=Ticket),
        rp.Link("classify", classify, model="openai:gpt-4.1-mini", default=Topic(topic="other")),
        rp.Link("route", route, model=FunctionModel(queue_for, name="test:router")),
    ],
    input=Ticket,
)
ends_in_a_step = rp.Pipeline(
    "support_step",
    [
        rp.Link("classify", classify, model="openai:gpt-4.1-mini"),
        rp.Step("queue", lambda t: QUEUES.get(t.topic, "desk")),
    ],
    input=Ticket,
)
"""

TICKETS = [(f"  Parcel {i} is LATE ", "logistics") for i in range(10)] + [
    (f"Bill {i} charged twice", "finance") for i in range(10)
]


def topic_of(text: str, model: str) -> str:
    """gpt-4.1-mini reads every ticket right; gpt-4.1-nano calls shipping tickets "other"."""
    if "bill" in text:
        return "billing"
    return "shipping" if model == "gpt-4.1-mini" else "other"


def responder(received: Received) -> Reply:
    body = received.body
    inputs = [m["content"] for m in body["messages"] if m["role"] == "user" and m["content"].startswith("Input:")]
    text = json.loads(inputs[-1].split("\n", 1)[1])["text"]
    if body["model"] == "gpt-5-mini":
        return model_not_found("gpt-5-mini")
    return chat_reply(json.dumps({"topic": topic_of(text, body["model"])}))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with the pipeline module and a case file, a loopback OpenAI server, and the folder as cwd."""
    (tmp_path / "pipelines.py").write_text(PIPELINES)
    rows = [{"id": f"t{i}", "input": {"text": text}, "expected": {"queue": q}} for i, (text, q) in enumerate(TICKETS)]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTPROMPT_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with OpenAIServer(api_key="sk-test", responder=responder) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        yield tmp_path


def migrate(capsys: pytest.CaptureFixture[str], *extra: str, to: str = "openai:gpt-4.1-nano") -> tuple[int, str, str]:
    argv = ["migrate", "pipelines.py:pipeline", "--link", "classify", "--cases", "cases.jsonl"]
    code = main([*argv, "--from", "openai:gpt-4.1-mini", "--to", to, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_link_whose_new_model_hurts_the_end_output_is_a_regression(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = migrate(capsys, "--json", "out.json")
    assert code == 1, out + err
    assert out.startswith("task support (link classify): A = openai:gpt-4.1-mini, B = openai:gpt-4.1-nano")
    assert "B REGRESSES" in out.upper() and "accuracy fell 50.0 pts" in out
    assert "note: link classify's own output changed in 10 of 20 paired case(s)" in out
    assert "openai:gpt-4.1-mini: running 20 case(s) through pipeline support" in err
    report = json.loads((project / "out.json").read_text())
    assert report["a"]["accuracy"]["k"] == 20 and report["b"]["accuracy"]["k"] == 10
    changed = {c["case_id"]: c for c in report["changed"]}
    assert changed["t0"]["a_output"] == {"queue": "logistics"} and changed["t0"]["b_output"] == {"queue": "desk"}
    assert changed["t0"]["b_raw"] == '{"topic": "other"}'  # the link's answer, beside the end output


def test_the_same_model_on_both_sides_changes_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = migrate(capsys, to="openai:gpt-4.1-mini")
    assert code == 0
    assert "note: link classify's own output changed in 0 of 20 paired case(s)" in out


def test_a_dead_candidate_shows_as_the_links_default_in_the_notes(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = migrate(capsys, to="openai:gpt-5-mini")
    assert code == 1
    assert "note: link classify on B (openai:gpt-5-mini): default 20" in out
    assert "its valid rate 100.0 % on A, 0.0 % on B" in out


def test_a_pipeline_ending_in_a_step_compares_its_json_output(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"id": f"t{i}", "input": {"text": text}, "expected": q} for i, (text, q) in enumerate(TICKETS)]
    (project / "step_cases.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["migrate", "pipelines.py:ends_in_a_step", "--link", "classify", "--cases", "step_cases.jsonl"]
    code = main([*argv, "--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "accuracy fell 50.0 pts" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pipelines.py:pipeline", "--link", "clasify"], "has no link 'clasify' — did you mean 'classify'?"),
        (["pipelines.py:pipeline", "--link", "clean"], "link 'clean' of pipeline 'support' is a Python step"),
        (
            ["pipelines.py:classify", "--link", "classify"],
            "pipelines.py:classify is a Task, not a robustprompt Pipeline (its pipelines: ends_in_a_step, pipeline)",
        ),
        (["pipelines.py:pipeline"], "is a Pipeline, not a robustprompt Task (its tasks: classify, route)"),
    ],
)
def test_usage_mistakes_exit_2_with_a_message(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = main(["migrate", *argv, "--cases", "cases.jsonl", "--from", "openai:gpt-4.1-mini", "--to", "openai:o3"])
    _, err = capsys.readouterr()
    assert code == 2 and message in err, err


def test_replayed_answers_cannot_stand_in_for_one_link(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = migrate(capsys, to="replay:answers.csv")
    assert code == 2 and "with --link the link's inputs come from the pipeline: give a model" in err


def test_rate_limits_pace_the_link_under_trial(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = migrate(capsys, "--rpm", "100000", "--tpm", "100000000", "--concurrency", "4")
    assert code == 1 and "accuracy fell 50.0 pts" in out
