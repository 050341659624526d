"""Strict JSON: the standard decoder, made to refuse what JSON does not allow and to bound nesting."""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from robustprompt._parse._result import ParseError, short

__all__ = ["decode_at", "nesting_end", "too_deep"]


def _reject_constant(name: str) -> NoReturn:
    raise ParseError(f"the JSON contains {name}, which JSON does not allow; write a finite number or null")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):
        raise ParseError(f"the JSON has a number too large to represent ({short(literal)}); write a smaller one")
    return number


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ParseError(f"a JSON object has the key '{short(key)}' twice; give each key only once")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_float=_finite_float, parse_constant=_reject_constant)
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)


def too_deep(max_depth: int) -> ParseError:
    return ParseError(f"the JSON nests arrays and objects more than {max_depth} levels deep; make it flatter")


def nesting_end(text: str, start: int, max_depth: int) -> int | None:
    """Where the brackets opened at `start` balance (None: never), raising if they nest too deep."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text, start):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise too_deep(max_depth)
        elif char != '"':
            depth -= 1
            if depth == 0:
                return match.end()
    return None


def decode_at(text: str, start: int, max_depth: int, *, shallow: bool) -> tuple[Any, int]:
    """One strict JSON value at `start` and its end. JSONDecodeError means a syntax error worth repairing.

    `shallow` says the text is known to nest no deeper than `max_depth`, so the scan can be skipped.
    """
    if not shallow and text[start] in "[{":  # json recurses once per level: keep deep input away from it
        nesting_end(text, start, max_depth)
    try:
        return _DECODER.raw_decode(text, start)
    except (ParseError, json.JSONDecodeError):
        raise
    except ValueError as exc:  # Python's cap on the digits of an int
        raise ParseError("the JSON has an integer with too many digits; write it as a string") from exc
    except RecursionError as exc:  # only when the caller raised max_depth past Python's recursion limit
        raise too_deep(max_depth) from exc
