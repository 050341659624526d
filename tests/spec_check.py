"""Checks of wire bodies against the pinned OpenAI spec and OpenAI's strict-mode schema rules.

The spec checks the request envelope only (its `response_format.schema` is open), so strict-mode rules
(PROVIDERS.md §1.3) are checked here on their own, independently of the adapters' transformer.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def _find_specs() -> Path | None:
    """$ROBUSTPROMPT_SPECS (it must exist when set), else ../shared/specs beside the checkout, else none."""
    explicit = os.environ.get("ROBUSTPROMPT_SPECS")
    if explicit:
        if not Path(explicit, "openai", "openapi.json").is_file():
            raise pytest.UsageError(f"ROBUSTPROMPT_SPECS={explicit} has no openai/openapi.json: point it at the specs")
        return Path(explicit)
    beside = Path(__file__).resolve().parents[2] / "shared" / "specs"
    return beside if (beside / "openai" / "openapi.json").is_file() else None


SPECS = _find_specs()
OPENAI_SPEC = SPECS / "openai" / "openapi.json" if SPECS else None
SPECS_MISSING = (
    "the pinned API specs are not here: set ROBUSTPROMPT_SPECS to a folder holding openai/openapi.json and "
    "ollama/openapi.yaml (or put them in ../shared/specs beside the checkout) to run the spec checks"
)
# For a test whose assertion is the spec's verdict on a request, which a fake server cannot give without it.
needs_specs = pytest.mark.skipif(SPECS is None, reason=SPECS_MISSING)

_SPEC_URI = "urn:robustprompt:openai-openapi"
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")

# Keywords strict mode rejects (PROVIDERS.md §1.3), `default` included.
_FORBIDDEN = frozenset(
    {
        "default",
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
    }
)
_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
_TYPE_KEYS = frozenset({"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const"})
_LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")
_MAX_DEPTH = 10
_MAX_PROPERTIES = 5000
_MAX_ENUM_VALUES = 1000
_MAX_TOTAL_STRING_LENGTH = 120_000


# ---------------------------------------------------------------- the OpenAPI spec


def openapi_errors(instance: Any, schema_name: str) -> list[str]:
    """Where `instance` breaks `#/components/schemas/<schema_name>` of the OpenAI spec; empty when valid.

    The test calling it is skipped, with how to enable it, where the specs are absent."""
    if OPENAI_SPEC is None:
        pytest.skip(SPECS_MISSING)
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [_describe(error) for error in errors]


def envelope_errors(instance: Any, schema_name: str) -> list[str]:
    """The spec's verdict inside a fake server, where a skip cannot reach the test: none without the specs
    (the session header says the envelope checks are off, and the tests that check the spec itself skip)."""
    return openapi_errors(instance, schema_name) if OPENAI_SPEC else []


def _describe(error: Any) -> str:
    text = f"{error.json_path}: {error.message}"
    if error.context:  # a failed oneOf/anyOf: name the branch that came closest
        closest = best_match(error.context)
        text += f" (closest: {closest.json_path}: {closest.message})"
    return text


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{_SPEC_URI}#/components/schemas/{schema_name}"}, registry=_registry())


@functools.cache
def _registry() -> Registry[Any]:
    assert OPENAI_SPEC is not None
    spec = _without_nullable(json.loads(OPENAI_SPEC.read_text(encoding="utf-8")))
    return Registry().with_resources([(_SPEC_URI, Resource.from_contents(spec, DRAFT202012))])


def _without_nullable(node: Any) -> Any:
    # The 3.1 spec still carries OpenAPI 3.0's `nullable: true`, which JSON Schema ignores; the API accepts
    # null there, so spell it as a union with null.
    if isinstance(node, list):
        return [_without_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    rest = {key: _without_nullable(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [rest, {"type": "null"}]} if node.get("nullable") is True else rest


# ---------------------------------------------------------------- strict-mode rules


def strict_violations(schema: Mapping[str, Any]) -> list[str]:
    """Every way `schema` breaks OpenAI's strict-mode rules, phrased like OpenAI's own messages."""
    found: list[str] = []
    if schema.get("type") != "object":
        found.append(
            f"schema must be a JSON Schema of 'type: \"object\"', got 'type: {json.dumps(schema.get('type'))}'"
        )
    if "anyOf" in schema:
        found.append("the root schema must not be 'anyOf'")
    walked = list(_nodes(schema, ()))
    found += [f"In context={path!r}, {problem}" for path, node in walked for problem in _problems(node)]
    nodes = [node for _, node in walked if isinstance(node, dict)]
    properties = sum(len(node.get("properties", {})) for node in nodes)
    enums = sum(len(node.get("enum", ())) for node in nodes)
    text = sum(map(_string_length, nodes))
    depth = _depth(schema, schema, ())
    if depth > _MAX_DEPTH:
        found.append(f"{depth} levels of nesting exceeds limit of {_MAX_DEPTH}")
    if properties > _MAX_PROPERTIES:
        found.append(f"{properties} object properties exceed the limit of {_MAX_PROPERTIES}")
    if enums > _MAX_ENUM_VALUES:
        found.append(f"{enums} enum values exceed the limit of {_MAX_ENUM_VALUES}")
    if text > _MAX_TOTAL_STRING_LENGTH:
        found.append(f"names, enum and const values total {text} characters, over {_MAX_TOTAL_STRING_LENGTH}")
    return found


def _nodes(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every sub-schema with its path, walking all the keywords that hold sub-schemas."""
    yield path, node
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas"):
            for name, sub in value.items():
                yield from _nodes(sub, (*path, key, name))
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for i, sub in enumerate(value):
                yield from _nodes(sub, (*path, key, i))
        elif key in ("items", "not", "if", "then", "else", "contains") or (
            key == "additionalProperties" and not isinstance(value, bool)  # false is required, true flagged
        ):
            yield from _nodes(value, (*path, key))


