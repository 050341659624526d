"""Rewrite a pydantic JSON Schema into the subset Anthropic's structured outputs accept (PROVIDERS.md §3).

JSON outputs (`output_config.format`) and strict tools compile the schema into a grammar, which takes a subset
of JSON Schema: every object closed, no recursion, no numeric or string-length constraints, `minItems` of 0 or
1 only, a short list of string formats, primitive enums and local `$ref`s (not under `allOf`). Unlike OpenAI
strict mode, optional properties stay optional. Constraints the grammar cannot hold move into `description`,
where the model still reads them; local validation against the original model enforces them.

A plain (non-strict) tool takes any JSON Schema draft 2020-12 with an object root: `tool_input_schema`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from robustprompt._errors import ConfigError
from robustprompt.adapters._schema_common import Unexpressible, merge_all_of, note

__all__ = ["to_anthropic_schema", "tool_input_schema"]

# Annotations that add noise for the model; `default` is applied locally, `discriminator` is OpenAPI's.
_DROPPED = frozenset(
    {"title", "default", "$schema", "$comment", "discriminator", "readOnly", "writeOnly", "deprecated"}
)
# Rebuilt for every object: closed, whatever the input said (a free-form object is refused).
_REBUILT = frozenset({"additionalProperties", "patternProperties"})
_SCHEMA_MAPS = frozenset({"$defs", "definitions"})
_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"})
# The SDK's transform refuses a node with none of these: the grammar cannot decode "any value".
_TYPED = frozenset({"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const"})
_PRIMITIVES = (str, int, float, bool, type(None))
_NAMES = {"anthropic": "Anthropic"}
_INSTEAD = "the tool_call or prompted output mode"


def to_anthropic_schema(schema: Mapping[str, Any], *, provider: str = "anthropic") -> dict[str, Any]:
    """A new schema in Anthropic's structured-output dialect, equivalent to `schema` up to the constraints it
    moves into descriptions. Raises `ConfigError` for what the dialect cannot express (recursion, free-form
    dicts, untyped values, external references)."""
    try:
        root = copy.deepcopy(dict(schema))
        _check_acyclic(root)
        out = _Walk(root).node(inline_root_ref(root), ())
        return _prune_definitions(out)
    except Unexpressible as err:
        raise err.config_error(f"{_NAMES.get(provider, provider)} structured outputs", _INSTEAD) from None


def tool_input_schema(schema: Mapping[str, Any], *, provider: str = "anthropic") -> dict[str, Any]:
    """The schema as a plain tool's `input_schema`: any JSON Schema, but the root must be an object."""
    root = inline_root_ref(copy.deepcopy(dict(schema)))
    if root.get("type") != "object":
        name = _NAMES.get(provider, provider)
        raise ConfigError(
            f"the root schema is not an object (type {root.get('type')!r}); {name} tool input must be an "
            "object: wrap the output in a model with one field"
        )
    return root


