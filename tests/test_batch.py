"""Batches: input order kept, every input accounted for, concurrency bounded, requests and tokens paced."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import random
import threading
from collections.abc import Callable
from typing import Literal

import pytest

import robustprompt as rp
from robustprompt._batch import amap_task, map_task
from robustprompt._completion import Completion, Usage
from robustprompt._prompt import Prompt
from robustprompt._tokens import TokenCount, count_tokens
from robustprompt.testing import FunctionModel

ECHO: rp.Task[str, str] = rp.Task("echo", input=str, output=str, instructions="Repeat the input.")
YES_NO: rp.Task[str, str] = rp.Task("yes_no", input=str, output=Literal["yes", "no"], instructions="Answer yes or no.")


def input_of(prompt: Prompt) -> str:
    """The input value the prompt carries (the JSON after the last "Input:" header)."""
    value: str = json.loads(prompt.messages[-1].content.rsplit("Input:\n", 1)[1].split("\n", 1)[0])
    return value


class FakeClock:
    """Time that passes only when slept on: pacing is checked by counting, never by timing."""

    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.time += seconds
        await asyncio.sleep(0)


class AsyncBackend:
    """Answers with `answer(prompt)` after yielding to the loop a random number of times (no wall time)."""

    def __init__(
        self, answer: Callable[[Prompt], str], seed: int = 0, tokens: int = 0, clock: FakeClock | None = None
    ) -> None:
        self.answer = answer
        self.clock = clock
        self.started: list[float] = []  # the clock's time as each request arrived
        self.rng = random.Random(seed)
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0
        self.output_tokens = tokens

    def complete(self, prompt: Prompt) -> Completion:
        raise AssertionError("batches call acomplete only")

    async def acomplete(self, prompt: Prompt) -> Completion:
        self.calls += 1
        self.started.append(self.clock.now() if self.clock else 0.0)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(self.rng.randrange(30)):
                await asyncio.sleep(0)
            usage = Usage(self.prompt_tokens(prompt), self.output_tokens)
            return Completion(self.answer(prompt), usage=usage)
        finally:
            self.in_flight -= 1

    def count_tokens(self, text: str) -> TokenCount:
        return count_tokens(text, "estimate")

    def prompt_tokens(self, prompt: Prompt) -> int:
        texts = [prompt.system, *(m.content for m in prompt.messages)]
        return sum(self.count_tokens(t).tokens for t in texts)


def async_model(backend: AsyncBackend) -> rp.Model:
    return rp.Model("test:async", rp.ModelProfile("test", "async", context_window=32_768), rp.Settings(), backend)


def echo(prompt: Prompt) -> str:
    return json.dumps({"answer": input_of(prompt)})


@pytest.mark.parametrize("seed", range(5))
def test_results_keep_input_order_under_random_delays(seed: int) -> None:
    inputs = [f"case {i}" for i in range(40)]
    runs = map_task(ECHO, inputs, model=async_model(AsyncBackend(echo, seed)), concurrency=7)
    assert [run.output for run in runs if isinstance(run, rp.Run)] == inputs


def test_concurrency_is_bounded_and_used() -> None:
    backend = AsyncBackend(echo, seed=1)
    map_task(ECHO, [str(i) for i in range(30)], model=async_model(backend), concurrency=4)
    assert backend.most_in_flight == 4
    assert backend.calls == 30


def test_every_input_is_a_run_or_the_error_that_ended_it() -> None:
    def answer(prompt: Prompt) -> str:
        text = input_of(prompt)
        if text == "down":
            raise rp.ServerError("boom", provider="test", model="async", status=500)
        return '{"answer": "maybe"}' if text == "bad" else '{"answer": "yes"}'

    inputs = ["ok", "bad", "down", 42, "ok"]
    outcomes = map_task(YES_NO, inputs, model=FunctionModel(answer), policy=rp.Policy(reasks=0, transport_retries=0))
    assert len(outcomes) == len(inputs)
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Run", "OutputError", "ServerError", "ConfigError", "Run"]
    failed = sum(isinstance(o, rp.RobustPromptError) for o in outcomes)
    assert failed == 3


def test_on_result_sees_each_index_once() -> None:
    seen: list[int] = []
    map_task(ECHO, ["a", "b", "c"], model=async_model(AsyncBackend(echo)), on_result=lambda i, _: seen.append(i))
    assert sorted(seen) == [0, 1, 2]


def test_rpm_spaces_every_request() -> None:
    clock = FakeClock()
    backend = AsyncBackend(echo, seed=3, clock=clock)
    map_task(ECHO, [str(i) for i in range(12)], model=async_model(backend), rpm=30, clock=clock)
    started = backend.started
    assert len(started) == 12
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert min(gaps) >= 2.0 - 1e-9  # 30 a minute: one every 2 s
    assert max(sum(1 for t in started if s <= t < s + 60) for s in started) <= 30


def test_rpm_counts_re_asks_as_requests() -> None:
    clock = FakeClock()
    started: list[float] = []
    answers = iter(['{"answer": "maybe"}', '{"answer": "yes"}'] * 3)

    def answer(_: Prompt) -> str:
        started.append(clock.now())
        return next(answers)

    runs = map_task(YES_NO, ["a", "b", "c"], model=FunctionModel(answer), rpm=60, concurrency=1, clock=clock)
    assert all(isinstance(run, rp.Run) and len(run.attempts) == 2 for run in runs)
    assert started == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_tpm_keeps_tokens_within_the_rate() -> None:
    clock = FakeClock()
    backend = AsyncBackend(echo, tokens=5, clock=clock)
    tpm = 600.0  # 10 tokens a second, in a bucket of 10
    inputs = [f"input number {i}" for i in range(10)]
    runs = map_task(ECHO, inputs, model=async_model(backend), tpm=tpm, concurrency=1, clock=clock)
    used = [run.usage.total_tokens for run in runs if isinstance(run, rp.Run)]
    assert len(used) == len(backend.started) == 10
    for i, start in enumerate(backend.started):
        # What the earlier requests used fits the bucket plus what refilled by the time this one started.
        assert sum(used[:i]) <= tpm / 60 + start * tpm / 60 + 1e-6
    assert 0 < backend.started[-1] <= sum(used) / (tpm / 60)  # it waited, but no longer than the tokens need


def test_the_progress_bar_draws_on_request() -> None:
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", stream)
        map_task(ECHO, ["a", "b"], model=async_model(AsyncBackend(echo)), progress=True)
        map_task(ECHO, ["a", "b"], model=async_model(AsyncBackend(echo)), progress=False)
    drawn = stream.getvalue()
    assert drawn.count("\n") == 1
    assert drawn.rstrip().endswith("2/2") and "test:async [" in drawn


def test_the_progress_bar_counts_failures() -> None:
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", stream)
        map_task(YES_NO, ["a"], model=FunctionModel(lambda _: "?"), policy=rp.Policy(reasks=0), progress=True)
    assert stream.getvalue().rstrip().endswith("1/1, 1 failed")


def test_map_task_runs_in_a_thread_with_no_loop() -> None:
    found: list[object] = []
    model = async_model(AsyncBackend(echo))
    worker = threading.Thread(target=lambda: found.extend(map_task(ECHO, ["x"], model=model)))
    worker.start()
    worker.join()
    assert [run.output for run in found if isinstance(run, rp.Run)] == ["x"]


def test_map_task_inside_a_running_loop_says_to_await() -> None:
    async def inside() -> None:
        map_task(ECHO, ["x"], model=async_model(AsyncBackend(echo)))

    with pytest.raises(rp.ConfigError, match="await amap_task"):
        asyncio.run(inside())


@pytest.mark.parametrize(
    ("options", "message"),
    [({"concurrency": 0}, "concurrency must be at least 1"), ({"rpm": 0}, "rpm must be > 0"), ({"tpm": -1}, "tpm")],
)
def test_bad_limits_are_config_errors(options: dict[str, float], message: str) -> None:
    with pytest.raises(rp.ConfigError, match=message):
        map_task(ECHO, ["x"], model=async_model(AsyncBackend(echo)), **options)  # type: ignore[arg-type]


def test_no_inputs_no_calls() -> None:
    backend = AsyncBackend(echo)
    assert map_task(ECHO, [], model=async_model(backend)) == []
    assert backend.calls == 0


def test_cancelling_the_batch_cancels_the_calls_in_flight() -> None:
    started = 0
    finished = 0

    class Hanging(AsyncBackend):
        async def acomplete(self, prompt: Prompt) -> Completion:
            nonlocal started, finished
            started += 1
            try:
                await asyncio.Event().wait()
            finally:
                finished += 1
            raise AssertionError("never answered")

    async def scenario() -> None:
        batch = asyncio.ensure_future(
            amap_task(ECHO, ["a", "b", "c", "d"], model=async_model(Hanging(echo)), concurrency=3)
        )
        while started < 3:
            await asyncio.sleep(0)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch

    asyncio.run(scenario())
    assert started == finished == 3


def test_a_bug_outside_robustprompt_escapes_and_stops_the_rest() -> None:
    calls = 0

    def answer(prompt: Prompt) -> str:
        nonlocal calls
        calls += 1
        raise KeyError("a bug in the user's function")

    with pytest.raises(KeyError):
        map_task(ECHO, [str(i) for i in range(50)], model=FunctionModel(answer), concurrency=2)
    assert calls < 50
