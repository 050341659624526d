"""What parsing gives: a JSON value with its repairs, or a ParseError worded for the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ParseError", "Parsed", "short"]


class ParseError(ValueError):
    """The text holds no usable JSON. The message is written for the model, to be sent back in a re-ask."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """A JSON value and the repairs made to get it; no repairs means clean JSON that already fit the schema."""

    value: Any
    repairs: tuple[str, ...]


def short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
