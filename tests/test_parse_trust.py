"""Answers you can trust: no wrong value that validates, and the answers a careful reader finds (issue 14).

Each case is written for this suite; the categories follow peers' parser suites (BAML's jsonish, json_repair).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from robustprompt._parse import ParseError, parse


class Person(BaseModel):
    name: str
    age: int


class Employee(BaseModel):
    name: str
    title: str
    manager: Employee | None = None


class Answer(BaseModel):
    answer: int


class Flag(BaseModel):
    answer: bool


class Price(BaseModel):
    answer: float


class Choice(BaseModel):
    answer: Literal["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L"]


class Level(BaseModel):
    level: Literal["ONE", "TWO", "THREE"]


class Numbers(BaseModel):
    answer: list[int]


class Summary(BaseModel):
    summary: str


class Text(BaseModel):
    answer: str  # the wrapper a task with output=str validates into


PERSON = Person.model_json_schema()


def value(text: str, model: type[BaseModel], **options: Any) -> Any:
    return model.model_validate(parse(text, model.model_json_schema(), **options).value)


def refused(text: str, model: type[BaseModel] | None, match: str | None = None) -> str:
    with pytest.raises(ParseError, match=match) as info:
        parse(text, None if model is None else model.model_json_schema())
    return str(info.value)


# ----------------------------------------------------------------------------- wrong values that validate


@pytest.mark.parametrize(
    "text",
    [
        "Draft:\n```python\nperson = {'name': 'Bob', 'age': 7}\n```\nAnswer:\n{\"name\": \"Ann\", \"age\": 41}",
        "```py\n{'name': 'Bob', 'age': 7}\n```\n```json\n{\"name\": \"Ann\", \"age\": 41}\n```",
        'Result: {"name": "Ann", "note": "see\n```json\n{\\"name\\": \\"Bob\\", \\"age\\": 7}\n```", "age": 41}',
        '```js\nconst bob = {name: \'Bob\', age: 7}\n```\nResult: {"name": "Ann", "age": 41}',
    ],
)
def test_1_a_fence_of_code_or_inside_a_string_does_not_win(text: str) -> None:
    person = value(text, Person)
    assert (person.name, person.age) == ("Ann", 41)


def test_2_a_fragment_nested_in_broken_json_is_not_the_answer() -> None:
    text = '{"name": "Ann", "title": "Buyer of 27" monitors", "manager": {"name": "Bob", "title": "CEO"}}'
    refused(text, Employee, "malformed")


@pytest.mark.parametrize("text", ['{"name": "Ann", "age": 4', '{"name": "Ann", "age": 41, "name2": "x', "[1, 2"])
def test_3_a_cut_off_answer_is_refused_even_where_what_survives_validates(text: str) -> None:
    assert "cut off" in refused(text, Person)


def test_3_the_cut_is_an_error_the_engine_reasks_with() -> None:
    import robustprompt as rp
    from robustprompt.testing import ScriptedModel

    task: rp.Task[str, Person] = rp.Task("who", input=str, output=Person, instructions="Who is it?")
    model = ScriptedModel(['{"name": "Ann", "age": 4', '{"name": "Ann", "age": 41}'])
    run = task.run("x", model=model, policy=rp.Policy(backoff_initial=0.001))
    assert run.output == Person(name="Ann", age=41)
    assert "cut off" in run.attempts[0].errors[0]


@pytest.mark.parametrize(
    "text",
    ['{"key": "value"}, "key2": "value2"}', '{"name": "Ann"} "age": 41}', 'Here: {"name": "Ann"}, "age": 41'],
)
def test_4_a_value_that_closes_early_is_refused_not_cut(text: str) -> None:
    refused(text, None, "closes too early")


def test_4_two_different_answers_are_ambiguous() -> None:
    text = 'First {"name": "Ann", "age": 41}, or maybe {"name": "Bob", "age": 7}.'
    assert "2 different JSON values" in refused(text, Person)


def test_4_the_same_answer_twice_is_one_answer() -> None:
    assert value('{"name": "Ann", "age": 41}\nAgain: {"name": "Ann", "age": 41}', Person) == Person(name="Ann", age=41)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"key": "value}', {"key": "value"}),
        ('{"a": ["x]}', {"a": ["x"]}),
        ('{"a": "b", "c": "d}\n', {"a": "b", "c": "d"}),
    ],
)
def test_5_an_unterminated_string_gives_the_brackets_back(text: str, expected: Any) -> None:
    parsed = parse(text)
    assert parsed.value == expected
    assert "closed a string that swallowed the closing brackets" in parsed.repairs


@pytest.mark.parametrize(
    "text",
    [
        "As an AI, I cannot be sure, but I would pick a safe option.",
        "I think it is a hard one.",
        "I need more context: a, b or c?",
    ],
)
def test_6_words_are_not_option_letters(text: str) -> None:
    refused(text, Choice, "names none of")


@pytest.mark.parametrize("text", ["It is (C), not (A).", "Option A is wrong; B is right.", "A. or B. maybe"])
def test_6_two_options_named_and_none_marked_as_the_answer_are_ambiguous(text: str) -> None:
    refused(text, Choice, "names more than one of")


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("As an AI, I think the answer is (B).", "B"),
        ("I would say C) the second one", "C"),
        ("A careful read gives D.", "D"),
        ("Answer: E", "E"),
        ("F", "F"),
        ("**G**", "G"),
        ("It is not A. On reflection the answer is H", "H"),
        ("(B) looked right, but the answer: C", "C"),
        ("I. e. the answer: L", "L"),
    ],
)
def test_6_a_letter_counts_where_it_stands_as_an_option(text: str, letter: str) -> None:
    assert value(text, Choice).answer == letter


@pytest.mark.parametrize("text", ["A short summary of the review.", "Summary: it was fine."])
def test_8_prose_for_a_one_field_string_model_is_a_guess_refused(text: str) -> None:
    assert "reply with only the JSON object" in refused(text, Summary)


def test_8_code_for_a_one_field_string_model_is_no_summary() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="summary"):
        value("def f():\n    return {}\n", Summary)


@pytest.mark.parametrize(
    "text",
    ["A short summary.", "def f():\n    return {'a': 1}\n", 'Use {"name": "Ann"} as the body', "[1, 2, 3,]"],
)
def test_8_output_str_takes_the_whole_answer_and_says_so(text: str) -> None:
    parsed = parse(text, Text.model_json_schema(), text_output=True)
    assert parsed.value == {"answer": text.strip()}
    assert parsed.repairs == ("took the whole answer as the text output (output=str)",)


def test_8_output_str_refuses_the_json_object_it_asked_for_cut_off() -> None:
    with pytest.raises(ParseError, match="cut off"):
        parse('{"answer": "The first half of the summ', Text.model_json_schema(), text_output=True)


def test_a_javascript_fence_holding_only_json_is_the_answer() -> None:
    assert value('```javascript\n{"name": "Ann", "age": 41}\n```', Person) == Person(name="Ann", age=41)


def test_8_output_str_still_reads_the_json_object_it_asked_for() -> None:
    schema = Text.model_json_schema()
    assert parse('{"answer": "hi"}', schema, text_output=True).value == {"answer": "hi"}
    assert parse('```json\n{"answer": "hi"}\n```', schema, text_output=True).value == {"answer": "hi"}


def test_8_a_task_with_output_str_reads_prose_through_the_engine() -> None:
    import robustprompt as rp
    from robustprompt.testing import ScriptedModel

    task: rp.Task[str, str] = rp.Task("echo", input=str, output=str, instructions="Say it.")
    run = task.run("x", model=ScriptedModel(["x = {}  # an empty dict"]), policy=rp.Policy())
    assert run.output == "x = {}  # an empty dict"
    assert run.attempts[0].repairs == ("took the whole answer as the text output (output=str)",)


# ----------------------------------------------------------------------------- what a careful reader finds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So 6 * 7 = 42.\n\nThe final answer is \\boxed{42}", 42),
        ("First \\boxed{41}... no wait, it is \\boxed{42}.", 42),
        ("\\boxed{12{,}111}", 12111),
        ("\\boxed{\\$19}", 19),
        ("The total is 3 + 4.\nAnswer: 7", 7),
        ("answer is -3", -3),
        ("Answer: 12,111 apples", 12111),
        ("According to [1], there are 3 steps. The answer is 9.", 9),
    ],
)
def test_final_answer_conventions_for_a_number(text: str, expected: int) -> None:
    assert value(text, Answer).answer == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Thinking... the answer is true", True), ("[Yes] because ...", True), ("[Yes] hmm, no: [No]", False)],
)
def test_final_answer_conventions_for_a_yes_or_no(text: str, expected: bool) -> None:
    assert value(text, Flag).answer is expected


@pytest.mark.parametrize("text", ["According to [1], it is about 9 or 10.", "Step **3** of 5", "\\boxed{x+1}"])
def test_no_marked_number_is_no_answer(text: str) -> None:
    refused(text, Answer)


@pytest.mark.parametrize(
    ("text", "model", "expected"),
    [
        ('{"answer": "12,111"}', Answer, 12111),
        ('{"answer": "$19.50"}', Price, 19.5),
        ('{"answer": "1/5"}', Price, 0.2),
        ("Answer: $19.50", Price, 19.5),
        ('{"answer": "10/5"}', Answer, 2),
    ],
)
def test_numbers_written_for_people(text: str, model: type[BaseModel], expected: Any) -> None:
    assert value(text, model).answer == expected


@pytest.mark.parametrize("raw", ["1/5", "12,11", "1,2345", "$1$"])
def test_numbers_that_are_no_integer_stay_an_error(raw: str) -> None:
    with pytest.raises(Exception, match="answer"):
        Answer.model_validate(parse(json.dumps({"answer": raw}), Answer.model_json_schema()).value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("two", "TWO"), ("ONE: the first level", "ONE"), ("Three - the last", "THREE"), ("TWO (middle)", "TWO")],
)
def test_enum_values_by_case_and_with_their_description(raw: str, expected: str) -> None:
    assert value(json.dumps({"level": raw}), Level).level == expected


class Mood(BaseModel):
    mood: Literal["POS", "NEG", "MIX"] = Field(
        description="POS: good, great / happy; NEG: bad or poor; MIX - both good and bad, mixed"
    )


@pytest.mark.parametrize(("raw", "expected"), [("great", "POS"), ("Poor.", "NEG"), ("both good and bad", "MIX")])
def test_enum_aliases_given_in_the_field_description(raw: str, expected: str) -> None:
    parsed = parse(json.dumps({"mood": raw}), Mood.model_json_schema())
    assert parsed.value == {"mood": expected}
    assert parsed.repairs == (f"matched enum value '{raw}' to '{expected}' at 'mood'",)


def test_an_alias_two_values_share_is_an_error_not_a_pick() -> None:
    class Split(BaseModel):
        side: Literal["L", "R"] = Field(description="L: left, side; R: right, side")

    parsed = parse('{"side": "side"}', Split.model_json_schema())
    assert parsed.value == {"side": "side"}  # left alone: validation refuses it with the allowed values
    with pytest.raises(Exception, match="'L' or 'R'"):
        Split.model_validate(parsed.value)


def test_two_matching_enum_values_are_an_error_not_a_pick() -> None:
    schema = {
        "type": "object",
        "properties": {"kind": {"enum": ["One", "ONE"], "type": "string"}},
        "required": ["kind"],
    }
    assert parse('{"kind": "one"}', schema).value == {"kind": "one"}  # left alone: validation refuses it


@pytest.mark.parametrize(
    ("text", "expected", "repair"),
    [
        ("{name: Ann Smith, age: 41}", {"name": "Ann Smith", "age": 41}, "quoted an unquoted value"),
        ('{"name": "Ann" "age": 41}', {"name": "Ann", "age": 41}, "inserted a missing comma"),
        ('{"ok": TRUE, "x": Null}', {"ok": True, "x": None}, "replaced TRUE with true"),
        ('{"x": .25, "y": -.5, "z": 1.}', {"x": 0.25, "y": -0.5, "z": 1.0}, "wrote a number as JSON writes it"),
        ("{“name”: “Ann”}", {"name": "Ann"}, "replaced curly quotes with straight ones"),
        ('{\\"name\\": \\"Ann\\"}', {"name": "Ann"}, "unescaped double-escaped JSON"),
    ],
)
def test_syntax_a_careful_reader_repairs(text: str, expected: Any, repair: str) -> None:
    parsed = parse(text)
    assert parsed.value == expected
    assert repair in parsed.repairs


def test_json_written_as_a_string_is_decoded() -> None:
    parsed = parse(json.dumps(json.dumps({"name": "Ann", "age": 41})), PERSON)
    assert parsed.value == {"name": "Ann", "age": 41}
    assert parsed.repairs == ("decoded JSON written as a string at '$'",)


@pytest.mark.parametrize(
    ("text", "repair"),
    [
        ('{"Name": "Ann", "AGE": 41}', "renamed key 'Name' to 'name' at '$'"),
        ('{"person": {"name": "Ann", "age": 41}}', "took the object out of its wrapper key 'person' at '$'"),
        ('[{"name": "Ann", "age": 41}]', "took the one object out of its list at '$'"),
        ('Here you go: [{"name": "Ann", "age": 41}]', "took the one object out of its list at '$'"),
    ],
)
def test_wrapper_and_wrong_case_keys(text: str, repair: str) -> None:
    parsed = parse(text, PERSON)
    assert Person.model_validate(parsed.value) == Person(name="Ann", age=41)
    assert repair in parsed.repairs


def test_a_list_of_two_objects_for_one_is_left_for_validation() -> None:
    parsed = parse('[{"name": "Ann", "age": 41}, {"name": "Bob", "age": 7}]', PERSON)
    assert isinstance(parsed.value, list)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("[1, 2, 3,]", [1, 2, 3]), ("The numbers: [1, 2, 3]", [1, 2, 3]), ("```json\n[4, 5]\n```", [4, 5])],
)
def test_a_bare_array_for_a_wrapped_list_output(text: str, expected: list[int]) -> None:
    assert value(text, Numbers).answer == expected


# ----------------------------------------------------------------------------------------------- properties

keys = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(alphabet="abc xyz.!?", max_size=12)
objects = st.dictionaries(keys, st.recursive(scalars, lambda c: st.lists(c, max_size=3), max_leaves=6), min_size=1)
prose = st.text(alphabet="abcdefgh ABC,.!?:\n", max_size=40)
code_fence = st.sampled_from(["", "```python\nx = [1, 2]\nprint(x)\n```\n", "```sh\necho '{}'\n```\n"])


@given(objects, prose, prose, code_fence, st.sampled_from(["{}", "```json\n{}\n```", "```\n{}\n```"]))
def test_a_valid_answer_embedded_anywhere_is_found(
    answer: dict[str, Any], before: str, after: str, code: str, wrapper: str
) -> None:
    text = f"{before}\n{code}{wrapper.replace('{}', json.dumps(answer))}\n{after}"
    assert parse(text).value == answer


@given(objects, st.integers(min_value=1), st.data())
def test_no_fragment_of_a_broken_value_is_returned_as_the_whole(
    answer: dict[str, Any], seed: int, data: st.DataObject
) -> None:
    inner = json.dumps(answer)
    # An outer value broken by a stray quote in the middle, with the valid inner value nested in it.
    broken = '{"name": "Ann", "title": "Buyer of 27" monitors", "inner": ' + inner + "}"
    text = data.draw(prose) + broken + data.draw(prose)
    with pytest.raises(ParseError):
        parse(text)


@given(objects, st.data())
def test_a_cut_off_answer_is_never_a_value(answer: dict[str, Any], data: st.DataObject) -> None:
    text = json.dumps(answer)
    cut = data.draw(st.integers(min_value=1, max_value=len(text) - 1))
    try:
        parsed = parse(text[:cut])
    except ParseError:
        return
    assert parsed.value == json.loads(text[:cut])  # only a prefix that is itself complete JSON (a bare "1")
