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


class Sentence(BaseModel):
    text: str


class Resident(BaseModel):
    name: str
    age: int
    city: str


RESIDENTS = [
    ("Anna Weber, 52, lives in Graz.", Resident(name="Anna Weber", age=52, city="Graz")),
    ("Yesterday Paulo Silva (23) flew home to Recife.", Resident(name="Paulo Silva", age=23, city="Recife")),
    ("In Oslo, the 67-year-old Ingrid Dahl still skis.", Resident(name="Ingrid Dahl", age=67, city="Oslo")),
    ("Mark Evans is 30 and works in Cardiff.", Resident(name="Mark Evans", age=30, city="Cardiff")),
]


def residents_task() -> rp.Task[Sentence, Resident]:
    """An extraction whose examples copy every output field from their input."""
    return rp.Task(
        "extract_person",
        input=Sentence,
        output=Resident,
        instructions="Extract the person's full name, age in years and city from the sentence.",
        examples=[rp.Example(Sentence(text=text), resident) for text, resident in RESIDENTS],
    )
