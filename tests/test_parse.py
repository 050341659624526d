from __future__ import annotations

import contextlib
import enum
import json
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from robustprompt._parse import DEFAULT_MAX_CHARS, DEFAULT_MAX_DEPTH, Parsed, ParseError, parse

YES_NO = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"], "type": "string"}}, "required": ["answer"]}
SENTIMENT = {
    "type": "object",
    "properties": {"label": {"enum": ["positive", "negative", "neutral"], "type": "string"}},
    "required": ["label"],
}


class Label(str, enum.Enum):
    POSITIVE = "positive"
    NEGATIVE = "negative"


class Item(BaseModel):
    name: str
    qty: int


class Report(BaseModel):
    count: int
    score: float
    ok: bool
    label: Label
    maybe: int | None = None
    tags: list[str]
    items: list[Item]
    mode: Literal["fast", "slow"]
    extra: dict[str, int] = {}


class Tags(BaseModel):
    tags: list[str]


class Node(BaseModel):
    child: Node | None = None


REPORT = Report.model_json_schema()


def one_field(field: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"answer": field}, "required": ["answer"]}


# ------------------------------------------------------------------------------------------------ bounds


def test_defaults() -> None:
    assert (DEFAULT_MAX_CHARS, DEFAULT_MAX_DEPTH) == (1_000_000, 64)


def test_too_long_is_refused_with_size_and_limit() -> None:
    with pytest.raises(ParseError, match=r"2,000,000 characters.*1,000,000"):
        parse('"' + "x" * 1_999_998 + '"', max_chars=1_000_000)


@pytest.mark.parametrize("bomb", ["[" * 100_000, "{" * 100_000, '{"a":' * 100_000, "[" * 100_000 + "]" * 100_000])
def test_depth_bombs_fail_fast(bomb: str) -> None:
    with pytest.raises(ParseError, match="more than 64 levels deep"):
        parse(bomb)


@pytest.mark.parametrize(
    "text",
    [
        "Here:\n```json\n" + "[" * 100_000 + "\n```",
        "The answer is " + "{" * 100_000,
        "{'a': " + "[" * 100_000,
        " " * 10 + "[" * 70 + "]" * 70,
    ],
)
def test_depth_is_bounded_on_every_path(text: str) -> None:
    with pytest.raises(ParseError, match="levels deep"):
        parse(text, YES_NO)


def test_max_depth_is_the_number_of_open_brackets() -> None:
    assert parse("[[[1]]]", max_depth=3).value == [[[1]]]
    with pytest.raises(ParseError, match="more than 2 levels"):
        parse("[[[1]]]", max_depth=2)
    assert parse('["[[[[", {"a": "{{{{"}]', max_depth=2).value == ["[[[[", {"a": "{{{{"}]


@pytest.mark.parametrize(
    "junk",
    [
        "x" * 10_000_000,
        "see [note] and {x}, 'quoted' \"text\" // here " * 200_000,
        "]" * 10_000_000,
        '"\\' * 5_000_000,
        "\n```json\n" * 1_000_000,
        "{a b}" * 2_000_000,
    ],
)
def test_ten_megabytes_of_junk_fail_fast(junk: str) -> None:
    for schema in (None, YES_NO):
        with pytest.raises(ParseError):
            parse(junk, schema, max_chars=20_000_000)


def test_a_megabyte_of_truncated_json_is_refused_in_linear_time() -> None:
    text = "[" + "1, " * 300_000
    with pytest.raises(ParseError, match="cut off"):
        parse(text)


# ------------------------------------------------------------------------------------ fast path, extraction


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, "x", null, true]}', "[]", '"yes"', "42", "null", ' \n {"a": 1}\n'])
def test_clean_json_needs_no_repair(text: str) -> None:
    assert parse(text) == Parsed(json.loads(text), ())


def test_json_fence() -> None:
    parsed = parse('Here you go:\n```json\n{"a": 1}\n```\nAnything else?')
    assert parsed == Parsed({"a": 1}, ("extracted JSON from a ```json fence",))


