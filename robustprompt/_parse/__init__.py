"""Turn a model's raw answer into a JSON value: bounded, repaired, and aligned with a JSON Schema.

Every step is linear in the input, so runaway or hostile answers fail fast. `parse` raises only `ParseError`,
whose message is meant to be sent back to the model. The steps, each in its module: strict JSON (`_strict`),
syntax repair (`_repair`), location in the answer (`_locate`), schema-aligned coercion (`_schema`, `_coerce`)
and answers written as prose (`_prose`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from robustprompt._parse._coerce import Coercer
from robustprompt._parse._locate import Locator
from robustprompt._parse._prose import from_prose
from robustprompt._parse._result import Parsed, ParseError
from robustprompt._parse._schema import resolve, types_of

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_DEPTH", "ParseError", "Parsed", "parse"]

DEFAULT_MAX_CHARS = 1_000_000
DEFAULT_MAX_DEPTH = 64


def _noun(root: Mapping[str, Any] | None) -> str:
    types = () if root is None else types_of(root)
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
    root = None if schema is None else resolve(schema, schema)
    noun = _noun(root)
    stripped = text.strip()
    if not stripped:
        raise ParseError(f"the answer is empty; reply with only the {noun}")
    locator = Locator(text, max_depth)
    objects_only = noun == "JSON object"  # so a citation like "[1]" in prose is not taken for the answer
    found = locator.whole(stripped) or locator.fenced() or locator.in_prose(objects_only=objects_only)
    if found is None:
        answer = None if schema is None else from_prose(text, stripped, schema)
        if answer is None:
            raise _not_found(noun, locator.error)
        return answer
    value, repairs = found
    if schema is not None:
        value = Coercer(schema, repairs).coerce(value, schema, "$", 0)
    return Parsed(value, tuple(repairs))
