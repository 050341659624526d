"""A planted API key must appear in no artifact of a full run: reprs, exceptions, Runs, logs, warnings, the
results store, JSON and HTML reports, and the command's output, even when the provider echoes the key back."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import robustprompt as rp
from robustprompt.cli import main
from robustprompt.testing import OpenAIServer, Received, Reply
from robustprompt.testing._openai_server import chat_reply, error_reply
from tests.models import Review, classify_task

KEY = "sk-planted-3b9e1f0c7d2a4e6b"
TASK_MODULE = """
from tests.models import classify_task
task = classify_task()
"""


def respond(received: Received) -> Reply:
    """Answers by the review's text; "echo" gets a 400 quoting the Authorization header, as some APIs do."""
    last = received.body["messages"][-1]["content"]
    presented = received.headers.get("authorization", "")
    if "echo" in last:
        return error_reply(400, f"Invalid request for credentials {presented}", type="invalid_request_error")
    if "reask" in last:
        return chat_reply('{"label": "happy"}')
    return chat_reply('{"label": "positive"}')


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key=KEY, responder=respond) as srv:
        yield srv


def _scan(text: str, where: str) -> None:
    assert KEY not in text, f"the key leaked into {where}"
    assert KEY[3:] not in text, f"part of the key leaked into {where}"


def test_no_in_process_artifact_holds_the_key(server: OpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    artifacts: list[tuple[str, str]] = []
    with httpx.Client() as client:
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, http_client=client)
        artifacts += [("model repr", repr(model)), ("backend repr", repr(model.backend))]
        for text in ("fine", "reask please", "echo this"):
            try:
                run = classify_task().run(Review(text=text), model=model, policy=rp.Policy(reasks=1))
                artifacts.append((f"run for {text!r}", repr(run)))
            except rp.RobustPromptError as exc:
                artifacts += [(f"error for {text!r}", f"{exc!s} {exc!r} {vars(exc)!r}")]
                run_of_error = getattr(exc, "run", None)
                artifacts.append((f"run of error for {text!r}", repr(run_of_error)))
                artifacts.append((f"pickled error for {text!r}", repr(pickle.loads(pickle.dumps(exc)).__dict__)))
    assert any("echo" in where for where, _ in artifacts)  # the echoing provider was really exercised
    assert any("Invalid request for credentials" in text for _, text in artifacts)
    artifacts.append(("logs", caplog.text))
    for where, text in artifacts:
        _scan(text, where)


def test_no_file_or_output_of_the_command_holds_the_key(
    server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    (tmp_path / "secret_task.py").write_text(TASK_MODULE)
    cases = tmp_path / "cases.jsonl"
    lines = [
        {"id": f"c{i}", "input": {"text": t}, "expected": {"label": "positive"}}
        for i, t in enumerate(["fine", "reask please", "echo this", "also fine"])
    ]
    cases.write_text("\n".join(json.dumps(line) for line in lines))
    code = main(
        [
            "migrate",
            f"{tmp_path / 'secret_task.py'}:task",
            "--cases",
            str(cases),
            "--from",
            "openai:gpt-4.1-mini",
            "--to",
            "openai:gpt-4.1-nano",
            "--store",
            str(tmp_path / "store.sqlite"),
            "--json",
            str(tmp_path / "out.json"),
            "--report",
            str(tmp_path / "out.html"),
        ]
    )
    assert code in (0, 1, 3)  # 4 cases: "cannot judge" is as good a verdict here; the files are the point
    out = capsys.readouterr()
    _scan(out.out + out.err, "the command's output")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"store.sqlite", "out.json", "out.html"} <= {p.name for p in files}
    for path in files:
        _scan(path.read_bytes().decode("utf-8", "replace"), str(path.name))
    assert "Invalid request for credentials" in (tmp_path / "out.json").read_text()  # the echo was stored, redacted
