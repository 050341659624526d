"""Turn a model's raw answer into a JSON value: bounded, repaired, and aligned with a JSON Schema.

Every step is linear in the input, so runaway or hostile answers fail fast. `parse` raises only `ParseError`,
whose message is meant to be sent back to the model.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NoReturn, TypeGuard

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_DEPTH", "ParseError", "Parsed", "parse"]

DEFAULT_MAX_CHARS = 1_000_000
DEFAULT_MAX_DEPTH = 64

# Each failed candidate may scan to the end of the text, so their number must be bounded to stay linear.
_MAX_ATTEMPTS = 16
# A self-referencing schema could otherwise send the walk around forever without consuming the value.
_MAX_SCHEMA_NESTING = 150
_MAX_REF_HOPS = 32
# Enough for "a" to become {"tags": ["a"]}.
_MAX_WRAPS = 2


class ParseError(ValueError):
    """The text holds no usable JSON. The message is written for the model, to be sent back in a re-ask."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """A JSON value and the repairs made to get it; no repairs means clean JSON that already fit the schema."""

    value: Any
    repairs: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- strict JSON


def _reject_constant(name: str) -> NoReturn:
    raise ParseError(f"the JSON contains {name}, which JSON does not allow; write a finite number or null")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):
        raise ParseError(f"the JSON has a number too large to represent ({_short(literal)}); write a smaller one")
    return number


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ParseError(f"a JSON object has the key '{_short(key)}' twice; give each key only once")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_float=_finite_float, parse_constant=_reject_constant)
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)


def _too_deep(max_depth: int) -> ParseError:
    return ParseError(f"the JSON nests arrays and objects more than {max_depth} levels deep; make it flatter")


def _nesting_end(text: str, start: int, max_depth: int) -> int | None:
    """Where the brackets opened at `start` balance (None: never), raising if they nest too deep."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text, start):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise _too_deep(max_depth)
        elif char != '"':
            depth -= 1
            if depth == 0:
                return match.end()
    return None


def _decode_at(text: str, start: int, max_depth: int, *, shallow: bool) -> tuple[Any, int]:
    """One strict JSON value at `start` and its end. JSONDecodeError means a syntax error worth repairing.

    `shallow` says the text is known to nest no deeper than `max_depth`, so the scan can be skipped.
    """
    if not shallow and text[start] in "[{":  # json recurses once per level: keep deep input away from it
        _nesting_end(text, start, max_depth)
    try:
        return _DECODER.raw_decode(text, start)
    except (ParseError, json.JSONDecodeError):
        raise
    except ValueError as exc:  # Python's cap on the digits of an int
        raise ParseError("the JSON has an integer with too many digits; write it as a string") from exc
    except RecursionError as exc:  # only when the caller raised max_depth past Python's recursion limit
        raise _too_deep(max_depth) from exc


# ------------------------------------------------------------------------------------------- syntax repair

