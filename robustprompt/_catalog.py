"""The model catalog: profiles shipped as data (catalog/<provider>.json), extendable and overridable by users."""

from __future__ import annotations

import datetime as dt
import difflib
import json
import threading
from functools import cache
from importlib import resources
from typing import Any

from robustprompt._errors import ConfigError
from robustprompt._profile import ModelProfile
from robustprompt._prompt import OutputMode

__all__ = ["all_profiles", "close_matches", "generation", "lookup", "register"]

_lock = threading.Lock()
_user: dict[str, ModelProfile] = {}
_generation = [0]  # bumped by every register: model names resolved before must be resolved again

_DATES = ("released", "deprecated", "retired")


def _profile(entry: dict[str, Any]) -> ModelProfile:
    fields = dict(entry)
    try:
        fields["modes"] = tuple(OutputMode(m) for m in fields.get("modes", ("prompted",)))
        for key in _DATES:
            if fields.get(key):
                fields[key] = dt.date.fromisoformat(fields[key])
        return ModelProfile(**fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad catalog entry {entry.get('provider')}:{entry.get('model_id')}: {exc}") from exc


@cache
def _shipped() -> dict[str, ModelProfile]:
    profiles: dict[str, ModelProfile] = {}
    for item in sorted(resources.files("robustprompt").joinpath("catalog").iterdir(), key=lambda i: i.name):
        if item.name.endswith(".json"):
            for entry in json.loads(item.read_text("utf-8"))["models"]:
                profile = _profile(entry)
                profiles[profile.name] = profile
    return profiles


def register(profile: ModelProfile) -> None:
    """Add a model to the catalog, or override a shipped profile, for this process."""
    with _lock:
        _user[profile.name] = profile
        _generation[0] += 1


def generation() -> int:
    """Changes whenever the catalog does."""
    return _generation[0]


def lookup(name: str) -> ModelProfile | None:
    """The profile for 'provider:model_id', or None when the catalog does not list it."""
    return _user.get(name) or _shipped().get(name)


def all_profiles() -> list[ModelProfile]:
    merged = {**_shipped(), **_user}
    return [merged[k] for k in sorted(merged)]


def close_matches(word: str, *, n: int = 3) -> list[str]:
    """Catalog names that look like `word`, matched on the full name and on the bare model id."""
    names = [p.name for p in all_profiles()]
    by_id = {name.split(":", 1)[1]: name for name in names}
    hits = difflib.get_close_matches(word, names, n=n, cutoff=0.6)
    hits += [by_id[i] for i in difflib.get_close_matches(word, list(by_id), n=n, cutoff=0.6)]
    return list(dict.fromkeys(hits))[:n]
