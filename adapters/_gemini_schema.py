"""Rewrite a pydantic JSON Schema into the two schema dialects Gemini accepts (PROVIDERS.md §4).

`to_gemini_json_schema` targets `responseJsonSchema`: standard JSON Schema cut down to a keyword whitelist,
where a `$ref` takes no sibling keywords and recursion may only pass through optional properties.
`to_gemini_openapi_schema` targets Google's `Schema` object (the OpenAPI 3.0 subset of `responseSchema` and
of function `parameters`): upper-case types, `nullable`, string-only enums, no `$ref` and no free-form objects.

Constraints a dialect does not enforce move into `description`, where the model still reads them; local
validation against the original model enforces them. What a dialect cannot express raises `ConfigError`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

# One walk of a JSON pointer path, shared with the OpenAI transform so errors read the same everywhere.
from robustprompt.adapters._schema_common import Unexpressible, merge_all_of, note

__all__ = ["to_gemini_json_schema", "to_gemini_openapi_schema"]

# Annotations that only add noise for the model (pydantic's titles are the field names again); `default`
# is applied locally when a field is left out.
_DROPPED = frozenset(
    {"title", "default", "$schema", "$comment", "discriminator", "readOnly", "writeOnly", "deprecated"}
)
_SCHEMA_MAPS = frozenset({"$defs", "definitions"})

# responseJsonSchema: kept as they are; sub-schema keywords are walked separately. `format` is left out on
# purpose: like pydantic-ai, string formats go to the description rather than risk an unsupported one.
_JSON_KEPT = frozenset(
    {"type", "description", "$ref", "$id", "$anchor", "minimum", "maximum", "minItems", "maxItems", "required"}
    | {"propertyOrdering"}
)

# responseSchema: kept as they are, and the formats each type takes.
_OPENAPI_KEPT = frozenset(
    {"description", "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum"}
    | {"minProperties", "maxProperties"}
)
_OPENAPI_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}

_JSON_DIALECT = "responseJsonSchema"
_OPENAPI_DIALECT = "schema subset (responseSchema and function parameters)"
_INSTEAD = "another output mode"


# ---------------------------------------------------------------- responseJsonSchema


def to_gemini_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A new schema for `generationConfig.responseJsonSchema`. Raises `ConfigError` for recursion through a
    required property, which Gemini cannot unroll."""
    try:
        out: dict[str, Any] = _json(copy.deepcopy(dict(schema)), ())
        _check_recursion(out)
    except Unexpressible as err:
        raise err.config_error(f"Gemini's {_JSON_DIALECT}", _INSTEAD) from None
    return out