def test_bare_fence_with_a_scalar() -> None:
    assert parse("```\n42\n```") == Parsed(42, ("extracted JSON from a ``` fence",))


def test_fence_whose_json_holds_a_fence() -> None:
    inner = {"code": "```python\nprint(1)\n```", "n": 1}
    parsed = parse(f"```json\n{json.dumps(inner)}\n```")
    assert parsed.value == inner


def test_unclosed_fence_of_truncated_json_is_refused() -> None:
    with pytest.raises(ParseError, match="cut off"):
        parse('```json\n{"a": [1, 2')


def test_object_in_prose() -> None:
    parsed = parse('Sure! The result is {"a": "} and {", "b": [1]} as requested.')
    assert parsed == Parsed({"a": "} and {", "b": [1]}, ("extracted JSON from surrounding text",))


def test_array_in_prose() -> None:
    assert parse("Result: [1, 2] done").value == [1, 2]


def test_object_schema_skips_bracketed_prose() -> None:
    parsed = parse('See [1] and [the docs]. {"answer": "no"}', YES_NO)
    assert parsed == Parsed({"answer": "no"}, ("extracted JSON from surrounding text",))


def test_a_fragment_of_broken_json_is_not_the_answer() -> None:
    with pytest.raises(ParseError, match="malformed"):
        parse('{"a": {"b": 1}, oops what}')


# ------------------------------------------------------------------------------------------- syntax repair


@pytest.mark.parametrize(
    ("text", "value", "repair"),
    [
        ('{"a": [1, 2,],}', {"a": [1, 2]}, "removed trailing comma"),
        ('{"a": 1, // note\n "b": 2}', {"a": 1, "b": 2}, "removed comment"),
        ('{"a": /* note */ 1}', {"a": 1}, "removed comment"),
        ("{'a': 'b'}", {"a": "b"}, "replaced single quotes with double quotes"),
        ("{a: 1, b_2: 2}", {"a": 1, "b_2": 2}, "quoted unquoted object key"),
        ('{"a": True, "b": None}', {"a": True, "b": None}, "replaced True with true"),
        ('{"a": True, "b": None}', {"a": True, "b": None}, "replaced None with null"),
        ('["line\nbreak"]', ["line\nbreak"], "escaped a control character in a string"),
        ('{"a":\u00a01}', {"a": 1}, "replaced whitespace that JSON does not allow"),
        ('{"a": 1 "b": 2}', {"a": 1, "b": 2}, "inserted a missing comma"),
    ],
)
def test_syntax_repairs(text: str, value: Any, repair: str) -> None:
    parsed = parse(text)
    assert parsed.value == value
    assert repair in parsed.repairs


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, 2, {"b": "hel',
        '{"a": 1, "b": ',
        '{"a": 1, "b"',
        '{"a": 1, "b',
        '{"a": 1,',
        '{"a": tr',
        "[1, 2.",
        '["caf\\u00',
        '["a\\',
        "{",
        '{"name": "Ann", "age": 4',
        '{"tags": ["a", "b"',
    ],
)
def test_cut_off_output_is_refused_not_closed(text: str) -> None:
    # What survives a cut may validate ("age": 4 of 41), so no part of it is returned.
    with pytest.raises(ParseError, match="cut off"):
        parse(text)


def test_repairs_leave_valid_strings_alone() -> None:
    strings = ['say "hi", then // go', "/* not a comment */", "[{]}", "it's", "True, None,", "\\", 'a\\"b']
    text = "{" + "".join(f"k{i}: {json.dumps(s)}," for i, s in enumerate(strings)) + "}"
    parsed = parse(text)
    assert parsed.value == {f"k{i}": s for i, s in enumerate(strings)}
    assert parsed.repairs == ("quoted unquoted object key", "removed trailing comma")


def test_single_quoted_strings_keep_their_quotes() -> None:
    assert parse("['it\\'s', 'say \"hi\"']").value == ["it's", 'say "hi"']


