"""Finding the task or pipeline a command names: `module:attribute` or `path/to/file.py:attribute`."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from robustprompt._calling import Task
from robustprompt._errors import ConfigError
from robustprompt._pipeline import Pipeline

__all__ = ["load_pipeline", "load_task"]

T = TypeVar("T")


def load_task(spec: str) -> Task[Any, Any]:
    """The Task named by `module:attribute` or `path/to/file.py:attribute` (attribute may be dotted)."""
    return _load_object(spec, Task, "declare it with rp.Task(...) or @rp.task")


def load_pipeline(spec: str) -> Pipeline:
    """The Pipeline named by `module:attribute` or `path/to/file.py:attribute`, for `migrate --link`."""
    return _load_object(spec, Pipeline, "--link migrates one link of an rp.Pipeline(...)")


def _load_object(spec: str, cls: type[T], fix: str) -> T:
    location, sep, attribute = spec.rpartition(":")
    if not sep or not location or not attribute:
        raise ConfigError(f"TASK must be module:attribute or path/to/file.py:attribute, got {spec!r}")
    module = _import_file(location) if location.endswith(".py") or os.sep in location else _import_module(location)
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ConfigError(f"{location} has no attribute {attribute!r}{_hint(module, cls)}")
        value = getattr(value, part)
    if not isinstance(value, cls):
        raise ConfigError(
            f"{spec} is a {type(value).__name__}, not a robustprompt {cls.__name__}{_hint(module, cls)}: {fix}"
        )
    return value


def _hint(module: Any, cls: type[Any]) -> str:
    names = sorted(name for name, value in vars(module).items() if isinstance(value, cls))
    kind = cls.__name__
    return f" (its {kind.lower()}s: {', '.join(names)})" if names else f" (it defines no {kind})"


def _import_file(location: str) -> Any:
    path = Path(location).resolve()
    if not path.is_file():
        raise ConfigError(f"no Python file at {location!r}")
    # A name per file, so two task files called tasks.py do not replace each other in sys.modules.
    name = f"_robustprompt_task_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {location!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: pydantic resolves the module's annotations through it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"importing {location} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> Any:
    # As `python -m` would: modules in the current directory come first.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name or name.startswith(f"{exc.name}."):
            raise ConfigError(f"no module named {name!r} (for a file, give its path: path/to/file.py:task)") from exc
        raise ConfigError(f"importing {name} failed: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"importing {name} failed: {type(exc).__name__}: {exc}") from exc
