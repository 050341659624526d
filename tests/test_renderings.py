from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustprompt._errors import ConfigError
from robustprompt._prompt import Message, OutputMode, OutputSpec, render, render_completion_text, with_reask
from robustprompt._renderings import (
    INPUT_FORMATS,
    LAYOUTS,
    SPACE_VERSION,
    Configuration,
    choose_examples,
    format_input,
    render_configured,
)

SPEC = OutputSpec("out", {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]})
EXAMPLES = [('{"text":"Loved it"}', '{"label":"pos"}'), ('{"text":"Broke at once"}', '{"label":"neg"}')]
INPUT = '{"text":"Meh"}'


def rendered(layout: str, fmt: str, examples: list[tuple[str, str]] = EXAMPLES, input_json: str = INPUT):
    return render_configured(Configuration(layout, fmt), "Classify.", examples, input_json, SPEC, OutputMode.GRAMMAR)


def test_turns_json_is_todays_rendering() -> None:
    assert rendered("turns", "json") == render("Classify.", EXAMPLES, INPUT, SPEC, OutputMode.GRAMMAR)


def test_turns_text_shows_a_single_string_field_bare() -> None:
    prompt = rendered("turns", "text")
    assert prompt.system == "Classify."
    assert prompt.messages == (
        Message("user", "Input:\nLoved it"),
        Message("assistant", '{"label":"pos"}'),
        Message("user", "Input:\nBroke at once"),
        Message("assistant", '{"label":"neg"}'),
        Message("user", "Input:\nMeh"),
    )
    assert prompt.text is None


def test_listed_puts_the_examples_in_the_system_text_and_the_input_alone_in_the_turn() -> None:
    prompt = rendered("listed", "text")
    assert prompt.system == (
        'Classify.\n\nExamples:\n\nInput: Loved it\nOutput: {"label":"pos"}\n\n'
        'Input: Broke at once\nOutput: {"label":"neg"}'
    )
    assert prompt.messages == (Message("user", "Input: Meh"),)


def test_completion_is_one_text_and_one_user_turn() -> None:
    prompt = rendered("completion", "text")
    body = (
        'Input: Loved it\nOutput: {"label":"pos"}\n\nInput: Broke at once\nOutput: {"label":"neg"}\n\n'
        "Input: Meh\nOutput:"
    )
    assert prompt.system == "Classify."
    assert prompt.messages == (Message("user", body),)
    assert prompt.text == f"Classify.\n\n{body}"


def test_completion_without_examples_and_with_the_schema_in_prompt() -> None:
    prompt = render_configured(Configuration("completion", "json"), "Classify.", [], INPUT, SPEC, OutputMode.PROMPTED)
    assert prompt.text is not None
    assert prompt.text.startswith("Classify.\n\nReply with only a JSON object")
    assert prompt.text.endswith('\n\nInput: {"text":"Meh"}\nOutput:')


def test_text_format_per_shape() -> None:
    assert format_input("text", '"just a string"') == "just a string"
    assert format_input("text", '{"text":"two\\nlines"}') == "two\nlines"  # the only field: bare, even multi-line
    assert format_input("text", '{"name":"Ann","age":31,"ok":true}') == "name: Ann\nage: 31\nok: true"
    assert format_input("text", '{"name":"Ann","tags":["a","b"],"where":{"x":1}}') == (
        'name: Ann\ntags: ["a","b"]\nwhere: {"x":1}'
    )
    # A value that would not read back the same bare is quoted: a line break, edge spaces, the empty string.
    assert format_input("text", '{"a":"x\\ny","b":" padded","c":""}') == 'a: "x\\ny"\nb: " padded"\nc: ""'
    assert format_input("text", "[1,2]") == "[1,2]"
    assert format_input("text", "7") == "7"
    assert format_input("json", '{"a":1}') == '{"a":1}'


def test_reask_keeps_the_completion_text_open_for_the_next_answer() -> None:
    base = rendered("completion", "text")
    again = with_reask(base, '{"label":', ["not JSON"], max_answer_chars=100, max_errors=3)
    assert again.text is not None and base.text is not None
    assert again.text.startswith(base.text + ' {"label":')
    assert "- not JSON" in again.text and again.text.endswith("\n\nOutput:")


def test_base_models_linearise_the_listed_layout() -> None:
    text = render_completion_text(rendered("listed", "text"))
    assert text.endswith("\nInput: Meh\nOutput:")


def test_similar_examples_are_chosen_by_word_overlap_nearest_last() -> None:
    pool = [
        ('{"text":"the battery died fast"}', "{}"),
        ('{"text":"soft fabric"}', "{}"),
        ('{"text":"battery lasts long, great"}', "{}"),
    ]
    assert choose_examples("similar", 2, pool, '{"text":"battery is great"}') == [0, 2]
    assert choose_examples("similar", 5, pool, '{"text":"nothing shared"}') == [2, 1, 0]  # ties: declared order
    assert choose_examples("reversed", 4, pool, INPUT) == [2, 1, 0]
    assert choose_examples("none", 4, pool, INPUT) == []


