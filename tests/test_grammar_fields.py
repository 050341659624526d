"""Optional fields under grammar decoding, on the real models: the embedded ones and llama-cpp-python's server in
json_object + schema mode. With the grammar built from the raw schema the object could close before an optional
field declared first, and these models never wrote it (0 of 6); now every field is reachable in declared order."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from pydantic import BaseModel

import robustprompt as rp
from tests.test_llama_server import llama_server  # noqa: F401  # the server fixture, shared

pytestmark = pytest.mark.local_model


class Contact(BaseModel):
    nickname: str | None = None
    name: str
    city: str


TEXTS = [
    "Robert Smith, whom everyone calls Bobby, lives in Leeds.",
    "Margaret Jones (nickname Peggy) moved to Cardiff.",
    "William Brown, known as Bill, is from York.",
    "Elizabeth Green goes by Liz and lives in Bath.",
    "Richard Black, nicknamed Dick, lives in Derby.",
    "Katherine White, called Kate by friends, is in Hull.",
]

TASK: rp.Task[str, Contact] = rp.Task(
    "contact",
    input=str,
    output=Contact,
    instructions="Extract the person's nickname, full name and city from the text.",
)


def reached(model: rp.Model) -> list[dict[str, object]]:
    """Each answer as the model wrote it (the first attempt's raw JSON)."""
    answers = []
    for text in TEXTS:
        # The mode forced: a raw newline in a string (which the grammar allows) reads as "mode ignored" otherwise.
        run = TASK.run(text, model=model, policy=rp.Policy(mode=rp.OutputMode.GRAMMAR, reasks=0))
        raw = run.attempts[0].raw
        assert raw is not None
        answers.append(json.loads(raw, strict=False))  # small models leave raw newlines in strings
    return answers


def assert_every_field_reached(answers: list[dict[str, object]]) -> None:
    for answer in answers:
        assert list(answer) == ["nickname", "name", "city"], answer  # in declared order, none closed early


@pytest.mark.parametrize("name", ["local:smollm2", "local:gemma3-270m"])
def test_embedded_models_reach_an_optional_field_declared_first(name: str) -> None:
    assert_every_field_reached(reached(rp.model(name, temperature=0, max_output_tokens=64)))


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120.0) as c:
        yield c


def test_llama_server_json_object_mode_reaches_an_optional_field_declared_first(
    llama_server: str,  # noqa: F811
    client: httpx.Client,
) -> None:
    model = rp.model(
        "openai-compatible:smollm2", base_url=llama_server, temperature=0, max_output_tokens=64, http_client=client
    )
    policy = rp.Policy(mode=rp.OutputMode.JSON_OBJECT, reasks=0)
    answers = []
    for text in TEXTS:
        run = TASK.run(text, model=model, policy=policy)
        raw = run.attempts[0].raw
        assert raw is not None
        answers.append(json.loads(raw, strict=False))  # small models leave raw newlines in strings
    assert_every_field_reached(answers)
