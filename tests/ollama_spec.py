"""Checks of request bodies against the pinned Ollama OpenAPI spec (`ChatRequest`), plus what the spec leaves open.

The spec's `ChatRequest` is an open object and Ollama's Go decoder ignores fields it does not know, so a
misspelled field would pass silently: `chat_request_violations` also flags unknown fields and a missing
`stream: false` (the default, true, would stream NDJSON at the adapter).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.spec_check import SPECS, SPECS_MISSING

OLLAMA_SPEC = SPECS / "ollama" / "openapi.yaml" if SPECS else None

_SPEC_URI = "urn:robustprompt:ollama-openapi"


def ollama_errors(instance: Any, schema_name: str) -> list[str]:
    """Where `instance` breaks `#/components/schemas/<schema_name>` of the Ollama spec; empty when valid
    (the calling test is skipped where the specs are absent)."""
    if OLLAMA_SPEC is None:
        pytest.skip(SPECS_MISSING)
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{error.json_path}: {error.message}" for error in errors]


def chat_request_violations(body: Any) -> list[str]:
    """What is wrong with a `/api/chat` body: the spec, fields it does not name, and streaming left on."""
    if not isinstance(body, Mapping):
        return ollama_errors(body, "ChatRequest") if OLLAMA_SPEC else ["$: not an object"]
    found = []
    if OLLAMA_SPEC:  # inside the fake server a skip cannot reach the test: without the specs, these checks are off
        found = ollama_errors(body, "ChatRequest")
        known = _spec()["components"]["schemas"]["ChatRequest"]["properties"]
        found += [f"$.{name}: not a ChatRequest field (Ollama would ignore it)" for name in body if name not in known]
    if not isinstance(body.get("stream"), bool):
        # Left out, Ollama streams NDJSON: a non-streamed call must say false, a streamed one true.
        found.append("$.stream: must be sent (false, or Ollama streams NDJSON)")
    return found


@functools.cache
def _spec() -> dict[str, Any]:
    assert OLLAMA_SPEC is not None
    loaded: dict[str, Any] = yaml.safe_load(OLLAMA_SPEC.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resources([(_SPEC_URI, Resource.from_contents(_spec(), DRAFT202012))])
    return Draft202012Validator({"$ref": f"{_SPEC_URI}#/components/schemas/{schema_name}"}, registry=registry)
