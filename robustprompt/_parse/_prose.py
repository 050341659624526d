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


# Final-answer conventions for a number or a yes/no: \boxed{N}, "Answer: N", "the answer is true"; then, for a
# yes/no only, [Yes] and **Yes** ("[1]" is a citation and "**3**" a step as often as an answer).
_FINAL_MARK = re.compile(
    r"\\boxed\s*\{((?:[^{}\n]|\{[^{}\n]*\}){1,80})\}"
    r"|answer\s*(?:is\b\s*:?|[:\-–—=])\s*[*\[(]*\s*(\$?[-+]?\$?[\d.,/]*\d|true|false|yes|no)(?!\w)",
    re.I,
)
_YES_NO_MARK = re.compile(r"\[\s*([^\[\]\n]{1,40}?)\s*\]|\*\*\s*([^*\n]{1,40}?)\s*\*\*")
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
def _letter_patterns(letters: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(answer mark, option mark) of one-letter options: "answer: B", [B], **B**; and (B), B), B., "option B",
    "B is".

    Case-sensitive, so that the article "a" and the pronoun "I" are not read as options A and I.
    """
    one = "|".join(re.escape(letter) for letter in letters)
    answer = re.compile(
        rf"[Aa]nswer\s*(?:is\b\s*:?|[:\-–—])\s*[\"'*\[(]*({one})(?!\w)|\[\s*({one})\s*\]|\*\*\s*({one})\s*\*\*"
    )
    option = re.compile(
        rf"\(\s*({one})\s*\)|(?<![\w(])({one})\)|(?<![\w.])({one})\.(?![\w.])|[Oo]ption\s+({one})(?!\w)"
        rf"|(?<![\w.])({one})\s+(?:is|was|seems|looks)\b"  # "B is right": no article or pronoun is followed so
    )
    return answer, option


def _marked_letters(text: str, letters: tuple[str, ...]) -> set[str]:
    """The letter the text gives as its answer: the last one marked as the answer, else the one it names as an
    option; two different options named ("(C), not (A)") are two, not the last one."""
    answer, option = _letter_patterns(letters)
    marks = ["".join(m.groups("")) for m in answer.finditer(text)]
    if marks:
        return {marks[-1]}
    return {"".join(m.groups("")) for m in option.finditer(text)}


def _answer_in_prose(text: str, name: str, options: tuple[str, ...]) -> str:
    letters = tuple(option for option in options if len(option) == 1 and option.isalpha())
    words: dict[str, str] = {}
    for option in options:
        if option not in letters:
            words.setdefault(option.lower(), option)
    named: set[str] = set()
    if words:
        mention, marked = _answer_patterns(tuple(words))
        lowered = text.lower()
        # A marked answer wins, the last one: models restate and correct themselves as they go.
        marks = marked.findall(lowered)
        named = {words["".join(marks[-1])]} if marks else {words[found] for found in mention.findall(lowered)}
    if letters and not named:
        named = _marked_letters(text, letters)
        alone = text.strip(_TRIM)
        if not named and alone in letters:
            named = {alone}
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
    for mark in reversed(list(_FINAL_MARK.finditer(stripped))):
        boxed, answer = mark.groups()
        value = _converted(_from_latex(boxed) if boxed is not None else answer, types)
        if value is not NO:
            return value
    if "boolean" in types:
        for mark in reversed(list(_YES_NO_MARK.finditer(stripped))):
            value = _converted(mark.group(1) or mark.group(2), ("boolean",))
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
