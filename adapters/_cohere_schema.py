"""Rewrite a pydantic JSON Schema into the subset Cohere's structured outputs accept (docs.cohere.com, Structured
Outputs: "Schema constraints" and "Unsupported schema features").

Cohere decodes against the schema, with two hard rules: the root is an object, and every object names at least
one required field. It has no `allOf`, `oneOf` or `not`, no numeric ranges, no length bounds on strings or arrays,
no `uniqueItems`, regular expressions without `^`, `$`, `?=` or `?!`, and four formats (date-time, uuid, date,
time). What it cannot enforce moves into `description`, where the model still reads it; local validation against
the original model enforces it. `anyOf`, `$ref`/`$defs`, `enum`, `const`, `pattern`, `additionalProperties` and
nesting are supported and kept.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from robustprompt.adapters._schema_common import (
    Unexpressible,
    inline_root_ref,
    merge_all_of,
    note,
    root_kind,
)

__all__ = ["to_cohere_schema"]

# Kept when Cohere can enforce them (`pattern` and `format` are filtered); sub-schema keywords are walked apart.
_KEPT = frozenset({"type", "enum", "const", "description", "$ref", "pattern", "format"})
# Annotations that only add noise (or, for `$schema`/`$id`, that decoders choke on); the constraints they name
# are not constraints.
_DROPPED = frozenset(
    {"title", "default", "$schema", "$id", "$comment", "discriminator", "readOnly", "writeOnly", "deprecated"}
)
_SCHEMA_MAPS = frozenset({"$defs", "definitions"})  # names to sub-schemas, as `properties`
_FORMATS = frozenset({"date-time", "uuid", "date", "time"})
_PATTERN_REFUSED = ("^", "$", "?=", "?!")
# A schema with none of these accepts any JSON value, and Cohere wants a type on every property.
_TYPED = frozenset({"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const"})


def to_cohere_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A new schema Cohere's `response_format.json_schema` accepts, equivalent to `schema` up to the constraints
    moved into descriptions, and up to a first field made required on objects that had none (any value the
    model then gives is valid for the original). Raises `ConfigError` when the schema cannot be expressed."""
    try:
        root = inline_root_ref(copy.deepcopy(dict(schema)))
        if root.get("type") != "object":
            raise Unexpressible(
                (), root_kind(root), "a top-level value that is not an object", "wrap it in a model with one field"
            )
        return _walk(root, ())
    except Unexpressible as err:
        raise err.config_error("Cohere structured outputs", "the json_object output mode") from None


def _walk(node: Any, path: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, Mapping) or not node.keys() & _TYPED:
        raise Unexpressible(path, "has no type (Any)", "a property without a type", "give it a concrete type")
    if "allOf" in node:
        return _walk(merge_all_of(node, path), path)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties" or key in _SCHEMA_MAPS:
            out[key] = {name: _walk(sub, (*path, key, name)) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf"):
            # `oneOf` is unsupported; `anyOf` accepts the same values when members are disjoint, as a
            # discriminated union's are.
            out["anyOf"] = [_walk(sub, (*path, key, str(i))) for i, sub in enumerate(value)]
        elif key == "items":
            if value:  # a bare `list` gives `items: {}`: Cohere takes arrays without an item type
                out[key] = _walk(value, (*path, key))
        elif key == "required":
            out[key] = list(value)
        elif key == "additionalProperties":
            out[key] = value if isinstance(value, bool) else _walk(value, (*path, key))
        elif key in _KEPT and _supported(key, value):
            out[key] = value
        else:
            notes.append(note(key, value))
    if _is_object(out):
        _require_a_field(out, path)
    if notes:
        description = out.get("description")
        joined = "; ".join(notes)
        out["description"] = f"{description} ({joined})" if description else joined
    return out


def _require_a_field(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    fields = obj.get("properties") or {}
    if not fields:
        raise Unexpressible(
            path,
            "is an object with no fields (a dict, or a model without fields)",
            "objects without a required field",
            "give it a field, or use a list of key/value models",
        )
    if not obj.get("required"):
        obj["required"] = [next(iter(fields))]


def _supported(key: str, value: Any) -> bool:
    if key == "format":
        return value in _FORMATS
    if key == "pattern":
        return isinstance(value, str) and not any(token in value for token in _PATTERN_REFUSED)
    return True


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)
