"""A planted API key must appear in no artifact of a full run: reprs, exceptions, Runs, logs, warnings, the
results store, JSON and HTML reports, and the command's output, even when the provider echoes the key back."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
from pathlib import Path

import httpx
import pytest

import robustprompt as rp
from robustprompt.cli import main
from robustprompt.testing import OpenAIServer, Received, Reply, cassette
from robustprompt.testing._openai_server import chat_reply, error_reply
from tests.loopback import server_fixture
from tests.models import Review, classify_task

KEY = "sk-planted-3b9e1f0c7d2a4e6b"
TASK_MODULE = """
from tests.models import classify_task
task = classify_task()
"""


def respond(received: Received) -> Reply:
    """Answers by the review's text; "echo" gets a 400 quoting the Authorization header, and the key's end without
    its prefix, as some APIs do."""
    last = received.body["messages"][-1]["content"]
    presented = received.headers.get("authorization", "")
    if "echo" in last:
        message = f"Invalid request for credentials {presented} (token {presented[-16:]})"  # whole, then bare
        return error_reply(400, message, type="invalid_request_error")
    if "reask" in last:
        return chat_reply('{"label": "happy"}')
    return chat_reply('{"label": "positive"}')


server = server_fixture(lambda: OpenAIServer(api_key=KEY, responder=respond))


def _fragments(key: str, start: int = 0) -> set[str]:
    """Every 8 characters of `key` from `start` on: a piece left by a cut, or the key without its prefix."""
    return {key[i : i + 8] for i in range(start, len(key) - 7)}


def _scan(text: str, where: str) -> None:
    assert KEY not in text, f"the key leaked into {where}"
    leaked = sorted(p for p in _fragments(KEY) if p in text)
    assert not leaked, f"{leaked} (part of the key) leaked into {where}"


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


def test_no_file_any_command_writes_holds_the_key(
    server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every command that writes: the store (and adapt's answer cache beside it), reports, JSON, adaptation records.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    (tmp_path / "secret_task.py").write_text(TASK_MODULE)
    cases = tmp_path / "cases.jsonl"
    texts = ["fine", "reask please", "echo this", "also fine", "echo again", "fine too"]
    lines = [{"id": f"c{i}", "input": {"text": t}, "expected": {"label": "positive"}} for i, t in enumerate(texts)]
    cases.write_text("\n".join(json.dumps(line) for line in lines))
    task, out = f"{tmp_path / 'secret_task.py'}:task", tmp_path
    common = f"--cases {cases} --store {out / 'store.sqlite'}".split()
    a, b = ["--model", "openai:gpt-4.1-mini"], ["--model", "openai:gpt-4.1-nano"]
    commands = [
        ["run", task, *common, *a],
        ["snapshot", "before", task, *common, *a],
        ["drift", task, *common, *a, *f"--baseline before --json {out / 'd.json'}".split()],
        [
            "adapt",
            task,
            *common[:2],
            *b,
            *f"--budget 8 --store {out / 'store.sqlite'}".split(),
            "--record",
            str(out / "record.json"),
        ],
        [
            "migrate",
            task,
            *common,
            *["--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1-nano", "--adapt", "--budget", "8"],
            *f"--adaptation-json {out / 'adapted.json'} --report {out / 'm.html'} --json {out / 'm.json'}".split(),
        ],
    ]
    for argv in commands:
        assert main(argv) in (0, 1, 3), argv  # a verdict, "regressed" or "cannot judge": the files are the point
    printed = capsys.readouterr()
    _scan(printed.out + printed.err, "the commands' output")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"store.sqlite", "d.json", "record.json", "adapted.json", "m.html", "m.json"} <= {p.name for p in files}
    for path in files:
        _scan(path.read_bytes().decode("utf-8", "replace"), str(path.relative_to(tmp_path)))
    assert any("echo this" in r.body["messages"][-1]["content"] for r in server.requests if r.body)
    assert "Invalid request for credentials" in (out / "m.json").read_text()  # the echo was stored, redacted


def test_a_cassette_and_its_replay_hold_no_key(server: OpenAIServer, tmp_path: Path) -> None:
    path, artifacts = tmp_path / "calls.json", list[tuple[str, str]]()
    for mode in ("record", "replay"):
        with httpx.Client() as client, cassette(path, mode=mode):  # type: ignore[arg-type]
            model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, http_client=client)
            for text in ("fine", "reask please", "echo this"):
                try:
                    artifacts.append((f"{mode} {text}", repr(classify_task().run(Review(text=text), model=model))))
                except rp.RobustPromptError as exc:
                    artifacts.append((f"{mode} {text}: error", f"{exc!s} {exc!r} {vars(exc)!r}"))
    assert any("Invalid request for credentials" in text for where, text in artifacts if where.startswith("replay"))
    for where, text in [*artifacts, ("the cassette", path.read_text())]:
        _scan(text, where)


# Echoes in every place a server can put the key, and straddling every cut robustprompt makes.
ECHOED = "sk-echoed-7f3a9c2e5b1d8046QZXW"
BARE = ECHOED.removeprefix("sk-echoed-")  # as an API that names keys by their secret part echoes it
_PREFIX = len('{"error": {"message": "')
ECHOES: dict[str, Reply] = {
    "body, across the 2,000-character cut": error_reply(
        400, "x" * (2000 - _PREFIX - 10) + ECHOED, type="invalid_request_error"
    ),
    "unreadable body, across the 200-byte snippet": Reply(200, b"<html>" + b"x" * 184 + ECHOED.encode()),
    "error code": error_reply(401, "bad key", type="invalid_request_error", code=ECHOED),
    "masked tail": error_reply(
        401, f"Incorrect API key provided: sk-ech************{ECHOED[-4:]}.", type="invalid_request_error"
    ),
    "key ending in": error_reply(403, f"The key ending in {ECHOED[-6:]} was revoked", type="permission_error"),
    "response header": chat_reply('{"label": "positive"}', headers=(("x-echo", ECHOED),)),
    "bare key, its prefix dropped": error_reply(401, f"Invalid token {BARE}.", type="invalid_request_error"),
    "bare key in a response header": chat_reply('{"label": "positive"}', headers=(("x-echo", BARE),)),
}


def _scan_echo(text: str, where: str) -> None:
    leaked = sorted(p for p in _fragments(ECHOED, 3) if p in text)  # any 8 characters of it, a cut one too
    assert not leaked, f"{leaked} leaked into {where}"
    assert f"ending in {ECHOED[-4:]}" not in text and f"*{ECHOED[-4:]}" not in text, where


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("reply", ECHOES.values(), ids=ECHOES.keys())
def test_an_echoed_key_is_scrubbed_before_any_cut_and_from_debug_logs(
    reply: Reply, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with OpenAIServer() as srv:
        srv.responder = lambda received: reply
        model = rp.model("openai:gpt-4.1-mini", base_url=srv.base_url, api_key=ECHOED)
        task, policy = classify_task(), rp.Policy(transport_retries=0)
        artifacts: list[str] = []
        try:
            if mode == "sync":
                artifacts.append(repr(task.run(Review(text="x"), model=model, policy=policy)))
            else:
                artifacts.append(repr(asyncio.run(task.arun(Review(text="x"), model=model, policy=policy))))
        except rp.RobustPromptError as exc:
            artifacts += [str(exc), repr(exc), repr(vars(exc)), repr(pickle.loads(pickle.dumps(exc)).__dict__)]
        model.close()
    assert artifacts
    for text in (*artifacts, caplog.text):
        _scan_echo(text, mode)
    if mode == "sync" and "header" in str(reply.headers):
        assert "x-echo" in caplog.text  # httpcore did log the headers, scrubbed