class _Walk:
    """One rewrite of one schema; keeps the root to resolve `$ref`s it has to inline."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def node(self, schema: Any, path: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(schema, Mapping) or not schema.keys() & _TYPED:
            raise Unexpressible(
                path, "has no type (Any, or a bare list or dict)", "values of any type", "give it a concrete type"
            )
        if "allOf" in schema:
            # One member only: every object is closed, so two different objects' intersection accepts nothing.
            return self.node(merge_all_of(schema, path), path)
        if "$ref" in schema:
            return self.reference(schema, path)
        out: dict[str, Any] = {}
        notes: list[str] = []
        for key, value in schema.items():
            if key in _DROPPED or key in _REBUILT:
                continue
            if key == "properties" or key in _SCHEMA_MAPS:
                out[key] = {name: self.node(sub, (*path, key, name)) for name, sub in value.items()}
            elif key in ("anyOf", "oneOf"):
                # No `oneOf` in the dialect; `anyOf` accepts the same values when the members are disjoint,
                # as a discriminated union's are.
                out["anyOf"] = [self.node(sub, (*path, key, str(i))) for i, sub in enumerate(value)]
            elif key == "items" and isinstance(value, Mapping):
                out[key] = self.node(value, (*path, key))
            else:
                _keep_or_note(key, value, schema, path, out, notes)
        _check_closed(schema, path)
        if _is_object(out):
            out.setdefault("properties", {})
            out["additionalProperties"] = False
        if notes:
            description = out.get("description")
            joined = "; ".join(notes)
            out["description"] = f"{description} ({joined})" if description else joined
        return out

    def reference(self, schema: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        ref = schema["$ref"]
        siblings = {key: value for key, value in schema.items() if key != "$ref" and key not in _DROPPED}
        if not siblings:
            return {"$ref": ref}
        # A `$ref` with siblings (a field's description) is inlined: the dialect has no `allOf` around a
        # `$ref`, and inlining is always finite since recursion was refused up front.
        return self.node({**_resolve(self.root, ref, path), **siblings}, path)


def _keep_or_note(
    key: str, value: Any, schema: Mapping[str, Any], path: tuple[str, ...], out: dict[str, Any], notes: list[str]
) -> None:
    """Copy one keyword the dialect accepts as it is, or note it in the description."""
    if key in ("type", "description", "required"):
        out[key] = value
    elif key in ("enum", "const"):
        values = value if key == "enum" else [value]
        if not all(isinstance(v, _PRIMITIVES) for v in values):
            raise Unexpressible(path, f"has a non-primitive {key} value", "complex enum values", "use primitives")
        if key == "enum" or "enum" not in schema:
            out["enum"] = values  # a one-value enum says what `const` says, in words the grammar knows
    elif (key == "format" and value in _FORMATS) or (key == "minItems" and value in (0, 1)):
        out[key] = value
    else:
        notes.append(note(key, value))


def _check_closed(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
    if node.get("additionalProperties", False) is not False or "patternProperties" in node:
        raise Unexpressible(
            path,
            "is a dict[str, ...] (additionalProperties)",
            "free-form objects",
            "use a list of key/value models",
        )


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


# ---------------------------------------------------------------- references


def inline_root_ref(root: dict[str, Any]) -> dict[str, Any]:
    # A `{"$ref": ..., "$defs": ...}` root (a recursive or root model) becomes its target, keeping `$defs`.
    ref = root.get("$ref")
    if not isinstance(ref, str):
        return root
    rest = {key: value for key, value in root.items() if key != "$ref"}
    return {**_resolve(root, ref, ()), **rest}


def _resolve(root: Mapping[str, Any], ref: Any, path: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise Unexpressible(
            path, f"refers to {ref!r} outside the schema", "external references", "inline the referenced schema"
        )
    target: Any = root
    for part in _ref_parts(ref):
        target = target.get(part) if isinstance(target, Mapping) else None
    if not isinstance(target, Mapping):
        raise Unexpressible(path, f"refers to {ref!r}, which does not exist", "dangling references", "fix the $ref")
    return dict(target)


def _ref_parts(ref: str) -> list[str]:
    body = ref[1:].lstrip("/")
    return [part.replace("~1", "/").replace("~0", "~") for part in body.split("/")] if body else []


def _refs(node: Any, path: tuple[str, ...]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Every `$ref` under `node` with its path, not entering definitions (they are reached through refs)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref":
                yield value, path
            elif key not in _SCHEMA_MAPS:
                yield from _refs(value, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _refs(item, (*path, str(i)))


def _check_acyclic(root: Mapping[str, Any]) -> None:
    """Refuse a schema whose references loop (a recursive model): its grammar would be infinite."""
    done: set[str] = set()

    def visit(ref: str, node: Any, path: tuple[str, ...], open_refs: tuple[str, ...]) -> None:
        for inner, where in _refs(node, path):
            if inner in open_refs:
                name = inner.rsplit("/", 1)[-1] if inner != "#" else "the root"
                raise Unexpressible(
                    where,
                    f"refers back to {name!r} (a recursive model)",
                    "recursive schemas",
                    "bound the depth with separate models",
                )
            if inner not in done:
                visit(inner, _resolve(root, inner, where), tuple(_ref_parts(inner)), (*open_refs, inner))
        done.add(ref)

    visit("#", root, (), ("#",))
    for key in sorted(_SCHEMA_MAPS & root.keys()):
        for name, sub in root[key].items():
            ref = _definition_ref(key, name)
            if ref not in done:
                visit(ref, sub, (key, name), (ref,))


def _definition_ref(key: str, name: str) -> str:
    return f"#/{key}/{name.replace('~', '~0').replace('/', '~1')}"


def _prune_definitions(out: dict[str, Any]) -> dict[str, Any]:
    # Inlining can leave definitions nothing points to; they would still count against the grammar's size.
    used: set[str] = set()
    pending = [ref for ref, _ in _refs(out, ())]
    while pending:
        ref = pending.pop()
        if ref not in used:
            used.add(ref)
            pending += [inner for inner, _ in _refs(_resolve(out, ref, ()), ())]
    for key in _SCHEMA_MAPS & out.keys():
        kept = {name: sub for name, sub in out[key].items() if _definition_ref(key, name) in used}
        if kept:
            out[key] = kept
        else:
            del out[key]
    return out
