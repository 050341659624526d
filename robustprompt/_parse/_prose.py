"""Answers in prose: a one-field answer written as plain text, read only where that is unambiguous."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from robustprompt._parse._result import Parsed, ParseError, short
from robustprompt._parse._schema import NO, SCALARS, resolve, single_property, types_of

__all__ = ["from_prose"]

_TRIM = string.punctuation + string.whitespace


# Final-answer conventions for a number or a yes/no: \boxed{N}, "Answer: N", "the answer is true", [Yes], **N**.
_SCALAR_MARK = re.compile(
    r"\\boxed\s*\{((?:[^{}\n]|\{[^{}\n]*\}){1,80})\}"
    r"|answer\s*(?:is\b\s*:?|[:\-–—=])\s*[*\[(]*\s*(\$?[-+]?\$?[\d.,/]*\d|true|false|yes|no)(?!\w)"
    r"|\[\s*([^\[\]\n]{1,40}?)\s*\]"
    r"|\*\*\s*([^*\n]{1,40}?)\s*\*\*",
    re.I,
)
_LATEX_FRACTION = re.compile(r"\\d?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_LATEX_NOISE = re.compile(r"\\[,!;: ]|\\?\$|\\text\s*\{[^{}]*\}|\\(?:mathrm|textbf)\b")


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


@lru_cache(maxsize=128)
def _letter_pattern(letters: tuple[str, ...]) -> re.Pattern[str]:
    """Where a one-letter option stands as an option: (B), B), B., [B], **B**, "answer: B", "option B".

    Case-sensitive, so that the article "a" and the pronoun "I" are not read as options A and I.
    """
    one = "|".join(re.escape(letter) for letter in letters)
    return re.compile(
        rf"\(\s*({one})\s*\)"
        rf"|(?<![\w(])({one})\)"
        rf"|(?<![\w.])({one})\.(?![\w.])"
        rf"|\[\s*({one})\s*\]"
        rf"|\*\*\s*({one})\s*\*\*"
        rf"|[Aa]nswer\s*(?:is\b\s*:?|[:\-–—])\s*[\"'*\[(]*({one})(?!\w)"
        rf"|[Oo]ption\s+({one})(?!\w)"
    )


def _marked_options(text: str, words: dict[str, str], letters: tuple[str, ...]) -> list[tuple[int, str]]:
    """(position, option) of every option the text marks as its answer."""
    marks: list[tuple[int, str]] = []
    if words:
        _, marked = _answer_patterns(tuple(words))
        marks += [(m.start(), words["".join(m.groups(""))]) for m in marked.finditer(text.lower())]
    if letters:
        marks += [(m.start(), "".join(m.groups(""))) for m in _letter_pattern(letters).finditer(text)]
    return sorted(marks)


def _answer_in_prose(text: str, name: str, options: tuple[str, ...]) -> str:
    letters = tuple(option for option in options if len(option) == 1 and option.isalpha())
    words: dict[str, str] = {}
    for option in options:
        if option not in letters:
            words.setdefault(option.lower(), option)
    # A marked answer wins, the last one: models restate and correct themselves as they go.
    marks = _marked_options(text, words, letters)
    if marks:
        named = {marks[-1][1]}
    else:
        named = {words[found] for found in _answer_patterns(tuple(words))[0].findall(text.lower())} if words else set()
        alone = text.strip(_TRIM)
        if alone in letters:
            named.add(alone)
    if len(named) == 1:
        return named.pop()
    listing = ", ".join(f"'{option}'" for option in options)
    what = "names none of" if not named else "names more than one of"
    raise ParseError(
        f"could not read the answer: the reply {what} the allowed values ({listing}) and marks none;"
        f' reply with only the JSON object {{"{name}": ...}} holding one of them'
    )


def _converted(text: str, types: tuple[str, ...]) -> Any:
    for kind in types:
        converter = SCALARS.get(kind) if kind != "string" else None
        value = NO if converter is None else converter(text)
        if value is not NO:
            return value
    return NO


def _from_latex(boxed: str) -> str:
    return _LATEX_NOISE.sub("", _LATEX_FRACTION.sub(r"\1/\2", boxed)).replace("{,}", ",").strip()


def _plain_answer(stripped: str, types: tuple[str, ...]) -> Any:
    if stripped[0] == "{":  # it was meant as JSON: the malformed-JSON error helps the model more
        return NO
    value = _converted(stripped.rstrip(".!"), types)
    if value is not NO:
        return value
    # The last marked answer that reads as the type wins: models restate and correct themselves as they go.
    # Brackets and bold mark a yes or no only: "[1]" is a citation and "**3**" a step as often as an answer.
    yes_no = ("boolean",) if "boolean" in types else ()
    for mark in reversed(list(_SCALAR_MARK.finditer(stripped))):
        boxed, answer, bracketed, bold = mark.groups()
        if boxed is not None or answer is not None:
            value = _converted(_from_latex(boxed) if boxed is not None else answer, types)
        else:
            value = _converted(bracketed or bold, yes_no)
        if value is not NO:
            return value
    return NO


def from_prose(text: str, stripped: str, schema: Mapping[str, Any]) -> Parsed | None:
    """A one-field answer written as plain text, when the schema allows reading it unambiguously.

    A free string is never read from prose: any text would do, so that would be a guess (output=str is
    the place for it).
    """
    field = single_property(resolve(schema, schema))
    if field is None:
        return None
    name, field_schema = field
    node = resolve(field_schema, schema)
    options = node.get("enum")
    if isinstance(options, list) and options and all(isinstance(option, str) for option in options):
        choices = tuple(option for option in options if option.strip())
        if not choices:
            return None
        answer = _answer_in_prose(text, name, choices)
    else:
        answer = _plain_answer(stripped, types_of(node))
        if answer is NO:
            return None
    shown = answer if isinstance(answer, str) else json.dumps(answer)
    return Parsed({name: answer}, (f"read the answer '{short(shown)}' from prose",))