def test_each_kind_of_repair_is_reported_once() -> None:
    assert parse("[[1,],[2,],]").repairs == ("removed trailing comma",)


@pytest.mark.parametrize("text", ["[see above]", "{placeholder}", "[1, 2} "])
def test_what_cannot_be_repaired_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="reply with only"):
        parse(text)


# --------------------------------------------------------------------------------------------- strict JSON


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "contains NaN"),
        ("[Infinity]", "contains Infinity"),
        ("[-Infinity]", "contains -Infinity"),
        ("{'a': NaN,}", "contains NaN"),
        ('{"a": 1, "a": 2}', "key 'a' twice"),
        ('Here: {"a": {"b": 1, "b": 1}}', "key 'b' twice"),
        ("[" + "9" * 5000 + "]", "too many digits"),
        ("[1e400]", "too large"),
    ],
)
def test_strict_json(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse(text)


@pytest.mark.parametrize(("text", "message"), [("", "empty"), ("   ", "empty"), ("no json here", "no JSON found")])
def test_messages_tell_the_model_what_to_do(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=f"{message}.*reply with only the JSON"):
        parse(text)


def test_messages_name_the_expected_shape() -> None:
    with pytest.raises(ParseError, match="no JSON object found in the answer; reply with only the JSON object"):
        parse("nothing", REPORT)


# ------------------------------------------------------------------------------------------------ coercion


def test_value_that_fits_needs_no_repair() -> None:
    value = {
        "count": 1,
        "score": 2,
        "ok": False,
        "label": "negative",
        "maybe": None,
        "tags": [],
        "items": [{"name": "a", "qty": 1}],
        "mode": "fast",
        "extra": {"k": 1},
    }
    assert parse(json.dumps(value), REPORT) == Parsed(value, ())


def test_coercions_are_recorded_with_their_paths() -> None:
    text = json.dumps(
        {
            "count": "42",
            "score": " 3.5 ",
            "ok": "Yes",
            "label": "Positive.",
            "maybe": "7",
            "tags": "x",
            "items": [{"name": "a", "qty": 2.0}, {"name": "b", "qty": "3"}],
            "mode": "[Slow]",
            "extra": {"k": "5"},
            "unknown": "kept",
        }
    )
    parsed = parse(text, REPORT)
    assert parsed.value == {
        "count": 42,
        "score": 3.5,
        "ok": True,
        "label": "positive",
        "maybe": 7,
        "tags": ["x"],
        "items": [{"name": "a", "qty": 2}, {"name": "b", "qty": 3}],
        "mode": "slow",
        "extra": {"k": 5},
        "unknown": "kept",
    }
    assert parsed.repairs == (
        "coerced 'count' from string to integer",
        "coerced 'score' from string to number",
        "coerced 'ok' from string to boolean",
        "matched enum value 'Positive.' to 'positive' at 'label'",
        "coerced 'maybe' from string to integer",
        "wrapped single value in a list at 'tags'",
        "coerced 'items[0].qty' from float to integer",
        "coerced 'items[1].qty' from string to integer",
        "matched enum value '[Slow]' to 'slow' at 'mode'",
        "coerced 'extra.k' from string to integer",
    )
    assert Report.model_validate(parsed.value).label is Label.POSITIVE


@pytest.mark.parametrize(
    ("field", "raw", "value", "repair"),
    [
        ({"type": "integer"}, "3.0", 3, "coerced 'answer' from float to integer"),
        ({"type": "integer"}, '"-12"', -12, "coerced 'answer' from string to integer"),
        ({"type": "number"}, '"1e3"', 1000.0, "coerced 'answer' from string to number"),
        ({"type": "boolean"}, '"NO"', False, "coerced 'answer' from string to boolean"),
        ({"type": "boolean"}, '"true"', True, "coerced 'answer' from string to boolean"),
        ({"enum": ["yes", "no"]}, '"YES"', "yes", "matched enum value 'YES' to 'yes' at 'answer'"),
        ({"const": "on", "type": "string"}, '"**On**"', "on", "matched enum value '**On**' to 'on' at 'answer'"),
    ],
)
def test_scalar_coercions(field: dict[str, Any], raw: str, value: Any, repair: str) -> None:
    parsed = parse(f'{{"answer": {raw}}}', one_field(field))
    assert parsed == Parsed({"answer": value}, (repair,))


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ({"type": "integer"}, '"3.5"'),
        ({"type": "integer"}, '"many"'),
        ({"type": "number"}, "true"),
        ({"type": "string"}, "5"),
        ({"type": "array"}, "null"),
        ({"enum": ["a", "A"]}, '"a."'),
        ({"enum": ["yes", "no"]}, '"maybe"'),
    ],
)
def test_what_cannot_be_coerced_is_left_for_validation(field: dict[str, Any], raw: str) -> None:
    assert parse(f'{{"answer": {raw}}}', one_field(field)) == Parsed({"answer": json.loads(raw)}, ())


