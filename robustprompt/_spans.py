"""Copied spans: an output schema whose extracted fields may only hold what the input says.

A small model that extracts a name from "Yesterday Paulo Silva (23) flew home" can write "Prosso Silva": a
schema-valid answer that copies badly. When every example shows a field's value copied from its input (a string as a
run of the input's words, an integer as a number written in it), that field is "copied", and the decoding schema
for a new input may list the values that input offers as the field's `enum`. A backend that decodes by the schema
(a grammar, a server's structured output) then cannot write anything else there.

It narrows what can be answered, so it is never a default: adapt tries it on the configuration it chose and keeps it
only when it scores better. A string value is at most one word longer than the longest of the examples. Only the
object's own fields of type string or integer are copied; the validator still checks against the task's own schema.
Pure functions.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["SPANS_VERSION", "copied_fields", "copied_schema"]

SPANS_VERSION = 1  # bump whenever what a field is offered changes: records that chose copied spans go stale

Pair = tuple[str, str]  # (input JSON, output JSON)

# A whole number as written: not part of a word or a decimal; a minus only where it cannot be a range's dash. Past 18
# digits it is an identifier, not a quantity.
_NUMBER = re.compile(r"(?:(?<![\w.\-])-)?(?<![\w.])\d{1,18}(?![\w.]*\d)")
_SLACK = 1  # words beyond the longest example value: a longer name than any shown stays reachable
# Most values one field, and all fields together, are offered: the largest enums structured outputs take (a
# longer input leaves the field free, as without spans) and a grammar that stays small.
_MOST_PER_FIELD, _MOST_IN_ALL = 250, 1000
_CONSTRAINING = ("enum", "const", "pattern", "format", "minLength", "maxLength", "minimum", "maximum")


def _leaves(value: Any) -> Iterator[Any]:
    """The input's scalars, each on its own: a span never runs from one field into the next."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _texts(value: Any) -> Iterator[str]:
    return (leaf for leaf in _leaves(value) if isinstance(leaf, str))


def _integers(value: Any) -> Iterator[int]:
    """The integers the input holds, and those its strings write."""
    for leaf in _leaves(value):
        if isinstance(leaf, str):
            yield from (int(m) for m in _NUMBER.findall(leaf))
        elif isinstance(leaf, int) and not isinstance(leaf, bool):
            yield leaf


def _word_char(char: str) -> bool:
    # Letters, digits and the combining marks that belong to them (Devanagari vowel signs, a decomposed accent).
    return char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")


def _words(text: str) -> list[tuple[int, int]]:
    """Where each word starts and ends. Hyphens and apostrophes split words: "Oslo" stays reachable in
    "Oslo-based", and "Jean-Luc" is still a span of two words, because a span keeps what the input writes between
    its words."""
    found: list[tuple[int, int]] = []
    start = None
    for index, char in enumerate(text):
        if _word_char(char):
            start = index if start is None else start
        elif start is not None:
            found.append((start, index))
            start = None
    if start is not None:
        found.append((start, len(text)))
    return found


def _offerable(span: str) -> bool:
    """No character that JSON must escape: a quote, a backslash or a control character. Grammar converters do not
    all escape them inside an enum's literals, and an extracted value rarely holds one."""
    return not any(char in '"\\' or char < " " for char in span)


def _spans(value: Any, most_words: int) -> list[str]:
    """Every run of up to `most_words` consecutive words of each of the input's strings, as the input writes it
    (its spaces and punctuation between the words kept), in reading order."""
    found: dict[str, None] = {}
    for text in _texts(value):
        words = _words(text)
        for first, (start, _) in enumerate(words):
            for _, end in words[first : first + most_words]:
                if _offerable(span := text[start:end]):
                    found[span] = None
    return list(found)


def _is_span(value: str, data: Any) -> bool:
    """Whether `value` is a run of words of one of the input's strings (any length), and offerable."""
    if not value or not _offerable(value):
        return False
    for text in _texts(data):
        words = _words(text)
        starts, ends = {s for s, _ in words}, {e for _, e in words}
        at = text.find(value)
        while at >= 0:
            if at in starts and at + len(value) in ends:
                return True
            at = text.find(value, at + 1)
    return False


def _kind(schema: Mapping[str, Any]) -> str | None:
    """'string' or 'integer' for a field that can be copied (a bare type, nothing narrowing it already)."""
    kind = schema.get("type")
    if kind in ("string", "integer") and not any(key in schema for key in _CONSTRAINING):
        return str(kind)
    return None


def copied_fields(schema: Mapping[str, Any], pool: Sequence[Pair]) -> dict[str, int]:
    """The output fields every example in `pool` copies from its input, in the schema's order, each with the most
    words its example values have (0 for an integer field). Empty when there are no examples or nothing is copied."""
    return dict(_copied(json.dumps(schema), tuple(pool)))


@functools.lru_cache(maxsize=256)  # every render of a task asks again, with the same schema and pool
def _copied(schema_json: str, pool: tuple[Pair, ...]) -> tuple[tuple[str, int], ...]:
    properties: Mapping[str, Any] = json.loads(schema_json).get("properties") or {}
    if not pool:
        return ()
    examples = [(json.loads(i), json.loads(o)) for i, o in pool]
    found: list[tuple[str, int]] = []
    for name, field in properties.items():
        kind = _kind(field) if isinstance(field, Mapping) else None
        if kind is None or any(not isinstance(out, dict) or name not in out for _, out in examples):
            continue
        values = [(out[name], data) for data, out in examples]
        if kind == "integer":
            if all(type(v) is int and v in set(_integers(data)) for v, data in values):
                found.append((name, 0))
        elif all(isinstance(v, str) and _is_span(v, data) for v, data in values):
            found.append((name, max(len(_words(v)) for v, _ in values)))
    return tuple(found)


def copied_schema(schema: Mapping[str, Any], pool: Sequence[Pair], input_json: str) -> dict[str, Any] | None:
    """`schema` with each copied field limited to the values this input offers (None: no field is copied). A field
    this input offers nothing for (no words, no numbers), or too much to list, stays as it was."""
    fields = copied_fields(schema, pool)
    if not fields:
        return None
    data = json.loads(input_json)
    properties = dict(schema.get("properties") or {})
    listed = 0
    for name, words in fields.items():
        integer = _kind(properties[name]) == "integer"
        offered: list[Any] = list(dict.fromkeys(_integers(data))) if integer else _spans(data, words + _SLACK)
        if offered and len(offered) <= _MOST_PER_FIELD and listed + len(offered) <= _MOST_IN_ALL:
            properties[name] = {**properties[name], "enum": offered}
            listed += len(offered)
    return {**schema, "properties": properties}
