"""Copied spans: which output fields the examples copy from their input, and what a new input offers them."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

import robustprompt as rp
from robustprompt._adapt import ScoringCase, _Search, _Tally, candidates, plan, plan_with_spans
from robustprompt._prompt import OutputMode, Prompt
from robustprompt._renderings import Configuration
from robustprompt._spans import copied_fields, copied_schema
from robustprompt.testing import FunctionModel
from tests.models import RESIDENTS, Sentence, residents_task
from tests.models import Resident as Person


class Labelled(BaseModel):
    name: str
    mood: Literal["happy", "sad"]


PEOPLE = RESIDENTS
SCHEMA = Person.model_json_schema()


def pair(text: str, output: BaseModel) -> tuple[str, str]:
    return json.dumps({"text": text}), output.model_dump_json()


POOL = [pair(text, person) for text, person in PEOPLE]


def test_fields_every_example_copies_are_found_with_their_longest_value() -> None:
    assert copied_fields(SCHEMA, POOL) == {"name": 2, "age": 0, "city": 1}
    # One example whose name is not written in its input: the name is not copied, the rest still are.
    renamed = [*POOL, pair("Ms Ito, 41, is from Kyoto.", Person(name="Yui Ito", age=41, city="Kyoto"))]
    assert copied_fields(SCHEMA, renamed) == {"age": 0, "city": 1}
    # A number that is only part of a word or a decimal is not written as that number.
    decimal = [*POOL, pair("Li Na, 3.5 decades old, in Wuhan.", Person(name="Li Na", age=35, city="Wuhan"))]
    assert "age" not in copied_fields(SCHEMA, decimal)
    assert copied_fields(SCHEMA, []) == {}


def test_a_field_that_is_already_narrowed_is_not_copied() -> None:
    pool = [pair("Happy Anna Weber.", Labelled(name="Anna Weber", mood="happy"))]
    assert copied_fields(Labelled.model_json_schema(), pool) == {"name": 2}


def test_a_new_input_offers_runs_of_its_words_and_its_numbers() -> None:
    before = json.dumps(SCHEMA)
    schema = copied_schema(SCHEMA, POOL, json.dumps({"text": "Our hire, Tom Becker (29), is from Leeds-on-Sea."}))
    assert schema is not None and json.dumps(SCHEMA) == before  # the task's schema is left as it was
    names = schema["properties"]["name"]["enum"]
    assert "Tom Becker" in names and "Our hire, Tom" in names  # up to one word longer than any example's name
    assert "Our hire, Tom Becker" not in names
    assert "Leeds" in schema["properties"]["city"]["enum"]  # a hyphen splits words: Leeds stays reachable
    assert schema["properties"]["age"]["enum"] == [29]
    assert schema["properties"]["age"]["type"] == "integer"


def test_numbers_are_read_as_written() -> None:
    schema = copied_schema(SCHEMA, POOL, json.dumps({"text": "Aged 20-30, -5 points, 3.5 stars, room A4, the 1990s"}))
    assert schema is not None and schema["properties"]["age"]["enum"] == [20, 30, -5, 1990]


def test_an_input_offering_nothing_leaves_the_field_as_it_was() -> None:
    schema = copied_schema(SCHEMA, POOL, json.dumps({"text": "..."}))
    assert schema is not None and schema["properties"] == SCHEMA["properties"]


def test_nothing_copied_gives_no_schema() -> None:
    pool = [pair("a happy day", Labelled(name="Someone", mood="happy"))]
    assert copied_schema(Labelled.model_json_schema(), pool, json.dumps({"text": "x"})) is None


WORDS = st.text(alphabet="abcXYZé", min_size=1, max_size=6)
SEPARATORS = st.sampled_from([" ", ", ", " (", ") ", "-", "'", ". "])


@st.composite
def sentence(draw: st.DrawFn) -> tuple[str, list[str]]:
    words = draw(st.lists(WORDS, min_size=1, max_size=12))
    text = words[0]
    for word in words[1:]:
        text += draw(SEPARATORS) + word
    return draw(st.sampled_from(["", "  "])) + text + draw(st.sampled_from(["", ".", " !"])), words


@given(sentence(), st.data())
def test_every_span_offered_is_the_input_as_written_and_the_examples_own_value_is_offered(
    drawn: tuple[str, list[str]], data: st.DataObject
) -> None:
    text, words = drawn
    start = data.draw(st.integers(0, len(words) - 1))
    stop = data.draw(st.integers(start + 1, min(len(words), start + 3)))
    # The example's value: its words start..stop as the text writes them.
    found = list(re.finditer(r"\w+", text))
    value = text[found[start].start() : found[stop - 1].end()]
    example = pair(text, Labelled(name=value, mood="happy"))
    schema = copied_schema(Labelled.model_json_schema(), [example], example[0])
    assert schema is not None
    offered = schema["properties"]["name"]["enum"]
    assert value in offered
    for span in offered:
        assert span in text and span == span.strip() and re.fullmatch(r"\w.*\w|\w", span, re.DOTALL)
        assert len(re.findall(r"\w+", span)) <= stop - start + 1


@given(st.integers(-10_000, 10_000), st.sampled_from(["is {}.", "({}) ok", "at {}, fine", "{}-year-old"]))
def test_a_number_written_in_the_text_is_offered(number: int, template: str) -> None:
    text = "Zoe " + template.format(number)
    example = pair(text, Person(name="Zoe", age=number, city="Zoe"))
    schema = copied_schema(SCHEMA, [example], example[0])
    assert schema is not None and number in schema["properties"]["age"]["enum"]


def test_the_configuration_carries_spans_through_its_record() -> None:
    config = Configuration("turns", "text", "all", mode=OutputMode.GRAMMAR, spans=True)
    assert config.label.endswith("spans copied from the input")
    data = config.to_json()
    assert data["spans"] is True and Configuration.from_json(data) == config
    assert "spans" not in Configuration("turns", "text").to_json()  # a record from before spans reads the same
    assert config.key != Configuration("turns", "text", "all", mode=OutputMode.GRAMMAR).key
    with pytest.raises(rp.ConfigError, match="new version"):
        Configuration.from_json({**data, "spans_version": 0})
    with pytest.raises(rp.ConfigError, match="True or False"):
        Configuration("turns", "text", spans="yes")  # type: ignore[arg-type]


def people_task(tmp_path: Path) -> rp.Task[Sentence, Person]:
    task = residents_task()
    task.adaptations = tmp_path / "robustprompt.adapt.json"
    return task


def mood_task(*examples: tuple[str, str, Literal["happy", "sad"]]) -> rp.Task[Sentence, Labelled]:
    return rp.Task(
        "mood",
        input=Sentence,
        output=Labelled,
        instructions="Name and mood.",
        examples=[rp.Example(Sentence(text=t), Labelled(name=n, mood=m)) for t, n, m in examples],
    )


def answer_for(prompt: Prompt) -> dict[str, Any]:
    text = json.loads((prompt.text or prompt.messages[-1].content).rsplit("Input:", 1)[1].split("\nOutput:")[0])
    return json.loads(next(o for i, o in POOL if json.loads(i)["text"] == text or json.loads(i) == text))


def garbler(prompt: Prompt) -> str:
    """Right when the decoding schema holds the name to the input's words (as a grammar would), else it garbles
    the first name: the shape of a small model's copying error."""
    right = answer_for(prompt)
    names = prompt.output.schema["properties"]["name"].get("enum")
    if names is None:
        right["name"] = "X" + right["name"][1:]
    return json.dumps(right)


