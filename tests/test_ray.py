"""`--engine ray`: a suite's cases on a local Ray cluster this module starts (2 CPUs), through a loopback server.

The same results, comparison and report as the in-process engine; rate limits held across the workers; nothing of
Ray imported unless it is used. Deselect with `-m "not ray"`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from robustprompt.cli import main
from robustprompt.evals import CaseResult, Store
from robustprompt.evals._loading import load_task
from robustprompt.evals._store import today
from robustprompt.testing import OpenAIServer
from robustprompt.testing._openai_server import chat_reply, error_reply
from robustprompt.testing._server import Received, Reply
from tests.spec_check import chat_request_violations

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'robustprompt[ray]'")

pytestmark = pytest.mark.ray

TASKS = """
from typing import Literal

import robustprompt as rp

task = rp.Task("yes_no", input=int, output=Literal["yes", "no"], instructions="Is the number prime?")
"""
PRIMES = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37}
CASES = range(2, 42)
A, B = "openai:gpt-4.1-mini", "openai:gpt-4.1-nano"  # neither retiring: no warning on the way


def _answer(received: Received) -> Reply:
    """Deterministic per model and input, failures included: a wrong answer on B for some, an answer that needs a
    re-ask (never fixed) for multiples of 10, a permanent error for 33. Each answer is clean JSON: one that needed
    repairs would count towards demoting the output mode, which each process (each worker) judges from the order
    its own answers came in."""
    body = received.body
    inputs = [re.fullmatch(r"Input:\s*(\d+)", str(m["content"])) for m in body["messages"] if m["role"] == "user"]
    number = int(next(match for match in inputs if match)[1])  # a re-ask's last turn holds the errors
    if number == 33:
        return error_reply(400, "Invalid 'messages': rejected for this test.", type="invalid_request_error")
    if number % 10 == 0:
        return chat_reply('{"answer": "perhaps"}')
    answer = "yes" if number in PRIMES else "no"
    if body["model"] == "gpt-4.1-nano" and number % 3 == 0:
        answer = "no" if answer == "yes" else "yes"
    return chat_reply(json.dumps({"answer": answer}), prompt_tokens=20 + number, completion_tokens=5)


class _Timed(OpenAIServer):
    """Records when each request arrived, to see what a rate limit let through."""

    def __init__(self) -> None:
        super().__init__(api_key="sk-test", check=chat_request_violations, responder=self._reply)
        self.arrivals: list[float] = []
        self._times = threading.Lock()

    def _reply(self, received: Received) -> Reply:
        with self._times:
            self.arrivals.append(time.monotonic())
        return _answer(received)


@pytest.fixture(scope="module")
def server() -> Iterator[_Timed]:
    """The server, its address and key in the environment, and then the cluster: a local cluster's workers
    inherit the environment of the process that starts it, as they do when the command starts one."""
    with _Timed() as served, pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_BASE_URL", served.base_url)
        env.setenv("OPENAI_API_KEY", "sk-test")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield served
        finally:
            ray.shutdown()
    for received in served.requests:
        assert chat_request_violations(received.body) == []


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: _Timed) -> Path:
    (tmp_path / "tasks.py").write_text(TASKS)
    rows = [{"id": str(n), "input": n, "expected": "yes" if n in PRIMES else "no"} for n in CASES]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.chdir(tmp_path)
    server.requests.clear()
    server.arrivals.clear()
    return tmp_path


def _migrate(capsys: pytest.CaptureFixture[str], project: Path, store: str, *extra: str) -> tuple[int, str, str]:
    code = main(["migrate", "tasks.py:task", "--cases", "cases.jsonl", "--from", A, "--to", B,
                 "--store", str(project / store), "--json", str(project / f"{store}.json"), *extra])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def _stored(project: Path, store: str) -> list[dict[str, Any]]:
    fingerprint = load_task("tasks.py:task").fingerprint
    with Store(project / store) as opened:
        rows = [r for model in (A, B) for r in opened.get(fingerprint, model, today()).values()]
    return sorted((_timeless(r) for r in rows), key=lambda r: (r["model"], r["case_id"]))


def _calls(requests: list[Received]) -> Counter[tuple[str, str]]:
    """Requests by model and case input."""
    return Counter((r.body["model"], json.dumps(r.body["messages"])) for r in requests)


def _timeless(result: CaseResult) -> dict[str, Any]:
    """A result without what the clock decides."""
    return {**result.to_json(), "latency": 0.0, "created": ""}


def _without_timing(value: Any) -> Any:
    """A report without its latency figures (the only ones the clock decides)."""
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if "latency" not in k}
    if isinstance(value, list):
        return [_without_timing(v) for v in value if not (isinstance(v, dict) and "latency" in json.dumps(v))]
    return value


def test_the_ray_engine_gives_the_same_results_comparison_and_report(
    project: Path, server: _Timed, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _migrate(capsys, project, "process.sqlite")
    in_process = len(server.requests)
    ray_code, ray_out, ray_err = _migrate(capsys, project, "ray.sqlite", "--engine", "ray", "--concurrency", "4")
    assert "on Ray, 2 worker(s) x 4 call(s)" in ray_err, ray_err
    assert _calls(server.requests[in_process:]) == _calls(server.requests[:in_process])  # nothing sent twice
    assert ray_code == code == 1  # B answers wrong on multiples of 3: a regression either way

    results, ray_results = _stored(project, "process.sqlite"), _stored(project, "ray.sqlite")
    assert len(results) == 2 * len(CASES) and ray_results == results
    assert {r["error_kind"] for r in results} == {None, "OutputError", "BadRequestError"}
    assert any(r["attempts"] > 1 for r in results)  # the re-asks ran on the workers

    report = json.loads((project / "process.sqlite.json").read_text())
    ray_report = json.loads((project / "ray.sqlite.json").read_text())
    assert _without_timing(ray_report) == _without_timing(report)
    assert [line for line in ray_out.splitlines() if "latency" not in line] == [
        line for line in out.splitlines() if "latency" not in line
    ]  # the table, the cost lines (from the workers' ledgers) included


def test_a_rerun_on_ray_reuses_the_stored_results_and_starts_no_worker(
    project: Path, server: _Timed, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "tasks.py:task", "--cases", "cases.jsonl", "--model", A, "--engine", "ray", "--limit", "6"]
    assert main(args) == 0
    assert len(server.requests) == 6 and "on Ray" in capsys.readouterr().err
    assert main(args) == 0
    assert len(server.requests) == 6 and "on Ray" not in capsys.readouterr().err


def test_the_rate_limit_holds_across_the_workers_not_per_worker(
    project: Path, server: _Timed, capsys: pytest.CaptureFixture[str]
) -> None:
    """600 a minute is 10 a second for both workers together. Blocks of 2.5 requests (half a second's worth,
    split in two): in any window of T seconds at most 10 T + 3 x 2.5 requests (the bound in _ray_limits)."""
    args = ["run", "tasks.py:task", "--cases", "cases.jsonl", "--model", A, "--engine", "ray", "--rpm", "600",
            "--limit", "30", "--concurrency", "8"]  # fmt: skip
    assert main(args) == 0
    arrivals = sorted(server.arrivals)
    assert len(arrivals) == 33  # 30 cases, 3 of them re-asked: a re-ask is a request the limit counts too
    rate, slack = 10.0, 3 * 2.5
    for i, start in enumerate(arrivals):
        for window in (0.5, 1.0, 2.0):
            inside = sum(1 for t in arrivals[i:] if t - start <= window)
            assert inside <= rate * window + slack, (window, inside)
    # Each worker alone at 10 a second would have sent the 33 in about 1.6 s.
    assert arrivals[-1] - arrivals[0] >= (33 - slack) / rate - 0.1


def test_ray_is_refused_where_it_cannot_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "pipes.py").write_text(
        TASKS + "pipe = rp.Pipeline('p', [rp.Link('a', task, model='openai:gpt-4.1-mini')])\n"
    )
    code = main(["migrate", "pipes.py:pipe", "--link", "a", "--cases", "cases.jsonl", "--from", A, "--to", B,
                 "--engine", "ray"])  # fmt: skip
    assert code == 2 and "--engine ray runs a task's cases" in capsys.readouterr().err
    code = main(["migrate", "pipes.py:pipe", "--link", "a", "--cases", "cases.jsonl", "--from", A, "--to", B,
                 "--workers", "2"])  # fmt: skip
    assert code == 2 and "--workers sets the Ray workers, which --link does not use" in capsys.readouterr().err


def test_importing_the_package_and_building_the_command_load_no_ray() -> None:
    code = (
        "import sys, robustprompt, robustprompt.cli, robustprompt.evals._commands\n"
        "robustprompt.cli.build_parser().parse_args(['run', 'x:t', '--cases', 'c', '--model', 'm', '--engine', 'ray'])"
        "\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
