"""Coercion: a parsed value aligned with its JSON Schema, each near miss fixed and recorded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustprompt._parse._result import ParseError, short
from robustprompt._parse._schema import (
    KIND,
    NO,
    SCALARS,
    all_of,
    allowed,
    child_path,
    described_option,
    has_kind,
    is_mapping,
    match_option,
    object_fields,
    resolve,
    schema_branches,
    single_property,
    types_of,
)
from robustprompt._parse._strict import decode_at

__all__ = ["Coercer"]

DEFAULT_DEPTH = 64  # JSON written inside a string is held to the parser's default nesting bound

# A self-referencing schema could otherwise send the walk around forever without consuming the value.
_MAX_SCHEMA_NESTING = 150
# Enough for "a" to become {"tags": ["a"]}.
_MAX_WRAPS = 2


class Coercer:
    """Walks a value and its JSON Schema together, fixing the usual near misses and recording each fix.

    Never mutates the value: a container is copied only when something inside it changes, so a failed
    anyOf branch leaves no trace.
    """

    __slots__ = ("_repairs", "_root")

    def __init__(self, root: Mapping[str, Any], repairs: list[str]) -> None:
        self._root = root
        self._repairs = repairs

    def coerce(self, value: Any, schema: Any, path: str, depth: int, *, wraps: int = 0) -> Any:
        if depth > _MAX_SCHEMA_NESTING:
            return value
        node = resolve(schema, self._root)
        if "anyOf" in node or "oneOf" in node or "allOf" in node:
            return self._combined(value, node, path, depth, wraps=wraps)
        if not has_kind(value, node.get("type")):
            return self._convert(value, node, types_of(node), path, depth, wraps=wraps)
        if isinstance(value, str) and "enum" in node:
            return self._enum(value, node, path, _descriptions(schema, node))
        return self._descend(value, node, path, depth)

    def fits(self, value: Any, schema: Any, depth: int) -> bool:
        if depth > _MAX_SCHEMA_NESTING:
            return True
        node = resolve(schema, self._root)
        branches = schema_branches(node)
        if branches is not None and not any(self.fits(value, b, depth + 1) for b in branches):
            return False
        if not all(self.fits(value, part, depth + 1) for part in all_of(node)) or not allowed(value, node):
            return False
        if isinstance(value, dict):
            return self._object_fits(value, node, depth)
        if isinstance(value, list):
            items = node.get("items")
            return not is_mapping(items) or all(self.fits(item, items, depth + 1) for item in value)
        return True

    def _object_fits(self, value: dict[str, Any], node: Mapping[str, Any], depth: int) -> bool:
        required = node.get("required")
        if isinstance(required, list) and any(isinstance(k, str) and k not in value for k in required):
            return False
        properties, extra = object_fields(node)
        for key, item in value.items():
            schema = properties.get(key, extra)
            if schema is not None and not self.fits(item, schema, depth + 1):
                return False
        return True

    def _combined(self, value: Any, node: Mapping[str, Any], path: str, depth: int, *, wraps: int) -> Any:
        branches = schema_branches(node)
        if branches is not None:
            return self._pick_branch(value, branches, path, depth, wraps=wraps)
        for part in all_of(node):
            value = self.coerce(value, part, path, depth + 1, wraps=wraps)
        return value

    def _pick_branch(self, value: Any, branches: list[Any], path: str, depth: int, *, wraps: int) -> Any:
        if any(self.fits(value, branch, depth + 1) for branch in branches):
            return value
        fallback: tuple[Any, list[str]] | None = None
        for branch in branches:
            trial: list[str] = []
            coerced = Coercer(self._root, trial).coerce(value, branch, path, depth + 1, wraps=wraps)
            if coerced is value:
                continue
            if self.fits(coerced, branch, depth + 1):
                fallback = (coerced, trial)
                break
            # Right shape but wrong inside: keep the fixes that did apply, for a sharper validation error.
            if fallback is None and allowed(coerced, resolve(branch, self._root)):
                fallback = (coerced, trial)
        if fallback is None:
            return value
        self._repairs.extend(fallback[1])
        return fallback[0]

    def _convert(
        self, value: Any, node: Mapping[str, Any], types: tuple[str, ...], path: str, depth: int, *, wraps: int
    ) -> Any:
        for kind in types:
            converter = SCALARS.get(kind)
            converted = NO if converter is None else converter(value)
            if converted is not NO:
                source = "float" if isinstance(value, float) else KIND[type(value)]
                self._repairs.append(f"coerced '{path}' from {source} to {kind}")
                return converted
        unwrapped = self._unwrap(value, types, path)
        if unwrapped is not NO:
            return self.coerce(unwrapped, node, path, depth + 1, wraps=wraps)
        # Bounded, since a recursive schema would wrap forever; and a null never gets a container invented.
        if wraps >= _MAX_WRAPS or value is None:
            return value
        if "array" in types:
            self._repairs.append(f"wrapped single value in a list at '{path}'")
            return [self.coerce(value, node.get("items"), f"{path}[0]", depth + 1, wraps=wraps + 1)]
        field = single_property(node) if "object" in types else None
        if field is None:
            return value
        name, schema = field
        self._repairs.append(f"wrapped the value in an object as '{child_path(path, name)}'")
        return {name: self.coerce(value, schema, child_path(path, name), depth + 1, wraps=wraps + 1)}

    def _unwrap(self, value: Any, types: tuple[str, ...], path: str) -> Any:
        """The value inside a needless wrapper: JSON written as a string, or one object in a list."""
        if isinstance(value, str) and ("object" in types or "array" in types) and value.lstrip()[:1] in ("{", "["):
            try:
                decoded, end = decode_at(value.strip(), 0, DEFAULT_DEPTH, shallow=False)
            except (ParseError, ValueError):
                return NO
            if end == len(value.strip()):
                self._repairs.append(f"decoded JSON written as a string at '{path}'")
                return decoded
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and "object" in types:
            self._repairs.append(f"took the one object out of its list at '{path}'")
            return value[0]
        return NO

    def _descend(self, value: Any, node: Mapping[str, Any], path: str, depth: int) -> Any:
        if isinstance(value, dict):
            return self._object(value, node, path, depth)
        if isinstance(value, list):
            return self._array(value, node, path, depth)
        if isinstance(value, str) and ("enum" in node or "const" in node):
            return self._enum(value, node, path, [])
        return value

    def _object(self, value: dict[str, Any], node: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties, extra = object_fields(node)
        if properties:
            value = self._keys(value, properties, path)
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            schema = properties.get(key, extra)
            if schema is None:
                continue
            new = self.coerce(item, schema, child_path(path, key), depth + 1)
            if new is not item:
                changed = dict(value) if changed is None else changed
                changed[key] = new
        return value if changed is None else changed

    def _keys(self, value: dict[str, Any], properties: Mapping[str, Any], path: str) -> dict[str, Any]:
        """The object out of a wrapper key (`{"person": {...}}`), and keys in the wrong case renamed."""
        if len(value) == 1:
            [(key, inner)] = value.items()
            if key not in properties and isinstance(inner, dict) and any(k in properties for k in inner):
                self._repairs.append(f"took the object out of its wrapper key '{short(key)}' at '{path}'")
                value = inner
        if all(key in properties for key in value):
            return value
        by_name: dict[str, list[str]] = {}
        for name in properties:
            by_name.setdefault(_folded(name), []).append(name)
        renamed: dict[str, Any] = {}
        for key, item in value.items():
            names = by_name.get(_folded(key), [])
            if key in properties or len(names) != 1 or names[0] in value or names[0] in renamed:
                renamed[key] = item
                continue
            self._repairs.append(f"renamed key '{short(key)}' to '{names[0]}' at '{path}'")
            renamed[names[0]] = item
        return renamed

    def _array(self, value: list[Any], node: Mapping[str, Any], path: str, depth: int) -> list[Any]:
        items = node.get("items")
        if not is_mapping(items):
            return value
        changed: list[Any] | None = None
        for index, item in enumerate(value):
            new = self.coerce(item, items, f"{path}[{index}]", depth + 1)
            if new is not item:
                changed = list(value) if changed is None else changed
                changed[index] = new
        return value if changed is None else changed

    def _enum(self, value: str, node: Mapping[str, Any], path: str, descriptions: list[str]) -> Any:
        options = node.get("enum")
        if not isinstance(options, list):
            if "const" not in node:
                return value
            options = [node["const"]]
        if value in options:
            return value
        match = match_option(value, options) or described_option(value, options, descriptions)
        if match is None:
            return value
        self._repairs.append(f"matched enum value '{short(value)}' to '{match}' at '{path}'")
        return match


def _folded(key: str) -> str:
    """A key as "Name", "NAME", "first-name" and "firstName" all match "name" / "first_name"."""
    return key.replace("_", "").replace("-", "").replace(" ", "").casefold()


def _descriptions(schema: Any, node: Mapping[str, Any]) -> list[str]:
    """The descriptions of a field and of the type it refers to: either may explain the options."""
    found = [node.get("description"), schema.get("description") if is_mapping(schema) else None]
    return [text for text in found if isinstance(text, str)]
