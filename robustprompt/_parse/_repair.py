"""Syntax repair: near-JSON (single or curly quotes, comments, Python literals, bare words) rewritten into strict JSON.

A value cut off before its end is never closed into something that looks complete: the repairer says it was cut,
and the caller turns that into an error, since a truncated "age": 4 may have been 41.
"""

from __future__ import annotations

import json
import re

from robustprompt._parse._strict import too_deep

__all__ = ["Repairer"]

_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
        (?P<dq>"[^"\\]*(?:\\.[^"\\]*)*(?P<dq_end>"|\\?))
      | (?P<sq>'[^'\\]*(?:\\.[^'\\]*)*(?P<sq_end>'|\\?))
      | (?P<curly>“[^“”]*”|‘[^‘’]*’)
      | (?P<open>[\[{])
      | (?P<close>[\]}])
      | (?P<sep>[,:])
      | (?P<comment>//[^\n]*|/\*.*?(?:\*/|\Z))
      | (?P<word>-?[A-Za-z_$][\w$]*)
      | (?P<number>[-+]?[\d.][\d.eE+-]*|-)
      | (?P<space>\s)
      | (?P<end>\Z)
    )""",
    re.S | re.X,
)
_CONTROL = re.compile(r"[\x00-\x1f]")
_SINGLE_QUOTED_ESCAPE = re.compile(r'\\(.)|"', re.S)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?", re.A)
# Numbers a person or a JavaScript programmer writes: ".25", "1.", "+3".
_LOOSE_NUMBER = re.compile(r"[-+]?(?:0|[1-9]\d*)?(?:\.\d*)?(?:[eE][+-]?\d+)?", re.A)
_LITERALS = {"true": "true", "false": "false", "null": "null", "none": "null"}
_JSON_WORDS = frozenset({"true", "false", "null", "NaN", "Infinity", "-Infinity"})
# An unquoted object value runs to the next comma, closing bracket or line end.
_BARE_VALUE = re.compile(r"[^,{}\[\]\n\"]*")
# Closing brackets, and only them, at the end of a string that never ends: `{"key": "value}`.
_SWALLOWED_CLOSERS = re.compile(r"[\]}][\]}\s]*\Z")


def _requote(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if escaped is None:
        return '\\"'
    return "'" if escaped == "'" else match.group()


def _escape_control(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _is_bare(word: str) -> bool:
    return word not in _JSON_WORDS and word.lower() not in _LITERALS


def _plain_number(number: str) -> str | None:
    """`number` as JSON writes it, or None when it is no number at all."""
    if not _LOOSE_NUMBER.fullmatch(number) or not any(char.isdigit() for char in number):
        return None
    sign = "-" if number[0] == "-" else ""
    body = number.lstrip("+-")
    mantissa, e, exponent = body.partition("e") if "e" in body else body.partition("E")
    whole, _, fraction = mantissa.partition(".")
    if not whole and not fraction:
        return None
    return f"{sign}{whole or '0'}{'.' + fraction if fraction else ''}{e + exponent}"


class Repairer:
    """Rewrites near-JSON that starts at an opening bracket into strict JSON, one token at a time."""

    __slots__ = ("_closers", "_max_depth", "_notes", "_out", "cut")

    def __init__(self, max_depth: int) -> None:
        self._max_depth = max_depth
        self._out: list[str] = []
        self._closers: list[str] = []
        self._notes: dict[str, None] = {}  # an ordered set: each kind of repair is reported once
        self.cut = False  # the text ended before the value did

    def run(self, text: str, start: int) -> tuple[str, int, list[str]] | None:
        """The repaired JSON, where it ends in `text`, and the repairs; None if this is not JSON or is cut off."""
        pos = start
        while True:
            match = _TOKEN.match(text, pos)
            if match is None:
                return None
            pos = match.end()
            kind = match.lastgroup or "end"
            if kind == "end":
                self.cut = True
                return None
            if kind == "close":
                if not self._close(match.group(kind)):
                    return None
            elif kind == "dq" and match.group("dq_end") != '"':
                return self._unterminated(match)
            elif kind == "word" and self._in_value_position() and _is_bare(match.group(kind)):
                pos = self._bare_value(text, match.start(kind))
            elif not self._take(kind, match, at_end=pos == len(text)):
                return None
            if not self._closers:
                return "".join(self._out), pos, list(self._notes)

    def _take(self, kind: str, match: re.Match[str], *, at_end: bool) -> bool:
        token = match.group()
        if kind in ("dq", "sq", "curly", "word", "number", "open"):
            self._comma_if_missing()
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
            self._out.append(self._escape_controls(match.group("dq")))
        elif kind == "sq":
            self._out.append(self._single_quoted(match))
        elif kind == "curly":
            self._note("replaced curly quotes with straight ones")
            self._out.append(json.dumps(match.group(kind)[1:-1], ensure_ascii=False))
        elif kind == "word":
            return self._word(match.group(kind), at_end=at_end)
        else:
            return self._number(match.group(kind), at_end=at_end)
        return True

    def _note(self, repair: str) -> None:
        self._notes[repair] = None

    def _in_key_position(self) -> bool:
        return self._closers[-1] == "}" and self._out[-1] in ("{", ",")

    def _in_value_position(self) -> bool:
        return bool(self._closers) and self._closers[-1] == "}" and self._out[-1] == ":"

    def _comma_if_missing(self) -> None:
        """A value or key straight after a finished value: the model left out the comma between them."""
        out = self._out
        if not self._closers or out[-1] in ("{", "[", ",", ":"):
            return
        if self._closers[-1] == "}" and len(out) > 1 and out[-2] in ("{", ","):
            return  # out[-1] is a key: what follows must be its colon, not a comma
        self._note("inserted a missing comma")
        out.append(",")

    def _close(self, closer: str) -> bool:
        if self._closers[-1] != closer:
            return False
        if self._out[-1] == ",":
            self._out.pop()
            self._note("removed trailing comma")
        self._closers.pop()
        self._out.append(closer)
        return True

    def _unterminated(self, match: re.Match[str]) -> tuple[str, int, list[str]] | None:
        """A string that runs to the end of the text. If it ends in exactly the brackets still open, the model
        forgot its closing quote; anything else was cut off."""
        body = match.group("dq")[1 : len(match.group("dq")) - len(match.group("dq_end"))]
        tail = _SWALLOWED_CLOSERS.search(body)
        if tail is None:
            self.cut = True
            return None
        if "".join(tail.group().split()) != "".join(reversed(self._closers)):
            return None  # closed, but not where the quotes say: broken, not cut
        self._comma_if_missing()
        self._note("closed a string that swallowed the closing brackets")
        self._out.append(self._escape_controls(f'"{body[: tail.start()]}"'))
        self._out.extend(reversed(self._closers))
        self._closers.clear()
        return "".join(self._out), match.end(), list(self._notes)

    def _bare_value(self, text: str, start: int) -> int:
        """An unquoted object value (`{name: Ann Smith}`), quoted up to the next comma, bracket or line end."""
        bare = _BARE_VALUE.match(text, start)
        end = start if bare is None else bare.end()
        self._note("quoted an unquoted value")
        self._out.append(json.dumps(text[start:end].strip(), ensure_ascii=False))
        return end

    def _single_quoted(self, match: re.Match[str]) -> str:
        token, end = match.group("sq", "sq_end")
        if end != "'":
            self.cut = True
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
            return True
        literal = _LITERALS.get(word.lower())
        if word in _JSON_WORDS:
            self._out.append(word)
        elif literal is not None:
            self._note(f"replaced {word} with {literal}")
            self._out.append(literal)
        else:
            # A literal cut off by the end of the text ("tr") is a cut; any other bare word means this is prose.
            self.cut = at_end and any(name.startswith(word.lower()) for name in (*_LITERALS, "nan", "infinity"))
            return False
        return True

    def _number(self, number: str, *, at_end: bool) -> bool:
        if at_end:  # "4" at the very end may have been "41"
            self.cut = True
            return False
        if _JSON_NUMBER.fullmatch(number):
            self._out.append(number)
            return True
        plain = _plain_number(number)
        if plain is None:
            return False
        self._note("wrote a number as JSON writes it")
        self._out.append(plain)
        return True
