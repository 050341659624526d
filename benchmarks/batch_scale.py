"""Provider batch APIs at scale: 100,000 cases x 2 models through the loopback batch servers, and resume after a kill.

    python benchmarks/batch_scale.py [CASES]      # default 100000; about 10 min on 2 cores

Scale: `task.submit(cases, model=...)` then `job.collect()` for OpenAI (gpt-4.1-mini, OpenAI Batch: the cases split
into files of at most 50,000 requests) and Anthropic (claude-sonnet-4-5, Message Batches: at most 100,000 per batch).
The servers run in a process of their own, so the peak RSS is the client's. Reported per model: wall time (submit,
then collect: the servers answer at once, so this is robustprompt's own cost), batch items and batches, the answers
valid, and the cost from the catalog's prices at list price and with the batch discount the adapter declares
(PROVIDERS.md §8: both providers charge half).

Resume: `robustprompt run --batch` over 2,000 cases, killed (SIGKILL) once the provider has processed half the batch,
then run again. Reported: batches created, items paid before and after the kill (after must be exactly the
unfinished ones), and cases stored.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import pydantic

import robustprompt as rp
from robustprompt._completion import Usage
from robustprompt._ledger import price

ROOT = Path(__file__).resolve().parent.parent
OPENAI_KEY, ANTHROPIC_KEY = "sk-bench-openai", "sk-ant-bench"
RESUME_CASES = 2000

# The servers' process: answers every request from its input, takes `allow N|none`, `stats` and `quit` on stdin.
_SERVERS = """
import json, sys
from robustprompt.testing import AnthropicBatchServer, OpenAIBatchServer
from robustprompt.testing._anthropic_server import message_reply
from robustprompt.testing._openai_server import chat_reply

def label(text):
    return json.dumps({"label": "negative" if "awful" in text else "positive"})

openai = OpenAIBatchServer(answer=lambda b: chat_reply(label(b["messages"][-1]["content"])), api_key=sys.argv[1],
                           keep_requests=False)
anthropic = AnthropicBatchServer(answer=lambda b: message_reply(label(b["messages"][-1]["content"])),
                                 api_key=sys.argv[2], keep_requests=False)
with openai, anthropic:
    print(json.dumps({"openai": openai.base_url, "anthropic": anthropic.base_url}), flush=True)
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command == "allow":
            openai.allow(None if value == "none" else int(value))
        elif command == "stats":
            stats = {name: {"processed": s.processed, "created": s.created(), "live": s.live}
                     for name, s in (("openai", openai), ("anthropic", anthropic))}
            print(json.dumps(stats), flush=True)
        elif command == "quit":
            break
"""


class Review(pydantic.BaseModel):
    text: str


class Label(pydantic.BaseModel):
    label: Literal["positive", "negative"]


classify = rp.Task("classify", input=Review, output=Label, instructions="Label the review's sentiment.")


class Servers:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVERS, OPENAI_KEY, ANTHROPIC_KEY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        self.urls: dict[str, str] = json.loads(self.process.stdout.readline())

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def stats(self) -> dict[str, dict[str, int]]:
        self.send("stats")
        assert self.process.stdout is not None
        return json.loads(self.process.stdout.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        self.send("quit")
        self.process.wait(timeout=60)


def _review(i: int) -> Review:
    return Review(text=f"{'awful' if i % 3 else 'lovely'} product, order {i}")


def scale(servers: Servers, cases: int) -> list[str]:
    rows = []
    reviews = [_review(i) for i in range(cases)]
    models = {
        "openai": rp.model("openai:gpt-4.1-mini", base_url=servers.urls["openai"], api_key=OPENAI_KEY, timeout=600),
        "anthropic": rp.model(
            "anthropic:claude-sonnet-4-5",
            base_url=servers.urls["anthropic"],
            api_key=ANTHROPIC_KEY,
            max_output_tokens=200,
            timeout=600,
        ),
    }
    for model in models.values():
        ledger = rp.Ledger()
        started = time.perf_counter()
        job = classify.submit(reviews, model=model)
        submitted = time.perf_counter() - started
        outputs = job.collect(ledger=ledger, interval=0.2)
        wall = time.perf_counter() - started
        valid = sum(
            isinstance(o, Label) and o.label == ("negative" if i % 3 else "positive") for i, o in enumerate(outputs)
        )
        line = ledger.total
        listed = price(model.profile, Usage(line.input_tokens, line.output_tokens))
        rows.append(
            f"| {model.name} | {cases:,} | {len(job.parts)} | {submitted:.1f} s | {wall:.1f} s | {valid:,} | "
            f"${listed or 0:,.2f} | ${line.cost or 0:,.2f} |"
        )
        print(rows[-1], flush=True)
        del outputs, job
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = servers.stats()
    processed = {name: figures["processed"] for name, figures in stats.items()}
    live = {name: figures["live"] for name, figures in stats.items()}
    rows.append(f"peak RSS of the client: {rss:,.0f} MB; items the servers processed: {processed}, live calls: {live}")
    return rows


def resume(servers: Servers) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        lines = [json.dumps({"id": f"c{i}", "input": _review(i).model_dump()}) + "\n" for i in range(RESUME_CASES)]
        (project / "cases.jsonl").write_text("".join(lines))
        before = servers.stats()["openai"]
        servers.send(f"allow {before['processed'] + RESUME_CASES // 2}")
        env = {
            **os.environ,
            "OPENAI_BASE_URL": servers.urls["openai"],
            "OPENAI_API_KEY": OPENAI_KEY,
            "PYTHONPATH": str(ROOT),
        }
        args = [
            sys.executable,
            "-m",
            "robustprompt",
            "run",
            f"{Path(__file__).resolve()}:classify",
            "--cases",
            str(project / "cases.jsonl"),
            "--model",
            "openai:gpt-4.1-mini",
            "--batch",
            "--poll",
            "0.1",
            "--store",
            str(project / "store.sqlite"),
        ]
        first = subprocess.Popen(args, env=env, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while servers.stats()["openai"]["processed"] < before["processed"] + RESUME_CASES // 2:
            time.sleep(0.1)
        time.sleep(1.0)  # the run is polling a half-done batch
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        at_kill = servers.stats()["openai"]
        servers.send("allow none")
        second = subprocess.run(args, env=env, cwd=project, capture_output=True, text=True, check=True)
        after = servers.stats()["openai"]
        from robustprompt.evals._store import Store, today

        with Store(project / "store.sqlite") as store:
            stored = sum(
                len(store.get(fp, "openai:gpt-4.1-mini", today()))
                for (fp,) in store._db.query("SELECT DISTINCT fingerprint FROM results")
            )
        paid_before = at_kill["processed"] - before["processed"]
        paid_after = after["processed"] - at_kill["processed"]
        return [
            f"resume: {RESUME_CASES} cases, killed after {paid_before} items were processed; the second run "
            f"{'resumed' if 'resuming provider batch' in second.stderr else 'did NOT resume'} the batch",
            f"batches created: {after['created'] - before['created']}; items paid after the kill: {paid_after} "
            f"(unfinished at the kill: {RESUME_CASES - paid_before}); live calls: {after['live'] - before['live']}; "
            f"cases stored: {stored}",
        ]


def main() -> None:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    servers = Servers()
    try:
        print("| model | cases | batches | submit | submit + collect | valid | cost at list price | batch price |")
        print("|---|---|---|---|---|---|---|---|")
        for row in scale(servers, cases)[-1:]:
            print(row)
        for row in resume(servers):
            print(row)
    finally:
        servers.close()


if __name__ == "__main__":
    main()
