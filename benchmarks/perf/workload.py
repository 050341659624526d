"""The typed side of the workload: the pydantic models every client validates into (needs pydantic)."""

from __future__ import annotations

import os
import sys

from pydantic import BaseModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from payload import INSTRUCTIONS, MODEL_ID, PERSON, text


class Doc(BaseModel):
    text: str


class Person(BaseModel):
    name: str
    age: int
    email: str
    city: str
    languages: list[str]


EXPECTED = Person(**PERSON)
SCHEMA = Person.model_json_schema()
SCHEMA["additionalProperties"] = False  # what OpenAI's strict mode needs; the raw clients send this


def messages(i: int) -> list[dict[str, str]]:
    """What the raw-transport clients render: instructions as system, the input as a JSON data block."""
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": "Input:\n" + Doc(text=text(i)).model_dump_json()},
    ]


def request_body(i: int) -> dict[str, object]:
    return {
        "model": MODEL_ID,
        "messages": messages(i),
        "response_format": {"type": "json_schema", "json_schema": {"name": "Person", "schema": SCHEMA, "strict": True}},
    }


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