def test_nearest_examples_are_ranked_by_the_models_embeddings_nearest_last() -> None:
    pool = [('{"text":"superb"}', "{}"), ('{"text":"dreadful"}', "{}"), ('{"text":"fine"}', "{}")]
    axes = {"superb": (1.0, 0.0), "fine": (0.6, 0.4), "dreadful": (0.0, 1.0), "terrible": (0.1, 0.9)}

    def embed(texts: Sequence[str]) -> list[list[float]]:
        return [list(axes[t]) for t in texts]

    # No word is shared, so word overlap ranks nothing; the vectors put "dreadful" nearest "terrible".
    assert choose_examples("nearest", 2, pool, '{"text":"terrible"}', embed) == [2, 1]
    assert choose_examples("similar", 2, pool, '{"text":"terrible"}') == [1, 0]  # all tied: declared order
    with pytest.raises(ConfigError, match="'similar'"):
        choose_examples("nearest", 2, pool, '{"text":"terrible"}')
    config = Configuration("turns", "text", "nearest", 2)
    assert config.label == "turns/text, examples nearest-2" and Configuration.from_json(config.to_json()) == config


def test_a_configuration_can_name_the_model_whose_embeddings_rank_its_examples() -> None:
    config = Configuration("turns", "text", "nearest", 3, embedder="local:gemma3-270m")
    assert config.label == "turns/text, examples nearest-3 by local:gemma3-270m"
    assert Configuration.from_json(config.to_json()) == config and config.to_json()["embedder"] == "local:gemma3-270m"
    own = Configuration("turns", "text", "nearest", 3)
    assert "embedder" not in own.to_json() and own.key != config.key  # a record from before embedders reads the same
    with pytest.raises(ConfigError, match="only for the example choice 'nearest'"):
        Configuration("turns", "text", "similar", 3, embedder="local:gemma3-270m")
    with pytest.raises(ConfigError, match="is a model name"):
        Configuration.from_json({**config.to_json(), "embedder": 7})


def test_configuration_round_trips_and_names_its_versions() -> None:
    config = Configuration("completion", "text", "similar", 2, OutputMode.GRAMMAR, pool=tuple(EXAMPLES))
    data = config.to_json()
    assert data["layout_version"] == LAYOUTS["completion"][0]
    assert Configuration.from_json(json.loads(json.dumps(data))) == config
    assert config.key == Configuration.from_json(data).key
    assert config.label == "completion/text, examples similar-2, 2 selected example(s), mode grammar"


def test_a_changed_member_version_is_refused_when_read_back() -> None:
    data = Configuration("listed", "json").to_json()
    data["layout_version"] = 0
    with pytest.raises(ConfigError, match="adapt again"):
        Configuration.from_json(data)


def test_unknown_members_are_config_errors_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="turns, listed, completion"):
        Configuration("chat")
    with pytest.raises(ConfigError, match="layout/input_format"):
        Configuration.parse("completion")


def test_the_space_version_lists_every_member() -> None:
    for name in (*LAYOUTS, *INPUT_FORMATS, "similar", "nearest"):
        assert f"{name}@" in SPACE_VERSION


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(
    fields=st.dictionaries(
        st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        st.one_of(_TEXT, st.integers(), st.lists(_TEXT, max_size=3)),
        min_size=1,
        max_size=4,
    ),
    other=_TEXT,
)
def test_every_rendering_shows_every_field_and_never_puts_the_input_in_the_instructions(
    fields: dict[str, object], other: str
) -> None:
    input_json = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    different = json.dumps({"other": other}, ensure_ascii=False)
    for layout in LAYOUTS:
        for fmt in INPUT_FORMATS:
            for mode in (OutputMode.GRAMMAR, OutputMode.PROMPTED):
                config = Configuration(layout, fmt)
                prompt = render_configured(config, "Classify.", EXAMPLES, input_json, SPEC, mode)
                # The system text (the instructions) reads the same whatever the input is.
                assert prompt.system == render_configured(config, "Classify.", EXAMPLES, different, SPEC, mode).system
                shown = prompt.messages[-1].content
                assert prompt.text is None or prompt.text.endswith(shown)
                for name, value in fields.items():
                    if fmt == "text" and len(fields) > 1:
                        assert f"{name}: " in shown
                    pieces = [value] if isinstance(value, str) else [json.dumps(value, ensure_ascii=False)]
                    if isinstance(value, list):
                        pieces = [json.dumps(v, ensure_ascii=False)[1:-1] for v in value]
                    for piece in pieces:
                        escaped = json.dumps(piece, ensure_ascii=False)[1:-1] if isinstance(piece, str) else piece
                        assert piece in shown or escaped in shown