def test_the_decoding_schema_holds_spans_and_the_answer_is_validated_by_the_tasks_own(tmp_path: Path) -> None:
    task = people_task(tmp_path)
    model = FunctionModel(lambda p: '{"name": "Prosso Silva", "age": 23, "city": "Recife"}')
    config = Configuration("turns", "json", spans=True)
    run = task.run(
        Sentence(text="Yesterday Paulo Silva (23) flew home."), model=model, policy=rp.Policy(configuration=config)
    )
    decoded = model.prompts[0].output.schema["properties"]
    assert "Paulo Silva" in decoded["name"]["enum"] and decoded["age"]["enum"] == [23]
    # A backend that does not decode by the schema can still answer outside it: the task's schema decides.
    assert run.output.name == "Prosso Silva" and run.configuration == config.label


def test_spans_on_a_task_that_copies_nothing_is_refused_with_the_fix(tmp_path: Path) -> None:
    task = mood_task(("a happy day", "Someone", "happy"))
    with pytest.raises(rp.ConfigError, match="drop spans="):
        task.run(
            Sentence(text="x"),
            model=FunctionModel(lambda p: "{}"),
            policy=rp.Policy(configuration=Configuration(spans=True)),
        )


def test_adapt_tries_the_winner_with_copied_spans_and_keeps_it_when_it_scores_better(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = people_task(tmp_path)
    adaptation = task.adapt(FunctionModel(garbler), budget=200, progress=None)
    assert "then the best with copied spans on 4" in capsys.readouterr().err
    assert adaptation.chosen.spans and adaptation.best.correct == adaptation.best.n == 4
    without = [s for s in adaptation.candidates if not s.configuration.spans]
    assert max(s.correct for s in without) == 0
    # The record is loaded by the next call, which decodes by the spans of its own input.
    model = FunctionModel(garbler)
    run = task.run(Sentence(text=PEOPLE[1][0]), model=model)
    assert run.output == PEOPLE[1][1] and "spans copied from the input" in (run.configuration or "")


def test_a_tie_keeps_the_winner_without_spans(tmp_path: Path) -> None:
    adaptation = people_task(tmp_path).adapt(
        FunctionModel(lambda p: json.dumps(answer_for(p))), budget=200, progress=False, record=False
    )
    assert not adaptation.chosen.spans
    assert any(s.configuration.spans and s.correct == s.n == 4 for s in adaptation.candidates)


def test_no_spans_step_when_the_examples_copy_nothing_or_the_budget_is_small(tmp_path: Path) -> None:
    task = mood_task(("a happy day", "Someone", "happy"), ("a sad day", "Nobody", "sad"))
    adaptation = task.adapt(
        FunctionModel(lambda p: '{"name": "Someone", "mood": "happy"}'), progress=False, record=False
    )
    assert not any(s.configuration.spans for s in adaptation.candidates)
    small = people_task(tmp_path).adapt(FunctionModel(garbler), budget=7, progress=False, record=False)
    assert not any(s.configuration.spans for s in small.candidates)
    assert len(candidates(FunctionModel(garbler), 3)) == len(small.candidates) + small.untried


def test_an_input_too_long_to_list_leaves_the_field_free() -> None:
    long = " ".join(f"w{i}" for i in range(200)) + " is 40 in Rome"
    schema = copied_schema(SCHEMA, POOL, json.dumps({"text": long}))
    assert schema is not None
    assert "enum" not in schema["properties"]["name"] and "enum" not in schema["properties"]["city"]
    assert schema["properties"]["age"]["enum"][-1] == 40  # a short list is still given


def test_a_value_json_must_escape_is_never_offered() -> None:
    # Grammar converters do not all escape a quote or a backslash inside an enum's literals.
    schema = copied_schema(SCHEMA, POOL, json.dumps({"text": 'Dwayne "Rock" Johnson, 50, C:\\Temp\nOslo'}))
    assert schema is not None
    names = schema["properties"]["name"]["enum"]
    assert "Dwayne" in names and "Rock" in names and "Temp" in names and "Oslo" in schema["properties"]["city"]["enum"]
    assert not any('"' in n or "\\" in n or "\n" in n for n in names)
    quoted = [pair('Yui "Sunny" Ito is 41, in Kyoto.', Person(name='Yui "Sunny" Ito', age=41, city="Kyoto"))]
    assert "name" not in copied_fields(SCHEMA, quoted)  # an example value that cannot be offered is not copied


def test_words_keep_their_combining_marks() -> None:
    devanagari = "राजेश कुमार, 40, दिल्ली"
    decomposed = unicodedata.normalize("NFD", "José Núñez, 40, Logroño")
    for text, city in ((devanagari, "दिल्ली"), (decomposed, unicodedata.normalize("NFD", "Logroño"))):
        schema = copied_schema(SCHEMA, POOL, json.dumps({"text": text}, ensure_ascii=False))
        assert schema is not None and city in schema["properties"]["city"]["enum"]


def test_a_digit_run_too_long_for_a_quantity_is_not_a_number() -> None:
    schema = copied_schema(SCHEMA, POOL, json.dumps({"text": "Ann, id " + "9" * 5000 + ", is 7"}))
    assert schema is not None and schema["properties"]["age"]["enum"] == [7]


@given(st.integers(1, 120), st.integers(1, 40), st.integers(1, 2000), st.booleans())
def test_the_spans_step_is_planned_within_the_budget(candidates: int, cases: int, budget: int, copies: bool) -> None:
    rounds, refining = plan_with_spans(candidates, cases, budget, copies)
    assert sum(a * c for a, c in rounds) + refining <= budget
    if refining:
        assert copies and refining == sum(c for _, c in rounds) >= 4 and budget >= 2 * cases
    else:
        assert rounds == plan(candidates, cases, budget)


def test_the_spans_step_wins_on_accuracy_or_validity_never_on_tokens_or_latency() -> None:
    configs = [Configuration("turns", "text", mode=OutputMode.GRAMMAR), Configuration("listed", "text")]
    cases = [ScoringCase(json.dumps({"text": str(i)}), {}) for i in range(4)]
    search = _Search(configs, cases, 100, copies=True)
    for number in range(len(search.rounds)):
        search.jobs(number)
    search.tallies[0] = _Tally(correct=3, valid=4, n=4, prompt_tokens=400, latency=4.0, live=4)
    search.tallies[1] = _Tally(correct=2, valid=4, n=4, prompt_tokens=400, latency=4.0, live=4)
    jobs = search.refinement()
    assert [case for _, case in jobs] == cases and search.configs[-1] == replace(configs[0], spans=True)
    search.tallies[-1] = _Tally(correct=3, valid=4, n=4, prompt_tokens=100, latency=0.4, live=4)  # same score, cheaper
    assert search.winner() == 0
    search.tallies[-1] = _Tally(correct=4, valid=4, n=4, prompt_tokens=900, latency=9.0, live=4)  # better, dearer
    assert search.winner() == 2