def test_bare_value_is_wrapped_in_the_one_property() -> None:
    assert parse('["a", "b"]', Tags.model_json_schema()) == Parsed(
        {"tags": ["a", "b"]}, ("wrapped the value in an object as 'tags'",)
    )
    assert parse('"a"', Tags.model_json_schema()) == Parsed(
        {"tags": ["a"]}, ("wrapped the value in an object as 'tags'", "wrapped single value in a list at 'tags'")
    )


def test_optional_picks_the_branch_coercion_fits() -> None:
    schema = one_field({"anyOf": [{"type": "integer"}, {"type": "null"}]})
    assert parse('{"answer": null}', schema) == Parsed({"answer": None}, ())
    assert parse('{"answer": "8"}', schema) == Parsed({"answer": 8}, ("coerced 'answer' from string to integer",))


def test_any_of_prefers_a_branch_the_value_already_fits() -> None:
    schema = one_field({"anyOf": [{"type": "integer"}, {"type": "string"}]})
    assert parse('{"answer": "8"}', schema) == Parsed({"answer": "8"}, ())


def test_root_array_paths() -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    assert parse('["1", 2]', schema) == Parsed([1, 2], ("coerced '$[0]' from string to integer",))


def test_recursive_and_broken_schemas_terminate() -> None:
    assert parse('{"child": {"child": null}}', Node.model_json_schema()).repairs == ()
    assert parse('"x"', Node.model_json_schema()).value == {"child": {"child": "x"}}
    looping = {"$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"}
    broken: dict[str, Any] = {"type": 5, "properties": [], "items": "x", "enum": "y", "$ref": 3, "anyOf": 1}
    for schema in (looping, broken, {"$ref": "#/nowhere"}, {"$ref": "https://example.com/s.json"}):
        assert parse('{"a": ["1"]}', schema) == Parsed({"a": ["1"]}, ())


# ------------------------------------------------------------------------------------------ answers in prose


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("[No] \n\nExplanation: ... Therefore, 17077 is a prime number.", "no"),
        ("Step 1... so the answer is [Yes].", "yes"),
        ("**Yes**", "yes"),
        ("Yes", "yes"),
        ("The answer: no, because yes-men agree.", "no"),
        ("Answer - YES", "yes"),
        ("Yes or no? The answer is **No**. On reflection: [Yes]", "yes"),
        ("Well no... The answer is yes", "yes"),
    ],
)
def test_enum_answer_in_prose(text: str, answer: str) -> None:
    assert parse(text, YES_NO) == Parsed({"answer": answer}, (f"read the answer '{answer}' from prose",))


def test_enum_answer_in_prose_through_a_ref() -> None:
    class Sentiment(BaseModel):
        label: Label

    parsed = parse("I think it is Positive", Sentiment.model_json_schema())
    assert parsed == Parsed({"label": "positive"}, ("read the answer 'positive' from prose",))


