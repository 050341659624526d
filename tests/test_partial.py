"""The incremental partial-JSON reader: what a prefix shows is always consistent with the final answer."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from robustprompt._partial import PartialJson

scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False)
leaves = scalars | st.text(max_size=12)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
roots = st.dictionaries(st.text(max_size=6), values, max_size=5) | st.lists(values, max_size=5)


def consistent(partial: Any, final: Any) -> bool:
    """`partial` claims nothing `final` does not hold: keys and items a subset, strings a prefix, scalars equal.
    Only the last string may be cut short, so an inner string must either equal or prefix the final one."""
    if isinstance(final, dict):
        return isinstance(partial, dict) and all(k in final and consistent(v, final[k]) for k, v in partial.items())
    if isinstance(final, list):
        return (
            isinstance(partial, list)
            and len(partial) <= len(final)
            and all(consistent(p, f) for p, f in zip(partial, final, strict=False))
        )
    if isinstance(final, str):
        return isinstance(partial, str) and final.startswith(partial)
    return partial == final and type(partial) is type(final)


def dumps(value: Any, ascii_only: bool, spaced: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, indent=2 if spaced else None)


@settings(deadline=None)
@given(roots, st.booleans(), st.booleans())
def test_every_prefix_shows_a_value_consistent_with_the_final_answer(
    value: Any, ascii_only: bool, spaced: bool
) -> None:
    text = dumps(value, ascii_only, spaced)
    reader = PartialJson()  # fed a character at a time: after each, what it holds is that prefix's reading
    for end in range(len(text)):
        reader.feed(text[end])
        assert not reader.broken
        snapshot = reader.snapshot()
        assert snapshot is None or consistent(snapshot, value), (text[: end + 1], snapshot)


@settings(deadline=None)
@given(roots, st.booleans(), st.lists(st.integers(1, 9), min_size=1))
def test_any_chunking_shows_a_monotone_sequence_ending_in_the_final_value(
    value: Any, ascii_only: bool, sizes: list[int]
) -> None:
    text = dumps(value, ascii_only, spaced=False)
    reader, previous, start = PartialJson(), None, 0
    while start < len(text):
        size = sizes[start % len(sizes)]
        reader.feed(text[start : start + size])
        start += size
        snapshot = reader.snapshot()
        if previous is not None:
            assert consistent(previous, snapshot), (previous, snapshot)  # nothing shown is ever taken back
        previous = snapshot
    assert reader.done and reader.snapshot() == value


@settings(deadline=None)
@given(roots)
def test_feeding_one_piece_or_char_by_char_gives_the_same_value(value: Any) -> None:
    text = json.dumps(value)
    whole, chars = PartialJson(), PartialJson()
    whole.feed(text)
    for ch in text:
        chars.feed(ch)
    assert whole.snapshot() == chars.snapshot() == value


def test_a_number_shows_only_once_a_delimiter_proves_it_complete() -> None:
    reader = PartialJson()
    reader.feed('{"count": 12')
    assert reader.snapshot() == {}
    reader.feed("3,")
    assert reader.snapshot() == {"count": 123}


def test_literals_and_keys_wait_for_their_end() -> None:
    reader = PartialJson()
    reader.feed('{"ok": tru')
    assert reader.snapshot() == {}
    reader.feed('e, "na')
    assert reader.snapshot() == {"ok": True}
    reader.feed('me":')
    assert reader.snapshot() == {"ok": True}
    reader.feed(' "Ad')
    assert reader.snapshot() == {"ok": True, "name": "Ad"}


def test_a_string_the_schema_fixes_to_an_enum_shows_only_complete() -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"$ref": "#/$defs/Label"},
            "tags": {"type": "array", "items": {"enum": ["a", "bb"]}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "$defs": {"Label": {"enum": ["positive", "negative"]}},
    }
    reader = PartialJson(schema)
    assert reader.feed("{")
    assert not reader.feed('"label": "posi')
    assert reader.snapshot() == {}
    reader.feed('tive", "tags": ["b')
    assert reader.snapshot() == {"label": "positive", "tags": []}
    reader.feed('b"], "note": "fr')
    assert reader.snapshot() == {"label": "positive", "tags": ["bb"], "note": "fr"}


def test_a_split_escape_or_surrogate_pair_shows_nothing_half_read() -> None:
    reader = PartialJson()
    reader.feed('{"s": "a\\')
    assert reader.snapshot() == {"s": "a"}
    reader.feed("ud83d")
    assert reader.snapshot() == {"s": "a"}  # a lone high surrogate is not a character
    reader.feed('\\ude00!"}')
    assert reader.snapshot() == {"s": "a\U0001f600!"}


def test_prose_and_a_code_fence_around_the_answer_are_skipped() -> None:
    reader = PartialJson()
    reader.feed('Here it is:\n```json\n{"a": [1, 2]}\n```')
    assert reader.done and reader.snapshot() == {"a": [1, 2]}


def test_malformed_json_stops_the_reader_without_inventing_values() -> None:
    reader = PartialJson()
    reader.feed('{"a": 1 "b": 2}')
    assert reader.broken and reader.snapshot() == {"a": 1}
