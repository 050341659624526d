"""The response cache: served only for the same task, model, settings and input, within the TTL, and only when the
stored output still validates; safe under threads and tasks; switched off by ROBUSTPROMPT_NO_CACHE."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import robustprompt as rp
from robustprompt._cache import CACHED_NOTE, NO_CACHE_ENV, Cache, enabled
from robustprompt._prompt import Prompt
from robustprompt.testing import FunctionModel, ScriptedModel
from tests.models import Person, Review, Sentiment, classify_task


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def echo_label(prompt: Prompt) -> str:
    """Answers with the label named in the review text ("... positive"), so each input has its own answer."""
    return json.dumps({"label": prompt.messages[-1].content.split()[-1].strip('"}')})


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache.sqlite")


@pytest.fixture
def model() -> FunctionModel:
    return FunctionModel(echo_label)


def served(run: rp.Run[Any]) -> bool:
    return any(note.startswith(CACHED_NOTE) for note in run.notes)


def test_a_repeated_call_is_served_from_the_cache_without_a_request(cache: Cache, model: FunctionModel) -> None:
    task = classify_task()
    first = task.run(Review(text="very positive"), model=model, cache=cache)
    second = task.run(Review(text="very positive"), model=model, cache=cache)
    assert len(model.prompts) == 1
    assert not served(first) and served(second)
    assert second.output == first.output == Sentiment(label="positive")
    assert second.ok and second.usage == rp.Usage(0, 0) and second.model == model.name
    assert second.mode is first.mode and second.fingerprint == task.fingerprint


def test_another_input_is_a_miss(cache: Cache, model: FunctionModel) -> None:
    task = classify_task()
    assert task(Review(text="so positive"), model=model, cache=cache) == Sentiment(label="positive")
    assert task(Review(text="so negative"), model=model, cache=cache) == Sentiment(label="negative")
    assert len(model.prompts) == 2


def test_without_a_cache_nothing_is_kept(cache: Cache, model: FunctionModel) -> None:
    task = classify_task()
    task(Review(text="a positive"), model=model)
    run = task.run(Review(text="a positive"), model=model, cache=cache)
    assert not served(run) and len(model.prompts) == 2


def test_entries_expire_after_the_ttl(tmp_path: Path, model: FunctionModel) -> None:
    clock = Clock()
    cache = Cache(tmp_path / "c.sqlite", ttl=60, clock=clock)
    task, review = classify_task(), Review(text="quite positive")
    task(review, model=model, cache=cache)
    clock.now += 59
    assert served(task.run(review, model=model, cache=cache))
    clock.now += 1
    assert not served(task.run(review, model=model, cache=cache))  # expired: asked again, and stored afresh
    assert served(task.run(review, model=model, cache=cache))
    assert len(model.prompts) == 2


@pytest.mark.parametrize("ttl", [0, -5])
def test_a_ttl_must_be_positive(tmp_path: Path, ttl: float) -> None:
    with pytest.raises(rp.ConfigError, match="ttl must be > 0"):
        Cache(tmp_path / "c.sqlite", ttl=ttl)


def test_a_changed_task_is_never_served_an_old_answer(cache: Cache, model: FunctionModel) -> None:
    review = Review(text="really positive")
    classify_task()(review, model=model, cache=cache)
    changed = [
        classify_task(instructions="Classify the review's sentiment."),
        classify_task(examples=[rp.Example(Review(text="Fine"), Sentiment(label="neutral"))]),
        classify_task(version="2"),
    ]
    for task in changed:
        assert not served(task.run(review, model=model, cache=cache))
    assert len(model.prompts) == 1 + len(changed)


def test_other_settings_a_forced_mode_or_another_model_are_misses(cache: Cache, model: FunctionModel) -> None:
    task, review = classify_task(), Review(text="truly positive")
    task(review, model=model, cache=cache)
    warmer = rp.Model(model.name, model.profile, rp.Settings(temperature=0.7), model.backend, key=model.key)
    seeded = rp.Model(model.name, model.profile, rp.Settings(seed=7), model.backend, key=model.key)
    forced = rp.Policy(mode=rp.OutputMode.PROMPTED)
    assert not served(task.run(review, model=warmer, cache=cache))
    assert not served(task.run(review, model=seeded, cache=cache))
    assert not served(task.run(review, model=model, policy=forced, cache=cache))
    other = FunctionModel(echo_label)  # same name, another backend: another key
    assert not served(task.run(review, model=other, cache=cache))
    # The settings that do not shape the answer do not split the cache.
    patient = rp.Model(model.name, model.profile, rp.Settings(timeout=300), model.backend, key=model.key)
    assert served(task.run(review, model=patient, cache=cache))


@pytest.mark.parametrize("switch", ["1", "true", "yes"])
def test_the_environment_switch_turns_every_cache_off(
    cache: Cache, model: FunctionModel, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    task, review = classify_task(), Review(text="fully positive")
    task(review, model=model, cache=cache)
    monkeypatch.setenv(NO_CACHE_ENV, switch)
    assert not served(task.run(review, model=model, cache=cache))  # not read
    task(Review(text="fully negative"), model=model, cache=cache)
    monkeypatch.delenv(NO_CACHE_ENV)
    assert not served(task.run(Review(text="fully negative"), model=model, cache=cache))  # nor written
    assert served(task.run(review, model=model, cache=cache))


@pytest.mark.parametrize(("value", "on"), [("", True), ("0", True), ("1", False), ("anything", False)])
def test_which_values_of_the_switch_turn_the_cache_off(cache: Cache, value: str, on: bool) -> None:
    assert (enabled(cache, {NO_CACHE_ENV: value}) is cache) is on
    assert enabled(cache, {}) is cache and enabled(None, {}) is None


def test_only_valid_outputs_are_stored(cache: Cache) -> None:
    task, review = classify_task(), Review(text="x")
    with pytest.raises(rp.OutputError):
        task.run(review, model=ScriptedModel(['{"label": "great"}'] * 2), cache=cache)
    with pytest.raises(rp.RateLimitError):
        task.run(review, model=ScriptedModel([rp.RateLimitError("slow down")]), policy=rp.Policy(transport_retries=0))
    with sqlite3.connect(cache.path) as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (0,)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("output", "{not json"),
        ("output", '{"label": "ecstatic"}'),  # JSON, but no longer a valid output
        ("output", "[]"),
        ("mode", "telepathy"),
        ("stored", "yesterday"),
    ],
)
def test_a_damaged_row_is_a_miss_not_an_answer(cache: Cache, model: FunctionModel, column: str, value: str) -> None:
    task, review = classify_task(), Review(text="clearly positive")
    task(review, model=model, cache=cache)
    with sqlite3.connect(cache.path) as db:
        db.execute(f"UPDATE answers SET {column} = ?", (value,))
    run = task.run(review, model=model, cache=cache)
    assert not served(run) and run.output == Sentiment(label="positive")
    assert served(task.run(review, model=model, cache=cache))  # the fresh answer replaced the damaged row


def test_a_failing_cache_file_only_misses(cache: Cache, model: FunctionModel, caplog: pytest.LogCaptureFixture) -> None:
    task, review = classify_task(), Review(text="surely positive")
    task(review, model=model, cache=cache)
    with sqlite3.connect(cache.path) as db:
        db.execute("DROP TABLE answers")
    with caplog.at_level(logging.WARNING, logger="robustprompt"):
        run = task.run(review, model=model, cache=cache)
    assert not served(run) and run.output == Sentiment(label="positive")
    assert [r.getMessage().split(":")[1].strip() for r in caplog.records] == [
        "could not read the response cache " + str(cache.path),
        "could not write the response cache " + str(cache.path),
    ]


def test_a_stored_answer_is_checked_again_against_the_task(cache: Cache) -> None:
    """A check is code: the fingerprint knows its name, not what it does today. A stored answer that fails the
    check as it stands now is not served."""
    label, strict = ["neutral"], [False]
    model = FunctionModel(lambda _: json.dumps({"label": label[0]}))

    def decided(s: Sentiment) -> str | None:
        return "take a side" if strict[0] and s.label == "neutral" else None

    task, review = classify_task(checks=[decided]), Review(text="hmm")
    task(review, model=model, cache=cache)
    strict[0], label[0] = True, "positive"
    run = task.run(review, model=model, cache=cache)
    assert not served(run) and run.output == Sentiment(label="positive")


def test_a_fallbacks_answer_is_stored_under_the_fallback(cache: Cache, model: FunctionModel) -> None:
    task, review = classify_task(), Review(text="mostly positive")
    dead = ScriptedModel([rp.ModelNotFoundError("no such model")], name="test:dead")
    policy = rp.Policy(fallbacks=(model,))
    assert task.run(review, model=dead, policy=policy, cache=cache).model == model.name
    # Not served as the dead model's answer (its circuit is open now, so the fallback answers again)...
    assert not served(task.run(review, model=dead, policy=policy, cache=cache))
    # ... but served to a call that asks the fallback itself.
    assert served(task.run(review, model=model, cache=cache))


def test_plain_output_types_round_trip(cache: Cache) -> None:
    task: rp.Task[str, list[str]] = rp.Task(
        "words", input=str, output=list[str], instructions="Split the text into words."
    )
    model = FunctionModel(lambda _: '{"answer": ["a", "b"]}')
    task("a b", model=model, cache=cache)
    run = task.run("a b", model=model, cache=cache)
    assert served(run) and run.output == ["a", "b"] and len(model.prompts) == 1


def test_concurrent_threads_and_tasks_share_one_cache(cache: Cache, model: FunctionModel) -> None:
    task = classify_task()
    labels = ["positive", "negative", "neutral"] * 4
    reviews = [Review(text=f"review {i} {label}") for i, label in enumerate(labels)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        outputs = list(pool.map(lambda r: task(r, model=model, cache=cache), reviews * 8))
    assert [o.label for o in outputs] == labels * 8

    async def all_at_once() -> list[Sentiment]:
        return await asyncio.gather(*(task.acall(r, model=model, cache=cache) for r in reviews * 4))

    assert [o.label for o in asyncio.run(all_at_once())] == labels * 4
    asked = len(model.prompts)
    assert len(reviews) <= asked <= len(reviews) * 8  # each input asked at least once, racing calls may both ask
    runs = [task.run(r, model=model, cache=cache) for r in reviews]
    assert all(served(r) for r in runs) and len(model.prompts) == asked


def test_the_async_door_reads_and_fills_the_cache(cache: Cache, model: FunctionModel) -> None:
    task, review = classify_task(), Review(text="async positive")

    async def twice() -> tuple[rp.Run[Sentiment], rp.Run[Sentiment]]:
        return await task.arun(review, model=model, cache=cache), await task.arun(review, model=model, cache=cache)

    first, second = asyncio.run(twice())
    assert not served(first) and served(second) and len(model.prompts) == 1


def test_the_file_holds_neither_the_input_nor_the_address(tmp_path: Path) -> None:
    model = FunctionModel(echo_label, name="test:proxy")
    with Cache(tmp_path / "c.sqlite") as cache:
        classify_task()(Review(text="the-private-input-7f3e positive"), model=model, cache=cache)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"the-private-input-7f3e" not in stored and model.key.encode() not in stored
    assert b'{"label": "positive"}' in stored


def test_a_cache_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(rp.ConfigError, match="newer robustprompt"):
        Cache(path)


def test_an_unopenable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(rp.ConfigError, match="cannot open the response cache"):
        Cache(tmp_path / "file" / "cache.sqlite")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    return Cache(tmp_path_factory.mktemp("cache") / "c.sqlite")


people = st.builds(
    Person,
    name=st.text(max_size=20),
    age=st.integers(0, 150),
    nickname=st.none() | st.text(max_size=10),
    tags=st.lists(st.text(max_size=8), max_size=3),
)


PERSON: rp.Task[str, Person] = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
WRITER = FunctionModel(lambda _: "{}")


@given(person=people)
@settings(max_examples=50, deadline=None)
def test_any_output_reads_back_equal(shared_cache: Cache, person: Person) -> None:
    answer = rp.Attempt(1, WRITER.name, rp.OutputMode.PROMPTED, raw="...")
    stored = rp.Run(PERSON.name, PERSON.fingerprint, WRITER.name, attempts=[answer], output=person)
    shared_cache.put(PERSON, WRITER, None, "", '"text"', stored)
    run = shared_cache.get(PERSON, WRITER, None, "", '"text"')
    assert run is not None and served(run) and run.output == person


@pytest.mark.local_model
def test_a_real_models_answer_is_served_from_the_cache(cache: Cache) -> None:
    smollm2 = rp.model("local:smollm2", temperature=0, max_output_tokens=32)
    task, review = classify_task(), Review(text="Absolutely wonderful, I love it.")
    first = task.run(review, model=smollm2, cache=cache)
    second = task.run(review, model=smollm2, cache=cache)
    assert first.usage.output_tokens > 0 and not served(first)
    assert served(second) and second.output == first.output and second.usage == rp.Usage(0, 0)
    assert second.mode is rp.OutputMode.GRAMMAR
