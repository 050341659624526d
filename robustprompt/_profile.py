"""What a model supports (its profile) and how it is called (settings): two of the three axes; the third, a call's
budgets, is `_policy`."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

from robustprompt._errors import ConfigError
from robustprompt._prompt import OutputMode
from robustprompt._renderings import Configuration

__all__ = ["ModelProfile", "Settings", "check_seconds", "check_whole"]


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Facts about one model, from the catalog (or the provider's defaults for a model not in it)."""

    provider: str
    model_id: str
    modes: tuple[OutputMode, ...] = (OutputMode.PROMPTED,)
    context_window: int = 8192
    max_output_tokens: int = 4096
    tokenizer: str = "estimate"
    system_role: Literal["system", "developer", "user"] = "system"
    prompt_style: Literal["chat", "completion"] = "chat"
    rendering: str = "turns/json"  # the default layout/input_format for tasks not adapted to this model
    reasoning: bool = False  # reasoning models reject sampling parameters such as temperature
    input_price: float | None = None  # USD per million tokens
    output_price: float | None = None
    released: dt.date | None = None
    deprecated: dt.date | None = None
    retired: dt.date | None = None
    replacement: str | None = None

    def __post_init__(self) -> None:
        Configuration.parse(self.rendering)  # a bad name fails where the profile is written, not at the first call

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model_id}"

    @property
    def default_configuration(self) -> Configuration:
        """How a task not adapted to this model is rendered for it."""
        return Configuration.parse(self.rendering)


@dataclass(frozen=True, slots=True)
class Settings:
    """Per-model request settings. `None` leaves the provider's default."""

    temperature: float | None = None
    max_output_tokens: int | None = None
    seed: int | None = None
    timeout: float = 60.0
    max_response_bytes: int = 32 * 1024 * 1024  # a larger body is refused unread: no answer is that long

    def __post_init__(self) -> None:
        check_seconds("timeout", self.timeout, zero_ok=False)
        check_whole("max_response_bytes", self.max_response_bytes, minimum=1)
        if self.max_output_tokens is not None:
            check_whole("max_output_tokens", self.max_output_tokens, minimum=1)


def check_seconds(name: str, value: object, *, zero_ok: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero_ok):  # type: ignore[operator]
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{name} must be a finite number of seconds {bound}, got {value!r}")


def check_whole(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")
