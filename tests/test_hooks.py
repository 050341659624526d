"""Hooks: every call tells its start, each attempt's start and end, and its end, in order, through both drivers; a
hook that raises is logged and changes nothing about the call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import robustprompt as rp
from robustprompt._cache import Cache
from robustprompt._hooks import AttemptEnd, AttemptStart, CallInfo, Hook, RunEnd, hooks
from robustprompt._prompt import Prompt
from robustprompt.testing import FunctionModel, ScriptedModel
from tests.models import Review, Sentiment, classify_task
from tests.test_cache import echo_label

Event = tuple[str, Any]


class Recorder(Hook):
    def __init__(self) -> None:
        self.events: list[Event] = []

    def run_start(self, call: CallInfo) -> None:
        self.events.append(("run_start", call))

    def attempt_start(self, event: AttemptStart) -> None:
        self.events.append(("attempt_start", event))

    def attempt_end(self, event: AttemptEnd) -> None:
        self.events.append(("attempt_end", event))

    def run_end(self, event: RunEnd) -> None:
        self.events.append(("run_end", event))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[Any]:
        return [event for n, event in self.events if n == name]


class Broken(Hook):
    def run_start(self, call: CallInfo) -> None:
        raise RuntimeError("broken run_start")

    def attempt_start(self, event: AttemptStart) -> None:
        raise RuntimeError("broken attempt_start")

    def attempt_end(self, event: AttemptEnd) -> None:
        raise KeyError("broken attempt_end")

    def run_end(self, event: RunEnd) -> None:
        raise ValueError("broken run_end")


class Stop(BaseException):
    """Stands for an interrupt or a cancellation."""


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with hooks.added(Recorder()) as hook:
        yield hook


def test_a_call_with_a_reask_tells_every_step_in_order(recorder: Recorder) -> None:
    task, model = classify_task(), ScriptedModel(['{"label": "great"}', '{"label": "positive"}'])
    run = task.run(Review(text="x"), model=model)
    assert recorder.names == ["run_start", "attempt_start", "attempt_end", "attempt_start", "attempt_end", "run_end"]
    call = recorder.of("run_start")[0]
    assert call.task is task and call.model is model and isinstance(call.policy, rp.Policy)
    starts, ends = recorder.of("attempt_start"), recorder.of("attempt_end")
    assert [s.number for s in starts] == [1, 2] and {s.mode for s in starts} == {rp.OutputMode.PROMPTED}
    assert [e.attempt for e in ends] == run.attempts and [e.attempt.ok for e in ends] == [False, True]
    assert all(e.response is not None and e.error is None and e.model is model for e in ends)
    (end,) = recorder.of("run_end")
    assert end.run is run and end.error is None and not end.cached
    assert all(event.call is call for _, event in recorder.events[1:])


def test_a_failed_call_ends_with_the_error_the_caller_gets(recorder: Recorder) -> None:
    with pytest.raises(rp.OutputError) as raised:
        classify_task().run(Review(text="x"), model=ScriptedModel(['{"label": "great"}'] * 2))
    (end,) = recorder.of("run_end")
    assert end.error is raised.value and end.run is raised.value.run and len(end.run.attempts) == 2


def test_a_provider_error_then_the_fallback(recorder: Recorder) -> None:
    dead = ScriptedModel([rp.ModelNotFoundError("gone")], name="test:dead")
    fallback = FunctionModel(lambda _: '{"label": "neutral"}')
    run = classify_task().run(Review(text="x"), model=dead, policy=rp.Policy(fallbacks=(fallback,)))
    first, second = recorder.of("attempt_end")
    assert isinstance(first.error, rp.ModelNotFoundError) and first.response is None and first.model is dead
    assert second.model is fallback and second.attempt.ok
    assert [s.model for s in recorder.of("attempt_start")] == [dead, fallback]
    assert recorder.of("run_start")[0].model is dead and run.model == fallback.name


def test_a_cache_hit_tells_the_start_and_the_end_only(recorder: Recorder, tmp_path: Path) -> None:
    task, model, review = classify_task(), FunctionModel(lambda _: '{"label": "positive"}'), Review(text="x")
    with Cache(tmp_path / "c.sqlite") as cache:
        task(review, model=model, cache=cache)
        recorder.events.clear()
        run = task.run(review, model=model, cache=cache)
    assert recorder.names == ["run_start", "run_end"]
    (end,) = recorder.of("run_end")
    assert end.cached and end.run is run and end.error is None


def test_the_async_driver_tells_the_same(recorder: Recorder) -> None:
    model = ScriptedModel(['{"label": "great"}', '{"label": "positive"}'])
    run = asyncio.run(classify_task().arun(Review(text="x"), model=model))
    assert recorder.names == ["run_start", "attempt_start", "attempt_end", "attempt_start", "attempt_end", "run_end"]
    assert recorder.of("run_end")[0].run is run


def test_concurrent_calls_are_told_apart(recorder: Recorder) -> None:
    model, labels = FunctionModel(echo_label), ["positive", "negative", "neutral", "positive", "negative"]

    async def all_at_once() -> list[Sentiment]:
        task = classify_task()
        return await asyncio.gather(
            *(task.acall(Review(text=f"{i} {label}"), model=model) for i, label in enumerate(labels))
        )

    asyncio.run(all_at_once())
    by_call: dict[int, list[Event]] = {}
    for name, event in recorder.events:
        call = event if name == "run_start" else event.call
        by_call.setdefault(call.id, []).append((name, event))
    assert len(by_call) == len(labels)
    for events in by_call.values():
        assert [name for name, _ in events] == ["run_start", "attempt_start", "attempt_end", "run_end"]
    outputs = sorted(events[-1][1].run.output.label for events in by_call.values())
    assert outputs == sorted(labels)


def test_a_failing_hook_changes_nothing(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    task = classify_task()
    with hooks.added(Broken()), caplog.at_level(logging.ERROR, logger="robustprompt"):
        assert task(Review(text="x"), model=ScriptedModel(['{"label": "positive"}'])) == Sentiment(label="positive")
        with pytest.raises(rp.OutputError):
            task(Review(text="x"), model=ScriptedModel(['{"label": "great"}'] * 2))
    assert recorder.names.count("run_end") == 2  # the hook after (and before) the broken one was told everything
    failed = {r.getMessage().split()[2] for r in caplog.records}
    assert failed == {"Broken.run_start", "Broken.attempt_start", "Broken.attempt_end", "Broken.run_end"}
    assert all(r.exc_info is not None for r in caplog.records)


def test_an_interrupted_call_still_ends(recorder: Recorder) -> None:
    def interrupted(_: Prompt) -> str:
        raise Stop

    with pytest.raises(Stop):
        classify_task()(Review(text="x"), model=FunctionModel(interrupted))
    assert recorder.names == ["run_start", "attempt_start", "run_end"]
    assert isinstance(recorder.of("run_end")[0].error, Stop)


def test_a_bug_in_a_check_ends_the_call_typed_without_an_attempt_record(recorder: Recorder) -> None:
    def buggy(_: Sentiment) -> None:
        raise TypeError("a bug in the check")

    task: rp.Task[str, Sentiment] = rp.Task("t", input=str, output=Sentiment, instructions="Classify.", checks=[buggy])
    with pytest.raises(rp.ConfigError, match="unexpected TypeError"):
        task("x", model=ScriptedModel(['{"label": "positive"}']))
    assert recorder.names == ["run_start", "attempt_start", "run_end"]


def test_a_hook_removed_during_a_call_hears_the_end_of_it() -> None:
    class Leaving(Recorder):
        def attempt_start(self, event: AttemptStart) -> None:
            hooks.remove(self)
            super().attempt_start(event)

    hook = Leaving()
    hooks.add(hook)
    model = ScriptedModel(['{"label": "positive"}'] * 2)
    classify_task()(Review(text="x"), model=model)
    assert hook.names == ["run_start", "attempt_start", "attempt_end", "run_end"]
    classify_task()(Review(text="y"), model=model)
    assert len(hook.events) == 4


def test_added_removes_the_hook_even_when_the_block_fails() -> None:
    hook = Recorder()
    with pytest.raises(ZeroDivisionError), hooks.added(hook):
        raise ZeroDivisionError
    hooks.remove(hook)  # removing a hook that is not there is harmless
    classify_task()(Review(text="x"), model=ScriptedModel(['{"label": "positive"}']))
    assert hook.events == []


def test_a_hook_may_override_only_what_it_needs() -> None:
    class Ends(Hook):
        def __init__(self) -> None:
            self.ok: list[bool] = []

        def run_end(self, event: RunEnd) -> None:
            self.ok.append(event.run.ok)

    with hooks.added(Ends()) as hook:
        classify_task()(Review(text="x"), model=ScriptedModel(['{"label": "positive"}']))
    assert hook.ok == [True]
