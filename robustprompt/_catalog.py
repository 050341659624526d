"""The model catalog: profiles shipped as data (catalog/<provider>.json), extendable and overridable by users, and
the vendors that speak a wire format robustprompt already has (catalog/vendors.json), declared as data.

A vendor entry is all a server speaking, say, OpenAI's Chat Completions needs to become a provider:

    {"provider": "groq", "wire": "openai-compatible", "base_url": "https://api.groq.com/openai/v1",
     "api_key_env": ["GROQ_API_KEY"], "quirks": {"modes": ["json_object", "prompted"]}}

`quirks` are what the wire's adapter lets a vendor vary: `modes` (the output modes of a model the catalog does not
list, best first) and `extra_body` (fields sent in every request body).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from robustprompt._errors import ConfigError
from robustprompt._profile import ModelProfile
from robustprompt._prompt import OutputMode

__all__ = [
    "Vendor",
    "all_profiles",
    "close_matches",
    "forget_registered",
    "generation",
    "lookup",
    "register",
    "vendor",
    "vendors",
]

_lock = threading.Lock()
_user: dict[str, ModelProfile] = {}
_generation = [0]  # bumped by every register: model names resolved before must be resolved again

_DATES = ("released", "deprecated", "retired")
_QUIRKS = frozenset({"modes", "extra_body"})


@dataclass(frozen=True, slots=True)
class Vendor:
    """A provider declared as data: a server that speaks the wire format of the adapter `wire`."""

    provider: str
    wire: str
    base_url: str
    api_key_env: tuple[str, ...]
    base_url_env: tuple[str, ...] = ()
    modes: tuple[OutputMode, ...] = ()  # for models the catalog does not list; () keeps the wire's own
    extra_body: Mapping[str, Any] = field(default_factory=dict)


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


def _vendor(entry: dict[str, Any]) -> Vendor:
    where = f"bad vendor entry {entry.get('provider')!r} in the catalog"
    quirks = dict(entry.get("quirks", {}))
    if unknown := sorted(set(quirks) - _QUIRKS):
        raise ConfigError(f"{where}: unknown quirk(s) {', '.join(unknown)}; known: {', '.join(sorted(_QUIRKS))}")
    try:
        return Vendor(
            provider=entry["provider"],
            wire=entry["wire"],
            base_url=entry["base_url"],
            api_key_env=tuple(entry["api_key_env"]),
            base_url_env=tuple(entry.get("base_url_env", ())),
            modes=tuple(OutputMode(m) for m in quirks.get("modes", ())),
            extra_body=dict(quirks.get("extra_body", {})),
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: it needs {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


@cache
def _files() -> tuple[dict[str, Any], ...]:
    folder = resources.files("robustprompt").joinpath("catalog")
    items = sorted((i for i in folder.iterdir() if i.name.endswith(".json")), key=lambda i: i.name)
    return tuple(json.loads(item.read_text("utf-8")) for item in items)


@cache
def _shipped() -> dict[str, ModelProfile]:
    profiles: dict[str, ModelProfile] = {}
    for data in _files():
        for entry in data.get("models", ()):
            profile = _profile(entry)
            profiles[profile.name] = profile
    return profiles


@cache
def shipped_vendors() -> dict[str, Vendor]:
    """The vendor entries of every catalog file, by provider name."""
    found = (_vendor(entry) for data in _files() for entry in data.get("vendors", ()))
    return {v.provider: v for v in found}


def vendors() -> list[Vendor]:
    return list(shipped_vendors().values())


def vendor(provider: str) -> Vendor | None:
    return shipped_vendors().get(provider)


def register(profile: ModelProfile) -> None:
    """Add a model to the catalog, or override a shipped profile, for this process."""
    with _lock:
        _user[profile.name] = profile
        _generation[0] += 1


def forget_registered() -> None:
    """Drop every model `register` added, so shipped profiles show again (`robustprompt.reset()` calls this)."""
    with _lock:
        if _user:
            _user.clear()
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
