"""The schema a decoding grammar is built from: every field required, in declared order, null allowed for optional ones.

llama.cpp's schema-to-grammar puts optional fields after the required ones and lets the object close before them,
so a small model closes it early and an optional field declared first is never produced. Here every field is
reachable in the order the model declares it; a field that was optional may be null, which the validator drops
again (`drop_null_optionals`) so that its default applies. Pure: the input schema is not changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["every_field_reachable"]

_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("$defs", "definitions", "properties")
_SCHEMA_VALUES = ("items", "additionalProperties", "not")


def every_field_reachable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `schema` in which every object lists all its properties as required, in declared order, and
    each property that was not required also accepts null."""
    return _schema(schema)


def _node(node: Any) -> Any:
    return _schema(node) if isinstance(node, Mapping) else node


def _schema(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_node(item) for item in value]
        elif key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: _node(item) for name, item in value.items()}
        elif key in _SCHEMA_VALUES:
            out[key] = _node(value)
        else:
            out[key] = value
    properties = out.get("properties")
    if isinstance(properties, dict) and properties:
        required = node.get("required")
        was_required = set(required) if isinstance(required, list) else set()
        out["properties"] = {name: sub if name in was_required else _nullable(sub) for name, sub in properties.items()}
        out["required"] = list(properties)
    return out


def _nullable(node: Any) -> Any:
    if not isinstance(node, Mapping) or _allows_null(node):
        return node
    extra = {key: node[key] for key in ("title", "description", "default") if key in node}
    rest = {key: value for key, value in node.items() if key not in extra}
    return {"anyOf": [rest, {"type": "null"}], **extra}


def _allows_null(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    branches = node.get("anyOf") or node.get("oneOf")
    return isinstance(branches, list) and any(isinstance(b, Mapping) and _allows_null(b) for b in branches)
