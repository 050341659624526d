"""`robustprompt run --batch` killed mid-way (a real process, SIGKILL) and run again: the batch's handle is in the
store, so the second run polls and collects the same batch. No case is lost and none is submitted (or paid) twice.
Killed between the provider's creating the batch and the store's keeping its id, the run resumes by finding that
batch at the provider (by the job's mark), not by creating a second one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from robustprompt.evals._store import Store, today
from robustprompt.testing import AnthropicBatchServer, OpenAIBatchServer, Reply
from robustprompt.testing._anthropic_server import message_reply
from robustprompt.testing._openai_server import chat_reply

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-resume-test-31ab"
CASES = 40

TASK_FILE = """
from typing import Literal
import pydantic
import robustprompt as rp

class Review(pydantic.BaseModel):
    text: str

class Label(pydantic.BaseModel):
    label: Literal["positive", "negative"]

classify = rp.Task("classify", input=Review, output=Label, instructions="Label the review's sentiment.")
"""


# Run as the CLI, with the store's keeping of a created batch's id replaced by the process's death.
KILLED_AFTER_CREATION = """
import json, os, sys
from robustprompt.cli import main
from robustprompt.evals._store import Store

keep = Store.keep_batch

def keep_batch(self, fingerprint, model, date, handle):
    job = json.loads(json.loads(handle)["job"])
    if job["parts"] and job["pending"] is None:  # the provider made the batch; its id is about to be kept
        os._exit(137)
    keep(self, fingerprint, model, date, handle)