_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
        (?P<dq>"[^"\\]*(?:\\.[^"\\]*)*(?P<dq_end>"|\\?))
      | (?P<sq>'[^'\\]*(?:\\.[^'\\]*)*(?P<sq_end>'|\\?))
      | (?P<open>[\[{])
      | (?P<close>[\]}])
      | (?P<sep>[,:])
      | (?P<comment>//[^\n]*|/\*.*?(?:\*/|\Z))
      | (?P<word>-?[A-Za-z_$][\w$]*)
      | (?P<number>-?[\d.][\d.eE+-]*|-)
      | (?P<space>\s)
      | (?P<end>\Z)
    )""",
    re.S | re.X,
)
_CONTROL = re.compile(r"[\x00-\x1f]")
_SINGLE_QUOTED_ESCAPE = re.compile(r'\\(.)|"', re.S)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?", re.A)
_PYTHON_LITERALS = {"True": "true", "False": "false", "None": "null"}
_JSON_WORDS = frozenset({"true", "false", "null", "NaN", "Infinity", "-Infinity"})
_ALL_WORDS = (*_PYTHON_LITERALS, *_JSON_WORDS)


def _requote(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if escaped is None:
        return '\\"'
    return "'" if escaped == "'" else match.group()


def _drop_partial_escape(body: str) -> str:
    cut = body.rfind("\\u", max(0, len(body) - 5))
    if cut < 0 or any(char not in string.hexdigits for char in body[cut + 2 :]):
        return body
    backslashes = cut - len(body[:cut].rstrip("\\"))
    return body if backslashes % 2 else body[:cut]  # an odd run means the "\\" before "u" was escaped


def _escape_control(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class _Repairer:
    """Rewrites near-JSON that starts at an opening bracket into strict JSON, one token at a time."""

    __slots__ = ("_closers", "_max_depth", "_notes", "_out")

    def __init__(self, max_depth: int) -> None:
        self._max_depth = max_depth
        self._out: list[str] = []
        self._closers: list[str] = []
        self._notes: dict[str, None] = {}  # an ordered set: each kind of repair is reported once

    def run(self, text: str, start: int) -> tuple[str, int, list[str]] | None:
        """The repaired JSON, where it ends in `text`, and the repairs; None if this is not JSON."""
        pos = start
        while True:
            match = _TOKEN.match(text, pos)
            if match is None:
                return None
            pos = match.end()
            kind = match.lastgroup or "end"
            if kind == "end":
                return self._close_truncated(pos)
            if kind == "close":
                if not self._close(match.group(kind)):
                    return None
                if not self._closers:
                    return "".join(self._out), pos, list(self._notes)
            elif not self._take(kind, match, at_end=pos == len(text)):
                return None

    def _take(self, kind: str, match: re.Match[str], *, at_end: bool) -> bool:
        token = match.group()
        if kind == "open":
            if len(self._closers) >= self._max_depth:
                raise _too_deep(self._max_depth)
            self._closers.append("}" if token[-1] == "{" else "]")
            self._out.append(token[-1])
        elif kind == "sep":
            self._out.append(token[-1])
        elif kind == "comment":
            self._note("removed comment")
        elif kind == "space":
            self._note("replaced whitespace that JSON does not allow")
        elif kind == "dq":
            self._out.append(self._double_quoted(match))
        elif kind == "sq":
            self._out.append(self._single_quoted(match))
        elif kind == "word":
            return self._word(match.group(kind), at_end=at_end)
        else:
            number = match.group(kind)
            # A number cut off by truncation ("1.", "-") is dropped with the rest of the unfinished member.
            if not (at_end and not _JSON_NUMBER.fullmatch(number)):
                self._out.append(number)
        return True

    def _note(self, repair: str) -> None:
        self._notes[repair] = None

    def _in_key_position(self) -> bool:
        return self._closers[-1] == "}" and self._out[-1] in ("{", ",")

    def _close(self, closer: str) -> bool:
        if self._closers[-1] != closer:
            return False
        if self._out[-1] == ",":
            self._out.pop()
            self._note("removed trailing comma")
        self._closers.pop()
        self._out.append(closer)
        return True

    def _double_quoted(self, match: re.Match[str]) -> str:
        token, end = match.group("dq", "dq_end")
        if end != '"':  # cut off by truncation: drop an unfinished escape and close the string
            token = _drop_partial_escape(token[: len(token) - len(end)]) + '"'
        return self._escape_controls(token)

    def _single_quoted(self, match: re.Match[str]) -> str:
        token, end = match.group("sq", "sq_end")
        self._note("replaced single quotes with double quotes")
        body = _SINGLE_QUOTED_ESCAPE.sub(_requote, token[1 : len(token) - len(end)])
        return self._escape_controls(f'"{body}"')

    def _escape_controls(self, token: str) -> str:
        if _CONTROL.search(token) is None:
            return token
        self._note("escaped a control character in a string")
        return _CONTROL.sub(_escape_control, token)

    def _word(self, word: str, *, at_end: bool) -> bool:
        if self._in_key_position():
            self._note("quoted unquoted object key")
            self._out.append(f'"{word}"')
        elif word in _PYTHON_LITERALS:
            self._note(f"replaced Python literal {word} with {_PYTHON_LITERALS[word]}")
            self._out.append(_PYTHON_LITERALS[word])
        elif word in _JSON_WORDS:
            self._out.append(word)
        else:
            # A literal cut off by truncation ("tr") is dropped; any other bare word means this is prose.
            return at_end and any(literal.startswith(word) for literal in _ALL_WORDS)
        return True

    def _close_truncated(self, end: int) -> tuple[str, int, list[str]]:
        out = self._out
        # Drop what cannot stand without the missing rest: a trailing comma, a colon, a key with no value.
        while len(out) > 1 and (
            out[-1] in (",", ":") or (out[-1][0] == '"' and self._closers[-1] == "}" and out[-2] in ("{", ","))
        ):
            out.pop()
        out.extend(reversed(self._closers))
        self._note("closed truncated output")
        return "".join(out), end, list(self._notes)


# -------------------------------------------------------------------------------------------------- location

_OPENER = re.compile(r"[\[{]")
_OBJECT_OPENER = re.compile(r"\{")
_NON_SPACE = re.compile(r"\S")
# Only at the start of a line, so that ``` inside a JSON string is not taken for a fence.
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)", re.M)

_Found = tuple[Any, list[str]]


class _Locator:
    """Finds the JSON in an answer: the whole text, a fenced block, or a bracketed span within prose."""

    __slots__ = ("_max_depth", "_shallow", "_text", "error")

    def __init__(self, text: str, max_depth: int) -> None:
        self._text = text
        self._max_depth = max_depth
        # Too few brackets to nest too deep, anywhere in the text: no candidate needs the depth scan.
        self._shallow = text.count("[") + text.count("{") <= max_depth
        self.error: json.JSONDecodeError | None = None  # the first syntax error met, for the re-ask

    def whole(self, stripped: str) -> _Found | None:
        try:
            value, end = _decode_at(stripped, 0, self._max_depth, shallow=self._shallow)
        except json.JSONDecodeError:
            return None
        return (value, []) if end == len(stripped) else None

    def fenced(self) -> _Found | None:
        text = self._text
        if "```" not in text:
            return None
        pos = 0
        for _ in range(_MAX_ATTEMPTS):
            fence = _FENCE.search(text, pos)
            if fence is None:
                return None
            body_end = text.find("```", fence.end())
            body_end = len(text) if body_end < 0 else body_end
            found = self._fence_body(fence.end(), body_end)
            if found is not None:
                return found[0], [f"extracted JSON from a ```{fence.group(1)} fence", *found[1]]
            pos = body_end + 3
        return None

    def in_prose(self, *, objects_only: bool) -> _Found | None:
        text = self._text
        opener = _OBJECT_OPENER if objects_only else _OPENER
        pos = 0
        for _ in range(_MAX_ATTEMPTS):
            match = opener.search(text, pos)
            if match is None:
                return None
            start = match.start()
            found = self._candidate(start)
            if found is not None:
                value, end, repairs = found
                if _NON_SPACE.search(text, 0, start) or _NON_SPACE.search(text, end):
                    repairs.insert(0, "extracted JSON from surrounding text")
                return value, repairs
            # Skip the whole failed span: a fragment nested in broken JSON is not the answer.
            span_end = _nesting_end(text, start, self._max_depth)
            pos = start + 1 if span_end is None else span_end
        return None

    def _fence_body(self, start: int, end: int) -> _Found | None:
        body = self._text[start:end].strip()
        if not body:
            return None
        found = self.whole(body)
        if found is not None:
            return found
        # The JSON may run past the closing fence when a string in it holds ```: parse on in the full text.
        opener = _OPENER.search(self._text, start, end)
        candidate = None if opener is None else self._candidate(opener.start())
        return None if candidate is None else (candidate[0], candidate[2])

    def _candidate(self, start: int) -> tuple[Any, int, list[str]] | None:
        try:
            value, end = _decode_at(self._text, start, self._max_depth, shallow=self._shallow)
        except json.JSONDecodeError as exc:
            self.error = self.error or exc
        else:
            return value, end, []
        repaired = _Repairer(self._max_depth).run(self._text, start)
        if repaired is None:
            return None
        json_text, end, repairs = repaired
        try:
            value, _ = _decode_at(json_text, 0, self._max_depth, shallow=True)  # the repairer bounds depth
        except json.JSONDecodeError:
            return None
        return value, end, repairs


# ------------------------------------------------------------------------------------------- schema helpers

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_NO: Any = object()  # "cannot convert"; None is a real JSON value
_KIND = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}
_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.A)
_BOOLEANS = {"true": True, "yes": True, "false": False, "no": False}
_TRIM = string.punctuation + string.whitespace


def _lookup(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#"):
        return None  # a remote schema is never fetched: anything goes there
    node: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        if not _is_mapping(node):
            return None
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    return type(value) is dict or isinstance(value, Mapping)  # the exact check first: the ABC one is slow


def _resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    for _ in range(_MAX_REF_HOPS):
        if not _is_mapping(schema):
            return _EMPTY
        ref = schema.get("$ref")
        if ref is None:
            return schema
        schema = _lookup(ref, root) if isinstance(ref, str) else None
    return _EMPTY


def _types(node: Mapping[str, Any]) -> tuple[str, ...]:
    kind = node.get("type")
    if isinstance(kind, str):
        return (kind,)
    if isinstance(kind, list):
        return tuple(k for k in kind if isinstance(k, str))
    return ()


def _has_kind(value: Any, declared: Any) -> bool:
    """Whether `value` is of the kind a schema's "type" (a name, a list of names, or absent) declares."""
    if declared is None:
        return True
    kind = _KIND.get(type(value))
    if isinstance(declared, str):
        return kind == declared or (kind == "integer" and declared == "number")
    if isinstance(declared, list):
        return kind in declared or (kind == "integer" and "number" in declared)
    return True


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and isinstance(a, bool) is isinstance(b, bool)


