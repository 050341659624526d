"""A one-time check, in a child process, that the embedded runtime can decode on this CPU.

llama.cpp compiled for the build machine's CPU can die with SIGSEGV or SIGILL on another (seen on Xeons with
AVX-512 and AMX), and a crash in C takes the whole interpreter with it: no exception, no message. So before the
first model is loaded in a process, a child process loads it and decodes a few tokens, plain and
grammar-constrained. A child that dies becomes a `ConfigError` naming the CPU, the build and the reinstall
command. The verdict is kept on disk per build, CPU and model file, so each installed build pays the probe once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import threading
from pathlib import Path

from robustprompt._errors import ConfigError

__all__ = ["PORTABLE_CMAKE_ARGS", "ProbeResult", "cpu_features", "ensure_runtime", "probe", "reinstall_command"]

PROBE_TIMEOUT = 300.0  # seconds: loading a model and decoding 8 tokens takes about 1 s; a busy machine is slower

# Runs in the child: build facts first (flushed, so a crash still leaves them), then a plain and a grammar decode.
_CHILD = r"""
import json, sys
import llama_cpp
print(json.dumps({"version": llama_cpp.__version__, "system": llama_cpp.llama_print_system_info().decode()}),
      flush=True)
from llama_cpp import Llama
from llama_cpp.llama_grammar import LlamaGrammar
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, verbose=False)
llm.create_completion("Hello", max_tokens=4, temperature=0)
grammar = LlamaGrammar.from_string('root ::= "yes" | "no"', verbose=False)
llm.create_completion("Is water wet? Answer:", max_tokens=4, temperature=0, grammar=grammar)
print(json.dumps({"ok": True}), flush=True)
"""

# The flags that matter for llama.cpp's CPU kernels, as Linux spells them.
_NOTABLE = ("avx", "avx2", "fma", "f16c", "avx512", "amx", "avx_vnni", "asimd", "neon", "sve", "i8mm", "dotprod")

_checked: set[str] = set()
_checked_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the child reported: `ok`, the build's own system line, and why it failed."""

    ok: bool
    version: str = ""
    system: str = ""
    failure: str = ""


# No -march=native. On x86-64 the AVX2/FMA/F16C kernels (every x86-64 server CPU since 2013, AMD Zen included),
# without the AVX-512 and AMX code paths that crashed; elsewhere (ARM) llama.cpp ignores the x86 options and
# builds for the architecture's baseline. The README's install commands use the same string.
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


def reinstall_command(version: str = "") -> str:
    """The exact command that replaces the installed runtime with a portable build, never from pip's cache."""
    pin = f"llama-cpp-python=={version}" if version else "llama-cpp-python"
    return (
        f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" {sys.executable} -m pip install --force-reinstall --no-cache-dir '
        f"--no-deps {pin}"
    )


def cpu_features() -> str:
    """The CPU's name and the instruction-set flags llama.cpp cares about, from /proc/cpuinfo where there is one."""
    name, flags = "", ""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        info = ""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in {"model name", "cpu model"} and not name:
            name = value.strip()
        elif key in {"flags", "features"} and not flags:
            flags = value
    notable = sorted({f for f in flags.split() if f.startswith(_NOTABLE)})
    return f"{name or platform.machine()} [{' '.join(notable) or 'no flags read'}]"


def probe(model_path: Path, *, child: list[str] | None = None, timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """Load `model_path` and decode in a child process; `child` replaces the command (tests pass a crashing one)."""
    command = child or [sys.executable, "-c", _CHILD, str(model_path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ProbeResult(False, failure=f"the probe did not finish in {timeout:g} s")
    facts: dict[str, object] = {}
    for line in done.stdout.splitlines():
        try:
            facts.update(json.loads(line))
        except (ValueError, TypeError):
            continue
    version, system = str(facts.get("version", "")), str(facts.get("system", "")).strip()
    if done.returncode == 0 and facts.get("ok") is True:
        return ProbeResult(True, version, system)
    if done.returncode < 0:
        failure = f"the process was killed by {_signal_name(-done.returncode)}"
    else:
        tail = done.stderr.strip().splitlines()[-3:]
        failure = f"the process exited with status {done.returncode}" + (f": {' / '.join(tail)}" if tail else "")
    return ProbeResult(False, version, system, failure)


def ensure_runtime(model_path: Path) -> None:
    """Probe once per process, and once per installed build on disk; raise `ConfigError` if the runtime dies."""
    key = _build_key(model_path)
    with _checked_lock:
        if key in _checked:
            return
        record = _record_path(key)
        result = _read(record)
        if result is None:
            result = probe(model_path)
            _write(record, result)
        if not result.ok:
            raise ConfigError(crash_message(model_path, result))
        _checked.add(key)


def crash_message(model_path: Path, result: ProbeResult) -> str:
    build = f"llama-cpp-python {result.version or '(version unknown)'}"
    system = f"; it reports: {result.system}" if result.system else ""
    return (
        f"the embedded runtime cannot decode on this CPU: loading {model_path.name} in a child process failed "
        f"({result.failure}). CPU: {cpu_features()}. Build: {build}{system}. A build compiled for another CPU "
        f"(pip's default is -march=native, and pip's wheel cache can hand back such a build) is the usual cause. "
        f"Reinstall a portable build: {reinstall_command(result.version)}"
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _build_key(model_path: Path) -> str:
    """The installed runtime's files, this CPU and the model file: a change to any of them means a new probe."""
    parts = [sys.executable, cpu_features(), str(model_path), _stamp(model_path)]
    spec = importlib.util.find_spec("llama_cpp")
    if spec is not None and spec.origin:
        package = Path(spec.origin).parent
        libraries = sorted(p for pattern in ("*.so*", "*.dylib", "*.dll") for p in package.rglob(pattern))
        parts += [f"{p.name}:{_stamp(p)}" for p in libraries]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _stamp(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def cache_dir() -> Path:
    """Where robustprompt keeps per-machine facts: $ROBUSTPROMPT_CACHE_DIR, else the user's cache folder."""
    if explicit := os.environ.get("ROBUSTPROMPT_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "robustprompt"


def _record_path(key: str) -> Path:
    return cache_dir() / f"runtime-probe-{key}.json"


def _read(path: Path) -> ProbeResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ProbeResult(bool(data["ok"]), str(data["version"]), str(data["system"]), str(data["failure"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path, result: ProbeResult) -> None:
    # A cache folder that cannot be written only costs a probe per process.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(result)), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass
