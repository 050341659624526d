"""Turn a model's raw answer into a JSON value: bounded, repaired, and aligned with a JSON Schema.

Every step is linear in the input, so runaway or hostile answers fail fast. `parse` raises only `ParseError`,
whose message is meant to be sent back to the model. The steps, each in its module: strict JSON (`_strict`),
syntax repair (`_repair`), location in the answer (`_locate`), schema-aligned coercion (`_schema`, `_coerce`)
and answers written as prose (`_prose`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from robustprompt._parse._coerce import Coercer
from robustprompt._parse._locate import Candidate, Locator
from robustprompt._parse._prose import from_prose
from robustprompt._parse._result import Parsed, ParseError, short
from robustprompt._parse._schema import resolve, single_property, types_of

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_DEPTH", "ParseError", "Parsed", "parse"]

DEFAULT_MAX_CHARS = 1_000_000
DEFAULT_MAX_DEPTH = 64

# After a value, a quoted key and its colon mean the value was meant to go on.
_CONTINUATION = re.compile(r"""\s*,?\s*(?:"[^"\n]{0,200}"|'[^'\n]{0,200}')\s*:""")
_WHOLE_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*)\n[ \t]*```", re.S | re.I)


def _noun(root: Mapping[str, Any] | None) -> str:
    types = () if root is None else types_of(root)
    if "object" in types:
        return "JSON object"
    return "JSON array" if "array" in types else "JSON"


def _not_found(noun: str, locator: Locator) -> ParseError:
    if locator.cut is not None:
        return ParseError(
            f"the {noun} in the answer is cut off: it stops before its end (it starts "
            f"'{short(locator.cut, 30)}'), so no value in it can be trusted; reply with the complete {noun}, shorter"
        )
    error = locator.error
    if error is None:
        return ParseError(f"no {noun} found in the answer; reply with only the {noun}")
    return ParseError(
        f"the {noun} in the answer is malformed and could not be repaired ({error.msg} at line {error.lineno}"
        f" column {error.colno}); reply with only the corrected {noun}"
    )


def _aligned(candidate: Candidate, schema: Mapping[str, Any] | None, *, check: bool) -> tuple[Any, list[str], bool]:
    """The candidate's value aligned with the schema, its repairs, and (if `check`) whether it then fits."""
    if schema is None:
        return candidate.value, candidate.repairs, True
    repairs = list(candidate.repairs)
    coercer = Coercer(schema, repairs)
    value = coercer.coerce(candidate.value, schema, "$", 0)
    return value, repairs, not check or coercer.fits(value, schema, 0)


def _chosen(text: str, candidates: list[Candidate], schema: Mapping[str, Any] | None, noun: str) -> Parsed | None:
    """The one answer among the values found; several different ones that fit are a ParseError, not a pick."""
    if len(candidates) == 1 and _right_kind(candidates[0].value, noun):
        # Alone and of the right kind, it is the answer whether or not it fits: validation says what is wrong.
        value, repairs, _ = _aligned(candidates[0], schema, check=False)
        _refuse_continuation(text, candidates[0].end, noun)
        return Parsed(value, tuple(repairs))
    aligned = [(_aligned(candidate, schema, check=True), candidate) for candidate in candidates]
    fitting = [(found, candidate) for found, candidate in aligned if found[2]]
    distinct: list[Any] = []
    for (value, _, _), _ in fitting:
        if not any(_same(value, seen) for seen in distinct):
            distinct.append(value)
    if len(distinct) > 1:
        raise ParseError(
            f"the answer holds {len(distinct)} different JSON values that could each be the answer, so none can be"
            f" chosen; reply with only one {noun}"
        )
    if fitting:
        (value, repairs, _), candidate = fitting[0]
    else:
        # None fits: the first of the right kind still goes on, so that validation can say what is wrong with it.
        kinds = [(found, c) for found, c in aligned if _right_kind(c.value, noun)]
        if not kinds:
            return None
        (value, repairs, _), candidate = kinds[0]
    _refuse_continuation(text, candidate.end, noun)
    return Parsed(value, tuple(repairs))


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _right_kind(value: Any, noun: str) -> bool:
    return noun == "JSON" or isinstance(value, dict if noun == "JSON object" else list)


def _refuse_continuation(text: str, end: int, noun: str) -> None:
    """The value closed, but the answer goes on as if it had not: `{"a": 1}, "b": 2}` is not {"a": 1}."""
    rest = _CONTINUATION.match(text, end)
    if rest is not None:
        raise ParseError(
            f"the {noun} in the answer closes too early: after it comes '{short(text[end:].strip(), 30)}', which"
            f" belongs inside it; reply with one {noun} holding every field"
        )


def _text_output(text: str, schema: Mapping[str, Any], max_depth: int) -> Parsed | None:
    """output=str: the whole answer is the text, unless it is exactly the JSON object the prompt asked for.

    Nothing inside is parsed, so code holding `{}` stays code.
    """
    field = single_property(resolve(schema, schema))
    if field is None:
        return None
    stripped = text.strip()
    fence = _WHOLE_FENCE.fullmatch(stripped)
    body = stripped if fence is None else fence.group(1).strip()
    whole = Locator(body, max_depth).whole(body)
    name = field[0]
    value = None if whole is None else whole.value
    if isinstance(value, dict) and set(value) == {name} and isinstance(value[name], str):
        return Parsed(value, () if fence is None else ("extracted JSON from a ``` fence",))
    if whole is None and re.match(rf'\{{\s*"{re.escape(name)}"\s*:', body):
        return None  # the JSON object it asked for, broken or cut off: read it as JSON, not as text
    return Parsed({name: stripped}, ("took the whole answer as the text output (output=str)",))


