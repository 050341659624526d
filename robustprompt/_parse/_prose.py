"""Answers in prose: a one-field answer written as plain text, read only where that is unambiguous."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from robustprompt._parse._result import Parsed, ParseError, short
from robustprompt._parse._schema import NO, SCALARS, resolve, single_property, types_of

__all__ = ["from_prose"]


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
        return NO
    for kind in types:
        converter = SCALARS.get(kind)
        value = NO if converter is None else converter(stripped)
        if value is not NO:
            return value
    return NO


def from_prose(text: str, stripped: str, schema: Mapping[str, Any]) -> Parsed | None:
    """A one-field answer written as plain text, when the schema allows reading it unambiguously."""
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