def test_unmarked_single_value_is_the_answer() -> None:
    assert parse("I think it is positive", SENTIMENT).value == {"label": "positive"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("positive or negative, hard to say", "names more than one of the allowed values"),
        ("I cannot tell; it is positively unclear", "names none of the allowed values"),
    ],
)
def test_unreadable_prose_answer_lists_the_allowed_values(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=f"{message} \\('positive', 'negative', 'neutral'\\)"):
        parse(text, SENTIMENT)


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ({"type": "integer"}, "+42", 42),
        ({"type": "number"}, " .5 ", 0.5),
        ({"type": "boolean"}, "No", False),
    ],
)
def test_plain_one_field_answer_in_prose(field: dict[str, Any], text: str, value: Any) -> None:
    shown = value if isinstance(value, str) else json.dumps(value)
    assert parse(text, one_field(field)) == Parsed({"answer": value}, (f"read the answer '{shown}' from prose",))


@pytest.mark.parametrize(
    ("field", "text"),
    [({"type": "integer"}, "about 42"), ({"type": "string"}, "[1, oops]"), ({"type": "string"}, "A short summary.")],
)
def test_plain_one_field_answer_that_cannot_be_read(field: dict[str, Any], text: str) -> None:
    with pytest.raises(ParseError):
        parse(text, one_field(field))


# -------------------------------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=20,
)
containers = json_values.filter(lambda value: isinstance(value, (dict, list)))


def with_trailing_commas(value: Any) -> str:
    if isinstance(value, list):
        return "[" + "".join(f"{with_trailing_commas(item)}," for item in value) + "]"
    if isinstance(value, dict):
        return "{" + "".join(f"{json.dumps(k)}: {with_trailing_commas(v)}," for k, v in value.items()) + "}"
    return json.dumps(value)


def has_filled_container(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value) or any(has_filled_container(v) for v in value.values())
    if isinstance(value, list):
        return bool(value) or any(has_filled_container(v) for v in value)
    return False


@given(json_values, st.booleans())
def test_dumped_json_parses_back_without_repairs(value: Any, ascii_only: bool) -> None:
    assert parse(json.dumps(value, ensure_ascii=ascii_only)) == Parsed(value, ())


@given(containers, st.sampled_from(["```json\n{}\n```", "Here is the answer: {} Hope this helps", "```\n{}"]))
def test_wrapped_json_parses_back_with_a_repair(value: Any, wrapper: str) -> None:
    parsed = parse(wrapper.replace("{}", json.dumps(value, ensure_ascii=False)))
    assert parsed.value == value
    assert parsed.repairs[0].startswith("extracted JSON from")


@given(containers)
def test_trailing_commas_are_removed(value: Any) -> None:
    parsed = parse(with_trailing_commas(value))
    assert parsed.value == value
    assert ("removed trailing comma" in parsed.repairs) is has_filled_container(value)


@given(containers, st.data())
def test_every_prefix_parses_or_raises_parse_error(value: Any, data: st.DataObject) -> None:
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans()))
    prefix = text[: data.draw(st.integers(min_value=0, max_value=len(text)))]
    with contextlib.suppress(ParseError):
        parse(prefix)


@given(st.text(), st.sampled_from([None, YES_NO, REPORT, one_field({"type": "integer"})]))
def test_arbitrary_text_raises_only_parse_error(text: str, schema: dict[str, Any] | None) -> None:
    with contextlib.suppress(ParseError):
        parse(text, schema)


@given(st.text(alphabet="{}[]\"':,/*\\ \nTrueNnaIfity-0.5e`#", max_size=60))
def test_json_like_junk_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse(text, max_depth=8)


@given(json_values, st.sampled_from([REPORT, YES_NO, Tags.model_json_schema(), Node.model_json_schema()]))
def test_coercion_never_fails_and_changes_nothing_unrecorded(value: Any, schema: dict[str, Any]) -> None:
    parsed = parse(json.dumps(value), schema)
    if not parsed.repairs:
        assert parsed.value == value