def _json(node: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(node, Mapping):
        return node  # `true` / `false` sub-schemas mean the same in every JSON Schema dialect
    if "allOf" in node:
        return _json(merge_all_of(node, path), path)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties" or key in _SCHEMA_MAPS:
            out[key] = {name: _json(sub, (*path, key, name)) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf"):  # Gemini treats oneOf as anyOf; say what it does
            out["anyOf"] = [_json(sub, (*path, key, str(i))) for i, sub in enumerate(value)]
        elif key == "prefixItems":
            out[key] = [_json(sub, (*path, key, str(i))) for i, sub in enumerate(value)]
        elif key in ("items", "additionalProperties"):
            out[key] = _json(value, (*path, key))
        elif key == "enum":
            out.update(_json_enum(value, notes))
        elif key == "const":
            out.update(_json_enum([value], notes))
        elif key in _JSON_KEPT:
            out[key] = value
        else:
            notes.append(note(key, value))
    _describe(out, notes)
    if "$ref" in out and any(not key.startswith("$") for key in out):
        # A `$ref` may only carry `$` keywords; `anyOf` with one member says the same and keeps the rest.
        ref = out.pop("$ref")
        out = {"anyOf": [{"$ref": ref}], **out}
    return out


def _json_enum(values: list[Any], notes: list[str]) -> dict[str, Any]:
    """`enum` takes strings and numbers; a null member becomes a union with null, anything else a note."""
    kept = [v for v in values if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    if len(kept) + values.count(None) < len(values):
        notes.append(note("enum" if len(values) > 1 else "const", values if len(values) > 1 else values[0]))
        return {}
    if None not in values:
        return {"enum": kept}
    if not kept:
        return {"type": "null"}
    return {"anyOf": [{"enum": kept}, {"type": "null"}]}


def _check_recursion(root: Mapping[str, Any]) -> None:
    """Gemini unrolls a cycle of `$ref`s to a limited depth, so every reference on a cycle must sit under a
    property the answer may leave out; a nullable but required one is not enough."""
    edges = list(_ref_edges(root))
    targets: dict[str, set[str]] = {}
    for source, target, _, _ in edges:
        targets.setdefault(source, set()).add(target)
    for source, target, optional, path in edges:
        if not optional and _reaches(targets, target, source):
            raise Unexpressible(
                path,
                f"is required, and its type {_name(target)} leads back to {_name(source)} (a recursive model)",
                "recursion through a required property",
                "give the field a default (such as `= None` or `= []`) so the answer may leave it out",
            )


def _ref_edges(root: Mapping[str, Any]) -> Iterator[tuple[str, str, bool, tuple[str, ...]]]:
    """(definition, referenced definition, under an optional property, path) for every local `$ref`."""
    yield from _refs_in("#", root, False, ())
    for maps in _SCHEMA_MAPS & root.keys():
        for name, sub in root[maps].items():
            yield from _refs_in(f"#/{maps}/{name}", sub, False, (maps, name))


def _refs_in(
    source: str, node: Any, optional: bool, path: tuple[str, ...]
) -> Iterator[tuple[str, str, bool, tuple[str, ...]]]:
    if not isinstance(node, Mapping):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        yield source, ref, optional, path
    required = set(node.get("required", ()))
    for name, sub in node.get("properties", {}).items():
        yield from _refs_in(source, sub, optional or name not in required, (*path, "properties", name))
    for key in ("anyOf", "prefixItems"):
        for i, sub in enumerate(node.get(key, ())):
            yield from _refs_in(source, sub, optional, (*path, key, str(i)))
    for key in ("items", "additionalProperties"):
        if key in node:
            yield from _refs_in(source, node[key], optional, (*path, key))


def _name(ref: str) -> str:
    return "the root model" if ref == "#" else f"'{ref.rsplit('/', 1)[-1]}'"


def _reaches(targets: Mapping[str, set[str]], start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        here = stack.pop()
        if here == goal:
            return True
        if here not in seen:
            seen.add(here)
            stack.extend(targets.get(here, ()))
    return False


# ---------------------------------------------------------------- the OpenAPI subset


def to_gemini_openapi_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A new `Schema` object for `responseSchema` or a function's `parameters`: `$ref`s inlined, unions with
    null made `nullable`, every object's `propertyOrdering` spelled out. Raises `ConfigError` for recursion,
    free-form objects and untyped values, none of which the subset can say."""
    root = copy.deepcopy(dict(schema))
    defs = {f"#/{maps}/{name}": sub for maps in _SCHEMA_MAPS & root.keys() for name, sub in root[maps].items()}
    try:
        return _openapi(root, (), defs, ())
    except Unexpressible as err:
        raise err.config_error(f"Gemini's {_OPENAPI_DIALECT}", _INSTEAD) from None


def _openapi(node: Any, path: tuple[str, ...], defs: Mapping[str, Any], inlining: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        raise Unexpressible(path, "is a bare `true` or `false` schema", "untyped values", "give it a concrete type")
    if "$ref" in node:
        node, inlining = _inline(node, path, defs, inlining)
    if "allOf" in node:
        return _openapi(merge_all_of(node, path), path, defs, inlining)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in node.items():
        if key in _DROPPED or key in _SCHEMA_MAPS:
            continue
        if key == "type":
            out.update(_openapi_type(value))
        elif key == "properties":
            out[key] = {name: _openapi(sub, (*path, key, name), defs, inlining) for name, sub in value.items()}
            out["propertyOrdering"] = list(value)
        elif key == "required":
            out[key] = [name for name in value if name in node.get("properties", {})]
        elif key in ("anyOf", "oneOf"):
            # The node's own keywords (its description) win over those of the member it collapses to.
            for name, sub in _openapi_union(value, (*path, key), defs, inlining).items():
                out.setdefault(name, sub)
        elif key == "items":
            out[key] = _openapi(value, (*path, key), defs, inlining)
        elif key == "prefixItems":
            out["items"] = _tuple_items(value, path, defs, inlining)
            notes.append(note(key, value))
        elif key == "additionalProperties":
            _check_closed(value, path)
        elif key in ("enum", "const"):
            out.update(_openapi_enum(value if key == "enum" else [value], node, notes))
        elif key in _OPENAPI_KEPT or (key == "format" and value in _formats(out.get("type") or node.get("type"))):
            out[key] = value
        else:
            notes.append(note(key, value))
    _describe(out, notes)
    _check_typed(out, path)
    return out


def _inline(
    node: Mapping[str, Any], path: tuple[str, ...], defs: Mapping[str, Any], inlining: tuple[str, ...]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The referenced definition with the node's own keywords on top (they annotate this use of it)."""
    ref = node["$ref"]
    if ref in inlining:
        raise Unexpressible(
            path,
            f"refers back to '{ref.rsplit('/', 1)[-1]}' (a recursive model)",
            "recursion (it has no $ref)",
            "flatten the model to a fixed depth",
        )
    if ref not in defs:
        raise Unexpressible(path, f"refers to {ref!r}, which is not in $defs", "outside references", "inline it")
    rest = {key: value for key, value in node.items() if key != "$ref"}
    return {**defs[ref], **rest}, (*inlining, ref)


def _openapi_type(kind: Any) -> dict[str, Any]:
    kinds = kind if isinstance(kind, list) else [kind]
    named = [_upper(k) for k in kinds if k != "null"]
    out: dict[str, Any] = {"nullable": True} if "null" in kinds else {}
    if len(named) == 1:
        out["type"] = named[0]
    elif named:
        out["anyOf"] = [{"type": k} for k in named]
    else:
        out["type"] = "NULL"
    return out


def _openapi_union(
    members: list[Any], path: tuple[str, ...], defs: Mapping[str, Any], inlining: tuple[str, ...]
) -> dict[str, Any]:
    """`anyOf [X, null]` is X made nullable; a union of several keeps `anyOf` (Gemini has no `oneOf`)."""
    walked = [_openapi(sub, (*path, str(i)), defs, inlining) for i, sub in enumerate(members)]
    kept = [sub for sub in walked if sub.get("type") != "NULL"]
    nullable = {"nullable": True} if len(kept) < len(walked) else {}
    if len(kept) == 1:
        return {**kept[0], **nullable}
    return {"anyOf": kept, **nullable}


def _tuple_items(
    members: list[Any], path: tuple[str, ...], defs: Mapping[str, Any], inlining: tuple[str, ...]
) -> dict[str, Any]:
    # A tuple has no positional form here: the items take any member's shape, and the positions go to the
    # description (with minItems / maxItems, which pydantic sets, fixing the length).
    walked = [_openapi(sub, (*path, "prefixItems", str(i)), defs, inlining) for i, sub in enumerate(members)]
    distinct = [sub for i, sub in enumerate(walked) if sub not in walked[:i]]
    return distinct[0] if len(distinct) == 1 else {"anyOf": distinct}


def _openapi_enum(values: list[Any], node: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """Enums take strings only; a null member makes the field nullable, anything else becomes a note."""
    strings = [v for v in values if isinstance(v, str)]
    if len(strings) + values.count(None) < len(values):
        notes.append(note("enum" if len(values) > 1 else "const", values if len(values) > 1 else values[0]))
        return {}
    out: dict[str, Any] = {"nullable": True} if None in values else {}
    if strings:
        out.update(type="STRING", enum=strings)
    elif "type" not in node:
        out["type"] = "NULL"
    return out


def _check_closed(value: Any, path: tuple[str, ...]) -> None:
    if value is not False:
        raise Unexpressible(
            path,
            "is a dict[str, ...] (additionalProperties)",
            "free-form objects",
            "use a list of key/value models",
        )


def _check_typed(out: Mapping[str, Any], path: tuple[str, ...]) -> None:
    if "type" not in out and "anyOf" not in out:
        raise Unexpressible(
            path, "has no type (Any, or a bare list or dict)", "values of any type", "give it a concrete type"
        )
    if out.get("type") == "OBJECT" and not out.get("properties"):
        raise Unexpressible(path, "is an object with no fields", "objects without properties", "give it fields")


def _upper(kind: Any) -> str:
    return kind.upper() if isinstance(kind, str) else ""


def _formats(kind: Any) -> set[str]:
    return _OPENAPI_FORMATS.get(_upper(kind), set())


# ---------------------------------------------------------------- shared


def _describe(out: dict[str, Any], notes: list[str]) -> None:
    if notes:
        description = out.get("description")
        joined = "; ".join(notes)
        out["description"] = f"{description} ({joined})" if description else joined
