"""Rewrite a pydantic JSON Schema into the subset OpenAI's strict mode accepts (PROVIDERS.md §1.3).

Strict mode (structured outputs, `strict: true` functions) decodes against the schema, so every object must
be closed and list all its properties as required. Constraints strict mode cannot enforce move into
`description`, where the model still reads them; local validation against the original model enforces them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from robustprompt.adapters._schema_common import (
    Unexpressible,
    inline_root_ref,
    merge_all_of,
    note,
    root_kind,
)

__all__ = ["to_strict_schema"]

_NAMES = {"openai": "OpenAI", "mistral": "Mistral"}  # the providers that take this dialect

_NULL = {"type": "null"}

# Kept as they are when present; sub-schema keywords are walked separately.
_KEPT = frozenset(
    {"type", "enum", "const", "description", "$ref", "pattern", "format", "multipleOf", "minimum", "maximum"}
    | {"exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems"}
)
# Dropped silently: annotations that add noise for the model, or that strict mode rejects (`default`);
# `discriminator` is OpenAPI's, and the `anyOf` it annotates already says everything.
_DROPPED = frozenset(
    {"title", "default", "$schema", "$comment", "discriminator", "readOnly", "writeOnly", "deprecated"}
)
# `required` and `additionalProperties` are rebuilt for every object.
_REBUILT = frozenset({"required", "additionalProperties"})
_SCHEMA_MAPS = frozenset({"$defs", "definitions"})
_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
# A `(?=`, `(?!`, `(?<=` or `(?<!` whose parenthesis is not escaped (an even run of backslashes before it).
_LOOKAROUND = re.compile(r"(?:^|[^\\])(?:\\\\)*\(\?<?[=!]")
# A schema with none of these accepts any JSON value, which strict mode cannot decode.
_TYPED = frozenset({"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const"})


def to_strict_schema(schema: Mapping[str, Any], *, provider: str = "openai") -> dict[str, Any]:
    """A new schema that OpenAI strict mode accepts, equivalent to `schema` up to the constraints it moves
    into descriptions. Raises `ConfigError` when the schema cannot be expressed in strict mode."""
    try:
        root = inline_root_ref(copy.deepcopy(dict(schema)))
        if root.get("type") != "object":
            raise Unexpressible(
                (),
                root_kind(root),
                "a top-level value that is not an object",
                "wrap it in a model with one field",
            )
        return _strict(root, ())
    except Unexpressible as err:
        raise err.config_error(f"{_NAMES.get(provider, provider)} strict mode", "a non-strict output mode") from None


def _strict(node: Any, path: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, Mapping) or not node.keys() & _TYPED:
        raise Unexpressible(
            path, "has no type (Any, or a bare list or dict)", "values of any type", "give it a concrete type"
        )
    if "allOf" in node:
        return _strict(merge_all_of(node, path), path)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in node.items():
        if key in _DROPPED or key in _REBUILT:
            continue
        if key == "properties":
            required = set(node.get("required", ()))
            out[key] = {name: _field(sub, name in required, (*path, key, name)) for name, sub in value.items()}
        elif key in _SCHEMA_MAPS:
            out[key] = {name: _strict(sub, (*path, key, name)) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf"):
            # strict mode has no `oneOf`; `anyOf` accepts the same values when the members are disjoint,
            # as a discriminated union's are.
            out["anyOf"] = [_strict(sub, (*path, key, str(i))) for i, sub in enumerate(value)]
        elif key == "prefixItems":  # a tuple: accepted as it is (pydantic-ai, live-verified)
            out[key] = [_strict(sub, (*path, key, str(i))) for i, sub in enumerate(value)]
        elif key == "items":
            out[key] = _strict(value, (*path, key))
        elif key in _KEPT and _supported(key, value):
            out[key] = value
        else:
            notes.append(note(key, value))
    _check_closed(node, path)
    if _is_object(out):
        out.setdefault("properties", {})
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    if notes:
        description = out.get("description")
        joined = "; ".join(notes)
        out["description"] = f"{description} ({joined})" if description else joined
    if "$ref" in out and len(out) > 1:
        # strict mode rejects siblings of `$ref`, but allows them beside `anyOf`.
        out = {"anyOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _field(schema: Any, required: bool, path: tuple[str, ...]) -> dict[str, Any]:
    # Every property must be required in strict mode: an optional one is made nullable instead, and the
    # engine drops the nulls before validating, so the original default applies.
    out = _strict(schema, path)
    if required or _accepts_null(out):
        return out
    if "anyOf" in out:
        return {**out, "anyOf": [*out["anyOf"], _NULL]}
    return {"anyOf": [out, _NULL]}


def _check_closed(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
    if node.get("additionalProperties", False) is not False:
        raise Unexpressible(
            path,
            "is a dict[str, ...] (additionalProperties)",
            "free-form objects",
            "use a list of key/value models",
        )


def _supported(key: str, value: Any) -> bool:
    if key == "format":
        return value in _FORMATS
    if key == "pattern":
        return not _LOOKAROUND.search(value)
    return True


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


def _accepts_null(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_accepts_null(member) for member in schema.get("anyOf", ()))
