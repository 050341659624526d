"""Syntax repair: near-JSON (single quotes, comments, Python literals, truncation) rewritten into strict JSON."""

from __future__ import annotations

import re
import string

from robustprompt._parse._strict import too_deep

__all__ = ["Repairer"]

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


class Repairer:
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
                raise too_deep(self._max_depth)
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