def _allowed(value: Any, node: Mapping[str, Any]) -> bool:
    """The checks that do not look inside the value: const, enum and type."""
    if "const" in node and not _same(value, node["const"]):
        return False
    options = node.get("enum")
    if isinstance(options, list) and not any(_same(value, option) for option in options):
        return False
    return _has_kind(value, node.get("type"))


def _branches(node: Mapping[str, Any]) -> list[Any] | None:
    branches = node.get("anyOf") or node.get("oneOf")
    return branches if isinstance(branches, list) else None


def _all_of(node: Mapping[str, Any]) -> list[Any]:
    parts = node.get("allOf")
    return parts if isinstance(parts, list) else []


def _fields(node: Mapping[str, Any]) -> tuple[Mapping[str, Any], Any]:
    """An object schema's properties, and the schema of any other key (None: leave those alone)."""
    properties = node.get("properties")
    extra = node.get("additionalProperties")
    return (properties if _is_mapping(properties) else _EMPTY), (extra if _is_mapping(extra) else None)


def _single_property(node: Mapping[str, Any]) -> tuple[str, Any] | None:
    properties = node.get("properties")
    types = _types(node)
    if not _is_mapping(properties) or len(properties) != 1 or (types and "object" not in types):
        return None
    name, schema = next(iter(properties.items()))
    return (name, schema) if isinstance(name, str) else None


