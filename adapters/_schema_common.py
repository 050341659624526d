"""Pieces every schema-dialect transform shares: the error a walk raises for what a dialect cannot express,
how it names the place (a JSON pointer and the innermost field), and the rewrites pydantic's output needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from robustprompt._errors import ConfigError

__all__ = ["Unexpressible", "inline_root_ref", "merge_all_of", "note", "pointer", "root_kind", "subject"]


class Unexpressible(Exception):
    """Raised inside a transform's walk; the transform turns it into a `ConfigError` naming its dialect."""

    def __init__(self, path: tuple[str, ...], problem: str, cannot: str, fix: str) -> None:
        super().__init__(problem)
        self.path, self.problem, self.cannot, self.fix = path, problem, cannot, fix

    def config_error(self, dialect: str, instead: str) -> ConfigError:
        """E.g. dialect "OpenAI strict mode", instead "a non-strict output mode"."""
        return ConfigError(
            f"{subject(self.path)} {self.problem} (at {pointer(self.path)}); {dialect} cannot express {self.cannot}: "
            f"{self.fix}, or choose {instead}"
        )


def inline_root_ref(root: dict[str, Any]) -> dict[str, Any]:
    # pydantic emits a recursive model as `{"$ref": "#/$defs/Node", "$defs": ...}`; strict mode needs an
    # object at the root, so inline the target there and keep `$defs` for the recursion.
    ref = root.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return root
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    rest = {key: value for key, value in root.items() if key != "$ref"}
    return {**target, **rest}


def root_kind(root: Mapping[str, Any]) -> str:
    if "type" in root:
        return f"is of type {json.dumps(root['type'])}, not an object"
    if "anyOf" in root or "oneOf" in root:
        return "is a union (anyOf), not an object"
    return "has no type, where an object is needed"


def merge_all_of(node: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    members = node["allOf"]
    if len(members) != 1:
        raise Unexpressible(
            path,
            f"combines {len(members)} schemas with allOf",
            "intersections of schemas",
            "merge them into one model",
        )
    # Older pydantic wraps a `$ref` as `allOf: [{"$ref": ...}]` to give it siblings; the node's own keys win.
    return {**members[0], **{key: value for key, value in node.items() if key != "allOf"}}


def note(key: str, value: Any) -> str:
    return f"{key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"


def pointer(path: tuple[str, ...]) -> str:
    return "#" + "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def subject(path: tuple[str, ...]) -> str:
    """Who the error is about: the innermost field on the path."""
    if not path:
        return "the root schema"
    # Read the path in (keyword, name) pairs so a property called "properties" or "items" is not mistaken
    # for a keyword.
    name, i = None, 0
    while i < len(path):
        if path[i] in ("properties", "$defs", "definitions") and i + 1 < len(path):
            if path[i] == "properties":
                name = path[i + 1]
            i += 2
        else:
            i += 1
    return "the schema" if name is None else f"field '{name}'"