def _problems(node: Any) -> Iterator[str]:
    if not isinstance(node, dict):
        yield f"schema must be a JSON object, not {node!r}"
        return
    for key in sorted(_FORBIDDEN & node.keys()):
        yield f"'{key}' is not permitted"
    if "$ref" in node and len(node) > 1:
        yield f"'$ref' cannot have keywords {sorted(set(node) - {'$ref'})}"
    if not _TYPE_KEYS & node.keys():
        yield "schema must have a 'type' key"
    if "format" in node and node["format"] not in _FORMATS:
        yield f"format '{node['format']}' is not permitted"
    if isinstance(node.get("pattern"), str) and _has_lookaround(node["pattern"]):
        yield f"pattern {node['pattern']!r} uses lookaround"
    kind = node.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind):
        yield from _object_problems(node)


def _object_problems(node: dict[str, Any]) -> Iterator[str]:
    if node.get("additionalProperties") is not False:
        yield "'additionalProperties' is required to be supplied and to be false"
    if "properties" not in node:
        yield "'properties' is required on every object"
    required = node.get("required")
    missing = [name for name in node.get("properties", {}) if not isinstance(required, list) or name not in required]
    if missing or not isinstance(required, list):
        yield (
            "'required' is required to be supplied and to be an array including every key in properties."
            + (f" Missing {missing}" if missing else "")
        )


def _has_lookaround(pattern: str) -> bool:
    escaped = False
    for i, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif pattern.startswith(_LOOKAROUND, i):
            return True
    return False


def _string_length(node: dict[str, Any]) -> int:
    """Characters of property names, definition names, enum values and const values in one node."""
    values = [*node.get("enum", ()), *([node["const"]] if "const" in node else [])]
    names = [*node.get("properties", {}), *node.get("$defs", {}), *node.get("definitions", {})]
    return sum(len(str(value)) for value in values) + sum(map(len, names))


def _depth(node: Any, root: Mapping[str, Any], seen: tuple[str, ...]) -> int:
    """Levels of objects nested in `node`, following `$ref`s once per path (recursion is allowed)."""
    if not isinstance(node, dict):
        return 0
    ref = node.get("$ref")
    if isinstance(ref, str):
        return 0 if ref in seen else _depth(_resolve(root, ref), root, (*seen, ref))
    children = [
        *node.get("properties", {}).values(),
        *node.get("anyOf", ()),
        *([node["items"]] if "items" in node else []),
    ]
    here = 1 if node.get("type") == "object" else 0
    return here + max((_depth(child, root, seen) for child in children), default=0)


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    target: Any = root
    for part in ref.removeprefix("#").split("/")[1:]:
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


# ---------------------------------------------------------------- whole requests


def chat_request_violations(body: Mapping[str, Any]) -> list[str]:
    """What the real Chat Completions endpoint would reject in `body`: the spec, strict schemas, names, and
    JSON mode without the word "json" in the messages."""
    found = envelope_errors(body, "CreateChatCompletionRequest")
    if "stream_options" in body and body.get("stream") is not True:
        found.append("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping):
        response_format = {}
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        found += strict_schema_violations("response_format", spec, spec.get("schema", {}))
    if response_format.get("type") == "json_object" and "json" not in _message_text(body).lower():
        found.append(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."
        )
    for tool in body.get("tools") or ():
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            continue
        function = tool.get("function") or {}
        found += strict_schema_violations("function", function, function.get("parameters", {}))
    return found


def strict_schema_violations(what: str, spec: Mapping[str, Any], schema: Any) -> list[str]:
    name = spec.get("name", "")
    found = [] if _NAME.fullmatch(str(name)) else [f"Invalid {what} name {name!r}: must match ^[a-zA-Z0-9_-]{{1,64}}$"]
    if spec.get("strict") is True:
        problems = strict_violations(schema) if isinstance(schema, Mapping) else ["schema must be an object"]
        if problems:
            # One entry per schema, worded like OpenAI's 400, so a server can answer with it as is.
            found.append(f"Invalid schema for {what} '{name}': " + "; ".join(problems))
    return found


def _message_text(body: Mapping[str, Any]) -> str:
    contents = [message.get("content") for message in body.get("messages") or () if isinstance(message, Mapping)]
    return json.dumps(contents, ensure_ascii=False)
