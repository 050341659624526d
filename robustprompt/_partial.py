"""Partial outputs of a streamed answer: an incremental JSON reader and the types a stream yields.

`PartialJson` is fed the answer's text piece by piece and keeps its state between pieces (an open string, the
containers still open), so each piece costs its own length, not the length of the prefix. Its `snapshot` never
claims more than was received: a string shows the characters so far, a number, `true`, `false` or `null` only
once a delimiter after it proves it complete, an object key only once its value has begun, and a string the
schema constrains to fixed values (`enum`, `const`) only once its closing quote came. Text before the first `{`
or `[` (prose, a code fence) and after the root value is skipped; malformed JSON stops the reader (no more
partials), and the final answer then goes through the normal parser with its repairs.

A stream yields `Partial` (never a validated output: the type says so), `Restart` when a new attempt starts and
everything shown before is void, and last the validated output itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Partial", "PartialJson", "Restart"]

T = TypeVar("T")

_WHITESPACE = " \t\r\n"
_SCALAR_END = _WHITESPACE + ",]}"
_STRING_STOP = re.compile(r'["\\]')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class Partial(Generic[T]):
    """What the answer holds so far: the fields present, strings and lists still growing, nested objects partial
    (plain dicts). Not validated, and not a `T`: read `fields`, or `partial["name"]` / `partial.get("name")`."""

    fields: dict[str, Any]
    attempt: int  # the attempt this stream belongs to (1 for the first; a re-ask or a fallback counts up)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


@dataclass(frozen=True)
class Restart:
    """A new attempt starts (a re-ask, a transport retry, a fallback model): every partial before it is void."""

    attempt: int
    reason: str


@dataclass(slots=True)
class _Frame:
    container: dict[str, Any] | list[Any]
    state: str  # dict: "key" | "colon" | "value" | "comma"; list: "value" | "comma"
    key: str | None = None  # the dict key whose value is being read
    path: tuple[str | int, ...] = ()


@dataclass(slots=True)
class _String:
    parts: list[str] = field(default_factory=list)
    escape: str | None = None  # "\\" after a backslash, "\\uXXX" while a unicode escape is read
    high: str | None = None  # a high surrogate waiting for its low half
    is_key: bool = False


class PartialJson:
    """An incremental reader of one JSON object or array. `feed` returns whether what `snapshot` shows changed."""

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self._schema = schema or {}
        self._defs = self._schema.get("$defs", {})
        self._root: dict[str, Any] | list[Any] | None = None
        self._stack: list[_Frame] = []
        self._string: _String | None = None
        self._scalar: list[str] | None = None
        self.done = False  # the root value closed
        self.broken = False  # the text is not JSON: no more partials

    def feed(self, text: str) -> bool:
        changed = False
        i, n = 0, len(text)
        while i < n and not self.done and not self.broken:
            if self._string is not None:
                i, grew = self._read_string(text, i)
                changed = changed or grew
                continue
            ch = text[i]
            if self._scalar is not None:
                if ch in _SCALAR_END:
                    changed = self._end_scalar() or changed
                    continue  # the delimiter is read by the container below
                self._scalar.append(ch)
                i += 1
                continue
            if self._root is None:
                if ch in "{[":
                    self._open(ch, ())
                    changed = True
                i += 1
                continue
            changed = self._structural(ch) or changed
            i += 1
        return changed

    def snapshot(self) -> Any:
        """The value so far: open containers copied, closed values shared, the open string shown if allowed."""
        if self._root is None:
            return None
        copies: list[Any] = [
            dict(frame.container) if isinstance(frame.container, dict) else list(frame.container)
            for frame in self._stack
        ]
        if self._string is not None and not self._string.is_key and copies:
            frame = self._stack[-1]
            if not self._fixed_values(self._child_path(frame)):
                self._string.parts[:] = ["".join(self._string.parts)]  # joined once, not again at every snapshot
                _insert(copies[-1], frame.key, self._string.parts[0])
        # each open container sits in its parent as the last value put there: swap in its copy
        for depth in range(len(self._stack) - 1, 0, -1):
            parent, key = copies[depth - 1], self._stack[depth - 1].key
            if isinstance(parent, dict):
                assert key is not None
                parent[key] = copies[depth]
            else:
                parent[-1] = copies[depth]
        return copies[0] if copies else self._root

    # -- the structure

    def _structural(self, ch: str) -> bool:
        if not self._stack:
            return False
        frame = self._stack[-1]
        if ch in _WHITESPACE:
            return False
        if isinstance(frame.container, dict):
            if frame.state == "key":
                if ch == '"':
                    self._string = _String(is_key=True)
                elif ch == "}":
                    return self._close()
                else:
                    self.broken = True
                return False
            if frame.state == "colon":
                if ch == ":":
                    frame.state = "value"
                else:
                    self.broken = True
                return False
        if frame.state == "comma":
            closer = "}" if isinstance(frame.container, dict) else "]"
            if ch == ",":
                frame.state = "key" if isinstance(frame.container, dict) else "value"
            elif ch == closer:
                return self._close()
            else:
                self.broken = True
            return False
        # a value is expected
        if ch == "]" and isinstance(frame.container, list):
            return self._close()
        return self._begin_value(ch, frame)

    def _begin_value(self, ch: str, frame: _Frame) -> bool:
        if ch in "{[":
            self._open(ch, self._child_path(frame))
            return True
        if ch == '"':
            self._string = _String()
            return not self._fixed_values(self._child_path(frame))  # an empty string shows at once
        if ch in "-0123456789tfn":
            self._scalar = [ch]
            return False
        self.broken = True
        return False

    def _open(self, ch: str, path: tuple[str | int, ...]) -> None:
        container: dict[str, Any] | list[Any] = {} if ch == "{" else []
        if self._root is None:
            self._root = container
        else:
            self._put(container)
        self._stack.append(_Frame(container, "key" if ch == "{" else "value", path=path))

    def _close(self) -> bool:
        self._stack.pop()
        if self._stack:
            self._stack[-1].state = "comma"
        else:
            self.done = True
        return False  # the container's contents were already visible

    def _put(self, value: Any) -> None:
        frame = self._stack[-1]
        if isinstance(frame.container, dict):
            assert frame.key is not None
            frame.container[frame.key] = value
        else:
            frame.container.append(value)
        frame.state = "comma"

    def _end_scalar(self) -> bool:
        assert self._scalar is not None
        token, self._scalar = "".join(self._scalar), None
        try:
            value = json.loads(token)
        except ValueError:
            self.broken = True
            return False
        self._put(value)
        return True

    # -- strings

    def _read_string(self, text: str, i: int) -> tuple[int, bool]:
        string = self._string
        assert string is not None
        before = len(string.parts)
        n = len(text)
        while i < n:
            if string.escape is not None:
                i = self._read_escape(string, text, i)
                if self.broken:
                    return i, False
                continue
            found = _STRING_STOP.search(text, i)
            stop = n if found is None else found.start()
            if stop > i:
                string.parts.append(text[i:stop])
            if stop == n:
                i = n
                break
            if text[stop] == "\\":
                string.escape, i = "\\", stop + 1
                continue
            self._string, i = None, stop + 1  # the closing quote
            self._end_string(string)
            return i, not string.is_key
        grew = len(string.parts) > before
        visible = not string.is_key and not self._fixed_values(self._child_path(self._stack[-1]))
        return i, grew and visible

    def _read_escape(self, string: _String, text: str, i: int) -> int:
        assert string.escape is not None
        if string.escape == "\\":
            ch = text[i]
            if ch == "u":
                string.escape = "\\u"
            elif ch in _ESCAPES:
                string.parts.append(_ESCAPES[ch])
                string.escape = None
            else:
                self.broken = True
            return i + 1
        need = 6 - len(string.escape)
        string.escape += text[i : i + need]
        i += min(need, len(text) - i)
        if len(string.escape) < 6:
            return i
        try:
            code = int(string.escape[2:], 16)
        except ValueError:
            self.broken = True
            return i
        string.escape = None
        char = chr(code)
        if 0xD800 <= code < 0xDC00:
            string.high = char  # shown only with its low half
        elif 0xDC00 <= code < 0xE000 and string.high is not None:
            pair = (string.high + char).encode("utf-16", "surrogatepass").decode("utf-16")
            string.parts.append(pair)
            string.high = None
        else:
            string.parts.append(char)
        return i

    def _end_string(self, string: _String) -> None:
        value = "".join(string.parts)
        frame = self._stack[-1]
        if string.is_key:
            frame.key, frame.state = value, "colon"
        else:
            self._put(value)

    # -- where a value goes, and what the schema says of it

    def _child_path(self, frame: _Frame) -> tuple[str | int, ...]:
        if isinstance(frame.container, dict):
            return (*frame.path, frame.key or "")
        return (*frame.path, len(frame.container))

    def _fixed_values(self, path: tuple[str | int, ...]) -> bool:
        """Whether the schema allows only fixed values at `path`: such a string shows only once complete."""
        node: Any = self._schema
        for step in path:
            node = self._resolve(node)
            node = node.get("items", {}) if isinstance(step, int) else node.get("properties", {}).get(step, {})
        node = self._resolve(node)
        branches = [node, *(self._resolve(b) for b in node.get("anyOf", []) + node.get("oneOf", []))]
        return any("enum" in b or "const" in b for b in branches)

    def _resolve(self, node: Any) -> dict[str, Any]:
        if not isinstance(node, dict):
            return {}
        for _ in range(32):  # a chain of references, never a loop
            ref = node.get("$ref")
            if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
                break
            node = self._defs.get(ref.removeprefix("#/$defs/"), {})
        return node if isinstance(node, dict) else {}


def _insert(container: dict[str, Any] | list[Any], key: str | None, value: Any) -> None:
    if isinstance(container, dict):
        assert key is not None
        container[key] = value
    else:
        container.append(value)
