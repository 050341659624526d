"""What a backend returns for one request: the model's raw answer, provider-neutral."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Completion", "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)

    def within(self, max_input: int, max_output: int) -> Usage:
        """This usage as a server reported it, made believable: whole counts, none over what one request can
        use (`Infinity`, `1e12` or a string from a broken server would stall a token pacer, or skew costs)."""
        return Usage(_count(self.input_tokens, max_input), _count(self.output_tokens, max_output))


def _count(value: Any, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return 0
    return int(min(max(value, 0), limit))


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer. `text` is the JSON text (or the tool-call arguments) to parse.

    `finish_reason` is normalised to "stop", "length", "refusal" or "other"; `refusal` carries the model's
    refusal message when it gave one instead of an answer.
    """

    text: str
    finish_reason: str = "stop"
    usage: Usage | None = None
    model_id: str = ""
    refusal: str | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"
