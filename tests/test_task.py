from __future__ import annotations

import json
import typing
from enum import Enum
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import robustprompt as rp
from robustprompt.testing import ScriptedModel
from tests.models import Person, Review, Sentiment, classify_task


def test_examples_are_rendered_as_json_pairs() -> None:
    task = classify_task()
    assert task.examples == (
        ('{"text":"Loved it"}', '{"label":"positive"}'),
        ('{"text":"Hated it"}', '{"label":"negative"}'),
    )


def test_invalid_example_output_is_a_config_error_at_definition() -> None:
    with pytest.raises(rp.ConfigError, match=r"example 0: output does not match Sentiment"):
        classify_task(examples=[rp.Example(Review(text="x"), {"label": "happy"})])


def test_invalid_example_input_is_a_config_error_at_definition() -> None:
    with pytest.raises(rp.ConfigError, match=r"example 1: input does not match Review"):
        classify_task(
            examples=[
                rp.Example(Review(text="a"), Sentiment(label="positive")),
                rp.Example({"txt": 1}, Sentiment(label="positive")),
            ]
        )


def test_example_failing_a_check_is_a_config_error() -> None:
    def not_neutral(s: Sentiment) -> bool:
        return s.label != "neutral"

    with pytest.raises(rp.ConfigError, match="check not_neutral failed"):
        classify_task(examples=[rp.Example(Review(text="ok"), Sentiment(label="neutral"))], checks=[not_neutral])


def test_non_example_is_rejected() -> None:
    with pytest.raises(rp.ConfigError, match=r"expected rp.Example"):
        classify_task(examples=[(Review(text="x"), Sentiment(label="positive"))])


def test_empty_instructions_rejected() -> None:
    with pytest.raises(rp.ConfigError, match="empty instructions"):
        classify_task(instructions="  ")


def test_fingerprint_is_stable_and_tracks_what_shapes_the_prompt() -> None:
    a, b = classify_task(), classify_task()
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64
    assert classify_task(instructions="Other words.").fingerprint != a.fingerprint
    assert classify_task(examples=[]).fingerprint != a.fingerprint
    assert classify_task(version="2").fingerprint != a.fingerprint


class Color(Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("output", "example_output", "rendered"),
    [
        (str, "hi", '{"answer":"hi"}'),
        (int, 3, '{"answer":3}'),
        (bool, True, '{"answer":true}'),
        (Literal["yes", "no"], "no", '{"answer":"no"}'),
        (Color, Color.RED, '{"answer":"red"}'),
        (list[int], [1, 2], '{"answer":[1,2]}'),
    ],
)
def test_plain_output_types_are_wrapped_in_an_answer_object(
    output: object, example_output: object, rendered: str
) -> None:
    task = rp.Task("t", input=str, output=output, instructions="Do it.", examples=[rp.Example("in", example_output)])
    assert task.examples == (('"in"', rendered),)
    assert task.spec.schema["required"] == ["answer"]
    value, errors = task.validator.validate(json.loads(rendered))
    assert errors == []
    assert value == example_output


def test_decorator_form_uses_signature_and_docstring() -> None:
    @rp.task(examples=[rp.Example(Review(text="Loved it"), Sentiment(label="positive"))])
    def classify(review: Review) -> Sentiment:
        """Classify the sentiment of the review."""
        raise NotImplementedError

    assert isinstance(classify, rp.Task)
    assert classify.name == "classify"
    assert classify.instructions == "Classify the sentiment of the review."
    assert classify.input_type is Review
    assert classify.output_type is Sentiment


def test_decorator_with_several_parameters_builds_an_input_model() -> None:
    @rp.task
    def extract(text: str, language: str = "en") -> Person:
        """Extract the person."""
        raise NotImplementedError

    assert extract.input_json({"text": "Ann, 31"}) == '{"text":"Ann, 31","language":"en"}'


def test_decorator_needs_docstring_and_annotations() -> None:
    with pytest.raises(rp.ConfigError, match="docstring"):

        @rp.task
        def nodoc(review: Review) -> Sentiment:
            raise NotImplementedError

    with pytest.raises(rp.ConfigError, match="return type"):

        @rp.task
        def noret(review: Review):  # type: ignore[no-untyped-def]
            """Doc."""


def test_bad_input_at_call_time_is_a_config_error_naming_the_type() -> None:
    task = classify_task()
    with pytest.raises(rp.ConfigError, match="input does not match Review"):
        task.input_json({"body": "x"})


class Loose(BaseModel):
    scores: dict[str, int]


def test_validator_messages_name_the_path() -> None:
    task = rp.Task("p", input=str, output=Person, instructions="Extract.")
    _, errors = task.validator.validate({"name": "Ann", "age": 200})
    assert any("age" in e and "150" in e for e in errors), errors


def test_fingerprint_changes_with_the_checks() -> None:
    def not_neutral(s: Sentiment) -> bool:
        return s.label != "neutral"

    assert classify_task(checks=[not_neutral]).fingerprint != classify_task().fingerprint


def _self_containing() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "cannot be written as JSON"),
        (_self_containing(), "cannot be written as JSON"),
        (b"\xff\xfe", "cannot be written as JSON"),
        ({"score": float("nan")}, "NaN or infinity"),
        ([1.0, float("-inf")], "NaN or infinity"),
    ],
)
def test_an_input_json_cannot_carry_is_one_items_config_error(value: Any, message: str) -> None:
    task: rp.Task[Any, str] = rp.Task("t", input=Any, output=str, instructions="Echo.")
    model = ScriptedModel(['{"answer": "ok"}'] * 3)
    with pytest.raises(rp.ConfigError, match=message):
        task.run(value, model=model)
    results = task.map(["fine", value, "fine too"], model=model)
    assert isinstance(results[1], rp.ConfigError) and results[0] == results[2] == "ok"
    with pytest.raises(rp.ConfigError, match=message):  # in an example too, at definition
        rp.Task("t", input=Any, output=str, instructions="Echo.", examples=[rp.Example(value, "x")])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input": str, "output": typing.Callable}, "output type typing.Callable cannot be described as JSON Schema"),
        ({"input": typing.Callable, "output": str}, "input type typing.Callable cannot be described as JSON Schema"),
        ({"input": lambda text: text, "output": str}, r"input type is a function \('<lambda>'\), not a type"),
    ],
)
def test_a_type_that_cannot_reach_a_model_is_refused_at_definition(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(rp.ConfigError, match=message):
        rp.Task("t", instructions="Echo.", **kwargs)