Store.keep_batch = keep_batch
sys.exit(main(sys.argv[1:]))
"""


def _label(text: str) -> str:
    return json.dumps({"label": "negative" if "awful" in text else "positive"})


def _answer(body: Any) -> Reply:
    return chat_reply(_label(body["messages"][1]["content"]))


def _anthropic_answer(body: Any) -> Reply:
    return message_reply(_label(body["messages"][0]["content"]))


def _run(
    project: Path,
    server: OpenAIBatchServer | AnthropicBatchServer,
    *command: str,
    models: tuple[str, ...] = ("--model", "openai:gpt-4.1-mini"),
    extra: tuple[str, ...] = (),
    entry: tuple[str, ...] = ("-m", "robustprompt"),
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env |= {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}
    env |= {"ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": KEY}
    task, cases, store = f"{project / 'task.py'}:classify", str(project / "cases.jsonl"), str(project / "store.sqlite")
    args = [sys.executable, *entry, *(command or ("run",)), task, "--cases", cases, *models]
    args += ["--batch", "--poll", "0.05", "--store", store, *extra]
    return subprocess.Popen(args, env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(condition: Any, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _project(folder: Path) -> None:
    (folder / "task.py").write_text(TASK_FILE)
    lines = [
        {
            "id": f"c{i}",
            "input": {"text": f"{'awful' if i % 3 else 'lovely'} {i}"},
            "expected": {"label": "negative" if i % 3 else "positive"},
        }
        for i in range(CASES)
    ]
    (folder / "cases.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _killed_half_done(project: Path, server: OpenAIBatchServer) -> None:
    """A `run --batch` SIGKILLed while polling its batch, half of which the server has processed."""
    first = _run(project, server)
    try:
        _wait(lambda: server.processed == CASES // 2, "half the batch to be processed")
        polls = len(server.requests)
        _wait(lambda: len(server.requests) > polls + 3, "the run to poll the half-done batch")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL


def test_a_killed_batch_run_resumes_its_batch_instead_of_submitting_again(tmp_path: Path) -> None:
    _project(tmp_path)
    with OpenAIBatchServer(answer=_answer, api_key=KEY, allowance=CASES // 2) as server:
        _killed_half_done(tmp_path, server)
        with Store(tmp_path / "store.sqlite") as store:
            assert store.batch(_fingerprint(store), "openai:gpt-4.1-mini", today()) is not None
        server.allow(None)
        second = _run(tmp_path, server)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert "resuming provider batch" in err
        # One upload, one batch; every item processed (paid) once: after the kill, exactly the unfinished half.
        assert server.uploads == 1 and server.created() == 1
        assert server.processed == CASES and server.live == 0
    with Store(tmp_path / "store.sqlite") as store:
        fingerprint = _fingerprint(store)
        stored = store.get(fingerprint, "openai:gpt-4.1-mini", today())
        assert sorted(stored) == sorted(f"c{i}" for i in range(CASES))
        assert all(result.ok for result in stored.values())
        assert store.batch(fingerprint, "openai:gpt-4.1-mini", today()) is None


def test_a_batch_sent_with_other_settings_is_collected_but_not_taken_for_this_runs(tmp_path: Path) -> None:
    _project(tmp_path)
    with OpenAIBatchServer(answer=_answer, api_key=KEY, allowance=CASES // 2) as server:
        _killed_half_done(tmp_path, server)
        server.allow(None)
        second = _run(tmp_path, server, extra=("--temperature", "0.5"))
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert "resuming provider batch" in err and "other sampling settings" in err
        assert server.created() == 2  # the old batch collected (it is paid for), then this run's own
    with Store(tmp_path / "store.sqlite") as store:
        stored = store.get(_fingerprint(store), "openai:gpt-4.1-mini", today())
        assert len({result.settings for result in stored.values()}) == 1
        assert all("0.5" in result.settings for result in stored.values()), {r.settings for r in stored.values()}


def _fingerprint(store: Store) -> str:
    rows = store._db.query("SELECT DISTINCT fingerprint FROM batches UNION SELECT DISTINCT fingerprint FROM results")
    assert len(rows) == 1
    return str(rows[0][0])


def test_migrate_batch_submits_both_sides_before_waiting_for_either(tmp_path: Path) -> None:
    _project(tmp_path)
    with OpenAIBatchServer(answer=_answer, api_key=KEY) as server:
        models = ("--from", "openai:gpt-4.1-mini", "--to", "openai:gpt-4.1")
        done = _run(tmp_path, server, "migrate", models=models)
        _, err = done.communicate(timeout=120)
        assert done.returncode == 0, err
        paths = [(r.method, r.path) for r in server.requests]
        creations = [i for i, (method, path) in enumerate(paths) if (method, path) == ("POST", "/v1/batches")]
        downloads = [i for i, (method, path) in enumerate(paths) if path.endswith("/content")]
        assert len(creations) == 2 and max(creations) < min(downloads)
        assert server.processed == 2 * CASES and server.live == 0


@pytest.mark.parametrize(
    ("make", "model"),
    [
        (lambda: OpenAIBatchServer(answer=_answer, api_key=KEY), "openai:gpt-4.1-mini"),
        (lambda: AnthropicBatchServer(answer=_anthropic_answer, api_key=KEY), "anthropic:claude-sonnet-4-5"),
    ],
    ids=["openai", "anthropic"],
)
def test_a_run_killed_between_the_creation_and_keeping_its_id_finds_the_batch(
    tmp_path: Path, make: Any, model: str
) -> None:
    _project(tmp_path)
    (tmp_path / "killed.py").write_text(KILLED_AFTER_CREATION)
    models = ("--model", model)
    with make() as server:
        first = _run(tmp_path, server, models=models, entry=(str(tmp_path / "killed.py"),))
        _, err = first.communicate(timeout=120)
        assert first.returncode == 137, err
        assert server.created() == 1
        with Store(tmp_path / "store.sqlite") as store:
            kept = json.loads(json.loads(store.batch(_fingerprint(store), model, today()) or "{}")["job"])
        assert kept["parts"] == [] and kept["pending"] is not None  # the store knows of the creation, not its id
        second = _run(tmp_path, server, models=models)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert "looking up the one being created" in err
        # The batch the first run created, found and collected: no second batch, every item processed once.
        assert server.created() == 1 and server.processed == CASES and server.live == 0
    with Store(tmp_path / "store.sqlite") as store:
        fingerprint = _fingerprint(store)
        stored = store.get(fingerprint, model, today())
        assert sorted(stored) == sorted(f"c{i}" for i in range(CASES))
        assert all(result.ok for result in stored.values())
        assert store.batch(fingerprint, model, today()) is None
