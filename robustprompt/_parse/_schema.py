"""JSON Schema helpers for the coercion walk: reference resolution, kinds, and the scalar conversions."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeGuard

__all__ = [
    "KIND",
    "NO",
    "SCALARS",
    "all_of",
    "allowed",
    "child_path",
    "described_option",
    "has_kind",
    "is_mapping",
    "match_option",
    "object_fields",
    "resolve",
    "schema_branches",
    "single_property",
    "types_of",
]

_MAX_REF_HOPS = 32
_EMPTY: Mapping[str, Any] = MappingProxyType({})
NO: Any = object()  # "cannot convert"; None is a real JSON value
KIND = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}
_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.A)
# Numbers written for people: "12,111" (commas only in groups of three), "$19.50", "-€5".
_HUMAN_NUMBER = re.compile(r"([+-]?)[$€£¥]?\s?([+-]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)", re.A)
_FRACTION = re.compile(r"([+-]?\d{1,15})\s*/\s*(\d{1,15})", re.A)
# What a description may put after an option: "ONE: the first", "ONE - the first", "ONE (the first)".
_OPTION_TAIL = re.compile(r"\s*(?::|\s[-–—]\s|\()")
_BOOLEANS = {"true": True, "yes": True, "false": False, "no": False}
_TRIM = string.punctuation + string.whitespace


def _lookup(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#"):
        return None  # a remote schema is never fetched: anything goes there
    node: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        if not is_mapping(node):
            return None
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node


def is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    return type(value) is dict or isinstance(value, Mapping)  # the exact check first: the ABC one is slow


def resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    for _ in range(_MAX_REF_HOPS):
        if not is_mapping(schema):
            return _EMPTY
        ref = schema.get("$ref")
        if ref is None:
            return schema
        schema = _lookup(ref, root) if isinstance(ref, str) else None
    return _EMPTY


def types_of(node: Mapping[str, Any]) -> tuple[str, ...]:
    kind = node.get("type")
    if isinstance(kind, str):
        return (kind,)
    if isinstance(kind, list):
        return tuple(k for k in kind if isinstance(k, str))
    return ()


def has_kind(value: Any, declared: Any) -> bool:
    """Whether `value` is of the kind a schema's "type" (a name, a list of names, or absent) declares."""
    if declared is None:
        return True
    kind = KIND.get(type(value))
    if isinstance(declared, str):
        return kind == declared or (kind == "integer" and declared == "number")
    if isinstance(declared, list):
        return kind in declared or (kind == "integer" and "number" in declared)
    return True


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and isinstance(a, bool) is isinstance(b, bool)


def allowed(value: Any, node: Mapping[str, Any]) -> bool:
    """The checks that do not look inside the value: const, enum and type."""
    if "const" in node and not _same(value, node["const"]):
        return False
    options = node.get("enum")
    if isinstance(options, list) and not any(_same(value, option) for option in options):
        return False
    return has_kind(value, node.get("type"))


def schema_branches(node: Mapping[str, Any]) -> list[Any] | None:
    branches = node.get("anyOf") or node.get("oneOf")
    return branches if isinstance(branches, list) else None


def all_of(node: Mapping[str, Any]) -> list[Any]:
    parts = node.get("allOf")
    return parts if isinstance(parts, list) else []


def object_fields(node: Mapping[str, Any]) -> tuple[Mapping[str, Any], Any]:
    """An object schema's properties, and the schema of any other key (None: leave those alone)."""
    properties = node.get("properties")
    extra = node.get("additionalProperties")
    return (properties if is_mapping(properties) else _EMPTY), (extra if is_mapping(extra) else None)


def single_property(node: Mapping[str, Any]) -> tuple[str, Any] | None:
    properties = node.get("properties")
    types = types_of(node)
    if not is_mapping(properties) or len(properties) != 1 or (types and "object" not in types):
        return None
    name, schema = next(iter(properties.items()))
    return (name, schema) if isinstance(name, str) else None


def child_path(path: str, key: str) -> str:
    return key if path == "$" else f"{path}.{key}"


def _to_number(value: Any) -> Any:
    if not isinstance(value, str):
        return NO
    text = value.strip()
    if not _NUMERIC_TEXT.fullmatch(text):
        return _human_number(text)
    if "." in text or "e" in text or "E" in text:
        number = float(text)
        return number if math.isfinite(number) else NO
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        return NO


def _human_number(text: str) -> Any:
    fraction = _FRACTION.fullmatch(text)
    if fraction is not None:
        numerator, denominator = int(fraction.group(1)), int(fraction.group(2))
        if denominator == 0:
            return NO
        return numerator // denominator if numerator % denominator == 0 else numerator / denominator
    human = _HUMAN_NUMBER.fullmatch(text)
    if human is None or (human.group(1) and human.group(2)):
        return NO
    sign = "-" if "-" in (human.group(1) + human.group(2)) else ""
    return _to_number(sign + human.group(3).replace(",", ""))


def _to_integer(value: Any) -> Any:
    number = value if isinstance(value, float) else _to_number(value)
    if isinstance(number, float):
        return int(number) if number.is_integer() else NO
    return number


def _to_boolean(value: Any) -> Any:
    return _BOOLEANS.get(value.strip().lower(), NO) if isinstance(value, str) else NO


def _as_string(value: Any) -> Any:
    return value if isinstance(value, str) else NO


SCALARS: dict[str, Callable[[Any], Any]] = {
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "string": _as_string,
}


def match_option(value: str, options: list[Any]) -> str | None:
    """The one option `value` names, ignoring case, then surrounding punctuation, then a description after it
    ("ONE: the first"); None if not exactly one."""
    strings = [option for option in options if isinstance(option, str)]
    for candidate in (value, value.strip(_TRIM), _OPTION_TAIL.split(value, maxsplit=1)[0].strip(_TRIM)):
        folded = candidate.casefold()
        hits = {option for option in strings if option.casefold() == folded}
        if hits:
            return hits.pop() if len(hits) == 1 else None
    return None


def described_option(value: str, options: list[Any], descriptions: list[str]) -> str | None:
    """The one option whose description the value repeats, as a reader of the schema would map it: with the
    description "ONE: the lowest level; TWO: the middle one", "the lowest level" is ONE. Aliases listed the
    same way ("NEG: bad, poor") count too. None unless exactly one option matches."""
    strings = sorted((option for option in options if isinstance(option, str) and option), key=len, reverse=True)
    folded = value.strip(_TRIM).casefold()
    if not strings or not folded:
        return None
    hits: set[str] = set()
    for description in descriptions:
        for option, phrase in _described(description, tuple(strings)):
            if folded in (part.strip(_TRIM).casefold() for part in _ALIAS_SPLIT.split(phrase)):
                hits.add(option)
    return hits.pop() if len(hits) == 1 else None


_ALIAS_SPLIT = re.compile(r",|/|\bor\b")


def _described(description: str, options: tuple[str, ...]) -> list[tuple[str, str]]:
    """(option, the text after "OPTION:") for each option the description explains."""
    names = "|".join(re.escape(option) for option in options)
    entries = list(re.finditer(rf"(?<![\w])({names})[\"'`]?\s*(?::|=|\s[-–—]\s)", description))
    out = []
    for index, entry in enumerate(entries):
        end = entries[index + 1].start() if index + 1 < len(entries) else len(description)
        phrase = re.split(r"[;\n]", description[entry.end() : end], maxsplit=1)[0]
        out.append((entry.group(1), phrase))
    return out
