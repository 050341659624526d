"""Optional fields under grammar decoding: the grammar from the raw schema against the one from every_field_reachable.

    python benchmarks/grammar_fields.py [--targets smollm2,gemma,server]

A model with `nickname: str | None = None` declared before two required fields, six texts that each give a
nickname, on both embedded models (grammar mode) and on llama-cpp-python's server with SmolLM2 (json_object +
schema). "raw schema" replays what robustprompt did before: the pydantic schema as it is, its keys sorted for the
completion-style model. Prints, per target and arm: answers that reach every field in declared order, and
nicknames extracted (non-null, validated).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import robustprompt as rp  # noqa: E402
from robustprompt.adapters import local as _local  # noqa: E402
from robustprompt.adapters import openai_compatible  # noqa: E402
from tests.test_grammar_fields import TASK, TEXTS  # noqa: E402  # the model and texts the real-model test uses


@contextmanager
def raw_schema() -> Iterator[None]:
    """robustprompt as it was: the schema untouched, and sorted keys for the completion-style grammar."""
    saved_local, saved_grammar = _local.every_field_reachable, _local.LocalBackend._grammar
    saved_server = openai_compatible.every_field_reachable
    cache = openai_compatible._GRAMMAR_SCHEMAS

    def old_grammar(self: Any, schema: dict[str, Any]) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        return LlamaGrammar.from_json_schema(json.dumps(schema, sort_keys=True), verbose=False)

    _local.every_field_reachable = lambda schema: dict(schema)  # type: ignore[assignment]
    _local.LocalBackend._grammar = old_grammar  # type: ignore[method-assign]
    openai_compatible.every_field_reachable = lambda schema: dict(schema)  # type: ignore[assignment]
    openai_compatible._GRAMMAR_SCHEMAS = type(cache)()
    try:
        yield
    finally:
        _local.every_field_reachable, _local.LocalBackend._grammar = saved_local, saved_grammar  # type: ignore[method-assign]
        openai_compatible.every_field_reachable = saved_server
        openai_compatible._GRAMMAR_SCHEMAS = cache


def measure(model: rp.Model, mode: rp.OutputMode) -> dict[str, int]:
    reached = extracted = 0
    for text in TEXTS:
        run = TASK.run(text, model=model, policy=rp.Policy(mode=mode, reasks=0))
        raw = run.attempts[0].raw or ""
        try:
            keys = list(json.loads(raw, strict=False))
        except (ValueError, TypeError):
            keys = []
        reached += keys == ["nickname", "name", "city"]
        extracted += bool(run.ok and run.output.nickname)
    return {"reached_all_fields": reached, "nickname_extracted": extracted, "of": len(TEXTS)}


@contextmanager
def server() -> Iterator[str]:
    """llama-cpp-python's server on SmolLM2, started as the server test starts it."""
    import subprocess
    import tempfile

    from tests.test_llama_server import _free_port, _gguf, _wait_until_ready

    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()), "--host", "127.0.0.1"]
        command += ["--port", str(port), "--n_ctx", "2048"]
        with log.open("wb") as sink:
            proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            _wait_until_ready(proc, url, log)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", default="smollm2,gemma,server")
    targets = parser.parse_args().targets.split(",")
    results: dict[str, dict[str, dict[str, int]]] = {}
    for target in targets:
        arms: dict[str, dict[str, int]] = {}
        for arm in ("raw schema", "every field reachable"):
            with raw_schema() if arm == "raw schema" else _nothing():
                if target == "server":
                    with server() as url:
                        model = rp.model("openai-compatible:smollm2", base_url=url, temperature=0, max_output_tokens=64)
                        arms[arm] = measure(model, rp.OutputMode.JSON_OBJECT)
                else:
                    name = "local:smollm2" if target == "smollm2" else "local:gemma3-270m"
                    model = rp.model(name, temperature=0, max_output_tokens=64)
                    arms[arm] = measure(model, rp.OutputMode.GRAMMAR)
            print(target, arm, arms[arm], flush=True)
        results[target] = arms
    print(json.dumps(results))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
