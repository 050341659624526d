"""Shared task and model types for the tests."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

import robustprompt as rp


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative", "neutral"]


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)
    nickname: str | None = None
    tags: list[str] = []


def classify_task(**overrides: object) -> rp.Task[Review, Sentiment]:
    kwargs: dict[str, object] = {
        "input": Review,
        "output": Sentiment,
        "instructions": "Classify the sentiment of the review.",
        "examples": [
            rp.Example(Review(text="Loved it"), Sentiment(label="positive")),
            rp.Example(Review(text="Hated it"), Sentiment(label="negative")),
        ],
    }
    kwargs.update(overrides)
    return rp.Task("classify", **kwargs)  # type: ignore[arg-type]
