"""What a backend returns for one request: the model's raw answer, provider-neutral."""

from __future__ import annotations

from dataclasses import dataclass

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