def _child(path: str, key: str) -> str:
    return key if path == "$" else f"{path}.{key}"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _to_number(value: Any) -> Any:
    if not isinstance(value, str):
        return _NO
    text = value.strip()
    if not _NUMERIC_TEXT.fullmatch(text):
        return _NO
    if "." in text or "e" in text or "E" in text:
        number = float(text)
        return number if math.isfinite(number) else _NO
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        return _NO


def _to_integer(value: Any) -> Any:
    number = value if isinstance(value, float) else _to_number(value)
    if isinstance(number, float):
        return int(number) if number.is_integer() else _NO
    return number


def _to_boolean(value: Any) -> Any:
    return _BOOLEANS.get(value.strip().lower(), _NO) if isinstance(value, str) else _NO


def _as_string(value: Any) -> Any:
    return value if isinstance(value, str) else _NO


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "string": _as_string,
}


def _match_option(value: str, options: list[Any]) -> str | None:
    """The one option `value` names, ignoring case and then surrounding punctuation; None if not exactly one."""
    strings = [option for option in options if isinstance(option, str)]
    folded = value.casefold()
    hits = {option for option in strings if option.casefold() == folded}
    if not hits:
        bare = value.strip(_TRIM).casefold()
        hits = {option for option in strings if option.casefold() == bare}
    return hits.pop() if len(hits) == 1 else None