def parse(
    text: str,
    schema: Mapping[str, Any] | None = None,
    *,
    text_output: bool = False,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Parsed:
    """Read the JSON value in a model's answer, repairing what it safely can and aligning it with `schema`.

    `text_output` says the output is plain text (a task with output=str, `schema` its one-field wrapper): the
    whole answer is then the value. Raises ParseError, and only ParseError, when the text holds no usable JSON,
    holds several different answers, or was cut off.
    """
    if len(text) > max_chars:
        raise ParseError(
            f"the answer is {len(text):,} characters long, over the limit of {max_chars:,};"
            " reply with only the JSON, much shorter"
        )
    root = None if schema is None else resolve(schema, schema)
    noun = _noun(root)
    stripped = text.strip()
    if not stripped:
        raise ParseError(f"the answer is empty; reply with only the {noun}")
    if text_output and schema is not None:
        as_text = _text_output(text, schema, max_depth)
        if as_text is not None:
            return as_text
    locator = Locator(text, max_depth)
    whole = locator.whole(stripped)
    if whole is not None:  # the fast path, and the answer whether it fits or not: validation says what is wrong
        repairs: list[str] = []
        value = whole.value if schema is None else Coercer(schema, repairs).coerce(whole.value, schema, "$", 0)
        return Parsed(value, tuple(repairs))
    found = _chosen(text, locator.candidates(), schema, noun)
    if found is None and '\\"' in text and locator.cut is None:
        found = _unescaped(text, schema, max_depth)
    if found is not None:
        return found
    if locator.cut is None and schema is not None:
        answer = from_prose(text, stripped, schema)
        if answer is not None:
            return answer
    raise _not_found(noun, locator)


def _unescaped(text: str, schema: Mapping[str, Any] | None, max_depth: int) -> Parsed | None:
    """JSON escaped once too often (`{\\"name\\": \\"Ann\\"}`), read with its quotes unescaped."""
    try:
        parsed = parse(text.replace('\\"', '"'), schema, max_depth=max_depth)
    except ParseError:
        return None
    return Parsed(parsed.value, ("unescaped double-escaped JSON", *parsed.repairs))