# ------------------------------------------------------------------------------------------------- coercion


class _Coercer:
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
        node = _resolve(schema, self._root)
        if "anyOf" in node or "oneOf" in node or "allOf" in node:
            return self._combined(value, node, path, depth, wraps=wraps)
        if not _has_kind(value, node.get("type")):
            return self._convert(value, node, _types(node), path, depth, wraps=wraps)
        return self._descend(value, node, path, depth)

    def fits(self, value: Any, schema: Any, depth: int) -> bool:
        if depth > _MAX_SCHEMA_NESTING:
            return True
        node = _resolve(schema, self._root)
        branches = _branches(node)
        if branches is not None and not any(self.fits(value, b, depth + 1) for b in branches):
            return False
        if not all(self.fits(value, part, depth + 1) for part in _all_of(node)) or not _allowed(value, node):
            return False
        if isinstance(value, dict):
            return self._object_fits(value, node, depth)
        if isinstance(value, list):
            items = node.get("items")
            return not _is_mapping(items) or all(self.fits(item, items, depth + 1) for item in value)
        return True

    def _object_fits(self, value: dict[str, Any], node: Mapping[str, Any], depth: int) -> bool:
        required = node.get("required")
        if isinstance(required, list) and any(isinstance(k, str) and k not in value for k in required):
            return False
        properties, extra = _fields(node)
        for key, item in value.items():
            schema = properties.get(key, extra)
            if schema is not None and not self.fits(item, schema, depth + 1):
                return False
        return True

    def _combined(self, value: Any, node: Mapping[str, Any], path: str, depth: int, *, wraps: int) -> Any:
        branches = _branches(node)
        if branches is not None:
            return self._pick_branch(value, branches, path, depth, wraps=wraps)
        for part in _all_of(node):
            value = self.coerce(value, part, path, depth + 1, wraps=wraps)
        return value

    def _pick_branch(self, value: Any, branches: list[Any], path: str, depth: int, *, wraps: int) -> Any:
        if any(self.fits(value, branch, depth + 1) for branch in branches):
            return value
        fallback: tuple[Any, list[str]] | None = None
        for branch in branches:
            trial: list[str] = []
            coerced = _Coercer(self._root, trial).coerce(value, branch, path, depth + 1, wraps=wraps)
            if coerced is value:
                continue
            if self.fits(coerced, branch, depth + 1):
                fallback = (coerced, trial)
                break
            # Right shape but wrong inside: keep the fixes that did apply, for a sharper validation error.
            if fallback is None and _allowed(coerced, _resolve(branch, self._root)):
                fallback = (coerced, trial)
        if fallback is None:
            return value
        self._repairs.extend(fallback[1])
        return fallback[0]

    def _convert(
        self, value: Any, node: Mapping[str, Any], types: tuple[str, ...], path: str, depth: int, *, wraps: int
    ) -> Any:
        for kind in types:
            converter = _SCALARS.get(kind)
            converted = _NO if converter is None else converter(value)
            if converted is not _NO:
                source = "float" if isinstance(value, float) else _KIND[type(value)]
                self._repairs.append(f"coerced '{path}' from {source} to {kind}")
                return converted
        # Bounded, since a recursive schema would wrap forever; and a null never gets a container invented.
        if wraps >= _MAX_WRAPS or value is None:
            return value
        if "array" in types:
            self._repairs.append(f"wrapped single value in a list at '{path}'")
            return [self.coerce(value, node.get("items"), f"{path}[0]", depth + 1, wraps=wraps + 1)]
        field = _single_property(node) if "object" in types else None
        if field is None:
            return value
        name, schema = field
        self._repairs.append(f"wrapped the value in an object as '{_child(path, name)}'")
        return {name: self.coerce(value, schema, _child(path, name), depth + 1, wraps=wraps + 1)}

    def _descend(self, value: Any, node: Mapping[str, Any], path: str, depth: int) -> Any:
        if isinstance(value, dict):
            return self._object(value, node, path, depth)
        if isinstance(value, list):
            return self._array(value, node, path, depth)
        if isinstance(value, str) and ("enum" in node or "const" in node):
            return self._enum(value, node, path)
        return value

    def _object(self, value: dict[str, Any], node: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        changed: dict[str, Any] | None = None
        properties, extra = _fields(node)
        for key, item in value.items():
            schema = properties.get(key, extra)
            if schema is None:
                continue
            new = self.coerce(item, schema, _child(path, key), depth + 1)
            if new is not item:
                changed = dict(value) if changed is None else changed
                changed[key] = new
        return value if changed is None else changed

    def _array(self, value: list[Any], node: Mapping[str, Any], path: str, depth: int) -> list[Any]:
        items = node.get("items")
        if not _is_mapping(items):
            return value
        changed: list[Any] | None = None
        for index, item in enumerate(value):
            new = self.coerce(item, items, f"{path}[{index}]", depth + 1)
            if new is not item:
                changed = list(value) if changed is None else changed
                changed[index] = new
        return value if changed is None else changed

    def _enum(self, value: str, node: Mapping[str, Any], path: str) -> Any:
        options = node.get("enum")
        if not isinstance(options, list):
            if "const" not in node:
                return value
            options = [node["const"]]
        if value in options:
            return value
        match = _match_option(value, options)
        if match is None:
            return value
        self._repairs.append(f"matched enum value '{_short(value)}' to '{match}' at '{path}'")
        return match


# ---------------------------------------------------------------------------------------- answers in prose


@lru_cache(maxsize=128)
def _answer_patterns(options: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(whole-word mention, marked mention) of lower-case options; longest first, so "not sure" beats "sure".

    Matched against lower-cased text: re.IGNORECASE, like a leading look-behind, stops re skipping ahead fast.
    """
    ordered = sorted(options, key=len, reverse=True)
    plain = "|".join(re.escape(option) for option in ordered)
    word = "|".join(re.escape(option[0]) + r"(?<!\w.)" + re.escape(option[1:]) for option in ordered)
    mention = re.compile(rf"(?:{word})(?!\w)", re.S)
    marked = re.compile(
        rf"\[\s*({plain})\s*\]"
        rf"|\*\*\s*({plain})\s*\*\*"
        rf"|a(?<!\w.)nswer\s*(?:is\b\s*:?|[:\-–—])\s*[\"'*\[(]*({plain})(?!\w)",
        re.S,
    )
    return mention, marked


def _answer_in_prose(text: str, name: str, options: tuple[str, ...]) -> str:
    by_lower: dict[str, str] = {}
    for option in options:
        by_lower.setdefault(option.lower(), option)
    mention, marked = _answer_patterns(tuple(by_lower))
    lowered = text.lower()
    # A marked answer wins, the last one: models restate and correct themselves as they go.
    marks = marked.findall(lowered)
    named = {"".join(marks[-1])} if marks else set(mention.findall(lowered))
    if len(named) == 1:
        return by_lower[named.pop()]
    listing = ", ".join(f"'{option}'" for option in options)
    what = "names none of" if not named else "names more than one of"
    raise ParseError(
        f"could not read the answer: the reply {what} the allowed values ({listing}) and marks none;"
        f' reply with only the JSON object {{"{name}": ...}} holding one of them'
    )


def _plain_answer(stripped: str, types: tuple[str, ...]) -> Any:
    if stripped[0] in "[{":  # it was meant as JSON: the malformed-JSON error helps the model more
        return _NO
    for kind in types:
        converter = _SCALARS.get(kind)
        value = _NO if converter is None else converter(stripped)
        if value is not _NO:
            return value
    return _NO


def _from_prose(text: str, stripped: str, schema: Mapping[str, Any]) -> Parsed | None:
    """A one-field answer written as plain text, when the schema allows reading it unambiguously."""
    field = _single_property(_resolve(schema, schema))
    if field is None:
        return None
    name, field_schema = field
    node = _resolve(field_schema, schema)
    options = node.get("enum")
    if isinstance(options, list) and options and all(isinstance(option, str) for option in options):
        choices = tuple(option for option in options if option.strip())
        if not choices:
            return None
        answer = _answer_in_prose(text, name, choices)
    else:
        answer = _plain_answer(stripped, _types(node))
        if answer is _NO:
            return None
    shown = answer if isinstance(answer, str) else json.dumps(answer)
    return Parsed({name: answer}, (f"read the answer '{_short(shown)}' from prose",))


# ---------------------------------------------------------------------------------------------------- parse


def _noun(root: Mapping[str, Any] | None) -> str:
    types = () if root is None else _types(root)
    if "object" in types:
        return "JSON object"
    return "JSON array" if "array" in types else "JSON"


def _not_found(noun: str, error: json.JSONDecodeError | None) -> ParseError:
    if error is None:
        return ParseError(f"no {noun} found in the answer; reply with only the {noun}")
    return ParseError(
        f"the {noun} in the answer is malformed and could not be repaired ({error.msg} at line {error.lineno}"
        f" column {error.colno}); reply with only the corrected {noun}"
    )


def parse(
    text: str,
    schema: Mapping[str, Any] | None = None,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Parsed:
    """Read the JSON value in a model's answer, repairing what it safely can and aligning it with `schema`.

    Raises ParseError, and only ParseError, when the text holds no usable JSON.
    """
    if len(text) > max_chars:
        raise ParseError(
            f"the answer is {len(text):,} characters long, over the limit of {max_chars:,};"
            " reply with only the JSON, much shorter"
        )
    root = None if schema is None else _resolve(schema, schema)
    noun = _noun(root)
    stripped = text.strip()
    if not stripped:
        raise ParseError(f"the answer is empty; reply with only the {noun}")
    locator = _Locator(text, max_depth)
    objects_only = noun == "JSON object"  # so a citation like "[1]" in prose is not taken for the answer
    found = locator.whole(stripped) or locator.fenced() or locator.in_prose(objects_only=objects_only)
    if found is None:
        answer = None if schema is None else _from_prose(text, stripped, schema)
        if answer is None:
            raise _not_found(noun, locator.error)
        return answer
    value, repairs = found
    if schema is not None:
        value = _Coercer(schema, repairs).coerce(value, schema, "$", 0)
    return Parsed(value, tuple(repairs))
