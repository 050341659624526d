"""Batches: input order kept, every input accounted for, concurrency bounded, requests and tokens paced."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import itertools
import json
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pydantic
import pytest

import robustprompt as rp
from robustprompt._batch import Batch, amap_task, map_task, stream_task
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
    runs = map_task(ECHO, inputs, Batch(async_model(AsyncBackend(echo, seed)), concurrency=7))
    assert [run.output for run in runs if isinstance(run, rp.Run)] == inputs


def test_concurrency_is_bounded_and_used() -> None:
    backend = AsyncBackend(echo, seed=1)
    map_task(ECHO, [str(i) for i in range(30)], Batch(async_model(backend), concurrency=4))
    assert backend.most_in_flight == 4
    assert backend.calls == 30


def test_every_input_is_a_run_or_the_error_that_ended_it() -> None:
    def answer(prompt: Prompt) -> str:
        text = input_of(prompt)
        if text == "down":
            raise rp.ServerError("boom", provider="test", model="async", status=500)
        return '{"answer": "maybe"}' if text == "bad" else '{"answer": "yes"}'

    inputs = ["ok", "bad", "down", 42, "ok"]
    outcomes = map_task(YES_NO, inputs, Batch(FunctionModel(answer), rp.Policy(reasks=0, transport_retries=0)))
    assert len(outcomes) == len(inputs)
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Run", "OutputError", "ServerError", "ConfigError", "Run"]
    failed = sum(isinstance(o, rp.RobustPromptError) for o in outcomes)
    assert failed == 3


def test_on_result_sees_each_index_once() -> None:
    seen: list[int] = []
    map_task(ECHO, ["a", "b", "c"], Batch(async_model(AsyncBackend(echo))), on_result=lambda i, _: seen.append(i))
    assert sorted(seen) == [0, 1, 2]


def test_rpm_spaces_every_request() -> None:
    clock = FakeClock()
    backend = AsyncBackend(echo, seed=3, clock=clock)
    map_task(ECHO, [str(i) for i in range(12)], Batch(async_model(backend), rpm=30, clock=clock))
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

    runs = map_task(YES_NO, ["a", "b", "c"], Batch(FunctionModel(answer), rpm=60, concurrency=1, clock=clock))
    assert all(isinstance(run, rp.Run) and len(run.attempts) == 2 for run in runs)
    assert started == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_tpm_keeps_tokens_within_the_rate() -> None:
    clock = FakeClock()
    backend = AsyncBackend(echo, tokens=5, clock=clock)
    tpm = 600.0  # 10 tokens a second, in a bucket of 10
    inputs = [f"input number {i}" for i in range(10)]
    runs = map_task(ECHO, inputs, Batch(async_model(backend), tpm=tpm, concurrency=1, clock=clock))
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
        map_task(ECHO, ["a", "b"], Batch(async_model(AsyncBackend(echo)), progress=True))
        map_task(ECHO, ["a", "b"], Batch(async_model(AsyncBackend(echo)), progress=False))
    drawn = stream.getvalue()
    assert drawn.count("\n") == 1
    assert drawn.rstrip().endswith("2/2") and "test:async [" in drawn


def test_the_progress_bar_counts_failures() -> None:
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", stream)
        map_task(YES_NO, ["a"], Batch(FunctionModel(lambda _: "?"), rp.Policy(reasks=0), progress=True))
    assert stream.getvalue().rstrip().endswith("1/1, 1 failed")


def test_map_task_runs_in_a_thread_with_no_loop() -> None:
    found: list[object] = []
    model = async_model(AsyncBackend(echo))
    worker = threading.Thread(target=lambda: found.extend(map_task(ECHO, ["x"], Batch(model))))
    worker.start()
    worker.join()
    assert [run.output for run in found if isinstance(run, rp.Run)] == ["x"]


def test_map_task_inside_a_running_loop_says_to_await() -> None:
    async def inside() -> None:
        map_task(ECHO, ["x"], Batch(async_model(AsyncBackend(echo))))

    with pytest.raises(rp.ConfigError, match="await amap_task"):
        asyncio.run(inside())


@pytest.mark.parametrize(
    ("options", "message"),
    [({"concurrency": 0}, "concurrency must be at least 1"), ({"rpm": 0}, "rpm must be > 0"), ({"tpm": -1}, "tpm")],
)
def test_bad_limits_are_config_errors(options: dict[str, float], message: str) -> None:
    with pytest.raises(rp.ConfigError, match=message):
        map_task(ECHO, ["x"], Batch(async_model(AsyncBackend(echo)), **options))  # type: ignore[arg-type]


def test_no_inputs_no_calls() -> None:
    backend = AsyncBackend(echo)
    assert map_task(ECHO, [], Batch(async_model(backend))) == []
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
            amap_task(ECHO, ["a", "b", "c", "d"], Batch(async_model(Hanging(echo)), concurrency=3))
        )
        while started < 3:
            await asyncio.sleep(0)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch

    asyncio.run(scenario())
    assert started == finished == 3


def test_a_bug_outside_robustprompt_is_that_inputs_error_and_the_rest_go_on() -> None:
    def answer(prompt: Prompt) -> str:
        if input_of(prompt) == "7":
            raise KeyError("a bug in the user's function")
        return json.dumps({"answer": input_of(prompt)})

    results = map_task(ECHO, [str(i) for i in range(50)], Batch(FunctionModel(answer), concurrency=2), keep_runs=False)
    assert isinstance(results[7], rp.ConfigError) and isinstance(results[7].__cause__, KeyError)
    assert [r for i, r in enumerate(results) if i != 7] == [str(i) for i in range(50) if i != 7]


# Streaming: the same pool, handed over in completion order, inputs taken lazily, nothing kept.


class Counted:
    """A generator of `n` inputs that counts how many were taken: a stream must not read ahead of its slots."""

    def __init__(self, n: int = 1_000_000) -> None:
        self.n = n
        self.taken = 0

    def __iter__(self) -> Iterator[str]:
        for i in range(self.n):
            self.taken += 1
            yield str(i)


class Hanging(AsyncBackend):
    """Answers the inputs in `quick` at once and leaves every other call waiting until it is cancelled."""

    def __init__(self, quick: set[str]) -> None:
        super().__init__(echo)
        self.quick = quick
        self.cancelled = 0

    async def acomplete(self, prompt: Prompt) -> Completion:
        self.calls += 1
        if input_of(prompt) in self.quick:
            return Completion(echo(prompt))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("never answered")


@pytest.fixture
def loops(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.AbstractEventLoop]:
    """Every event loop `stream` opens, to check it is closed."""
    opened: list[asyncio.AbstractEventLoop] = []
    new_event_loop = asyncio.new_event_loop

    def recording() -> asyncio.AbstractEventLoop:
        opened.append(new_event_loop())
        return opened[-1]

    monkeypatch.setattr(asyncio, "new_event_loop", recording)
    return opened


def test_stream_hands_over_every_index_once_as_its_call_ends(loops: list[asyncio.AbstractEventLoop]) -> None:
    inputs = [f"case {i}" for i in range(40)]
    answered: list[str] = []  # the order the backend answered in

    def answer(prompt: Prompt) -> str:
        answered.append(input_of(prompt))
        return echo(prompt)

    pairs = list(ECHO.stream(inputs, model=async_model(AsyncBackend(answer, seed=2)), concurrency=7))
    assert sorted(index for index, _ in pairs) == list(range(40))
    assert all(output == inputs[index] for index, output in pairs)
    assert [output for _, output in pairs] == answered != inputs  # completion order, not input order
    assert len(loops) == 1 and loops[0].is_closed()


def test_stream_yields_errors_as_outcomes() -> None:
    def answer(prompt: Prompt) -> str:
        text = input_of(prompt)
        if text == "down":
            raise rp.ServerError("boom", provider="test", model="async", status=500)
        return '{"answer": "maybe"}' if text == "bad" else '{"answer": "yes"}'

    inputs: list[Any] = ["ok", "bad", "down", 42, "ok"]  # 42 is no str: a ConfigError for that input alone
    policy = rp.Policy(reasks=0, transport_retries=0)
    outcomes = dict(YES_NO.stream(inputs, model=FunctionModel(answer), policy=policy))
    kinds = [type(outcomes[i]).__name__ for i in range(len(inputs))]
    assert kinds == ["str", "OutputError", "ServerError", "ConfigError", "str"]


def test_stream_takes_an_input_only_when_a_slot_is_free() -> None:
    inputs = Counted()
    for handed, _ in enumerate(ECHO.stream(inputs, model=async_model(AsyncBackend(echo, seed=5)), concurrency=5)):
        assert inputs.taken <= handed + 5  # those handed over before this one, and the calls in flight
        if handed == 29:
            break
    assert inputs.taken <= 29 + 5


def test_astream_holds_the_batch_while_the_consumer_is_busy() -> None:
    inputs = Counted(200)
    backend = AsyncBackend(echo, seed=6)

    async def consume() -> int:
        handed = 0
        async for _ in ECHO.astream(inputs, model=async_model(backend), concurrency=4):
            for _ in range(100):  # long enough for every call in flight to end
                await asyncio.sleep(0)
            assert backend.calls <= inputs.taken <= handed + 4
            handed += 1
        return handed

    assert asyncio.run(consume()) == 200
    assert backend.calls == 200


def test_leaving_a_stream_early_cancels_the_calls_in_flight(loops: list[asyncio.AbstractEventLoop]) -> None:
    backend = Hanging(quick={"0"})
    inputs = Counted()
    for index, _ in ECHO.stream(inputs, model=async_model(backend), concurrency=3):
        assert index == 0
        break
    assert backend.calls == inputs.taken == 3
    assert backend.cancelled == 2
    assert len(loops) == 1 and loops[0].is_closed()


@pytest.mark.parametrize("closing", [True, False], ids=["aclosing", "break"])
def test_leaving_an_astream_early_cancels_the_calls_in_flight(closing: bool, caplog: pytest.LogCaptureFixture) -> None:
    backend = Hanging(quick={"0"})
    inputs = Counted()

    async def scenario() -> None:
        outcomes = ECHO.astream(inputs, model=async_model(backend), concurrency=3)
        async with contextlib.AsyncExitStack() as stack:
            if closing:
                await stack.enter_async_context(contextlib.aclosing(outcomes))
            async for index, _ in outcomes:
                assert index == 0
                break
        del outcomes  # without aclosing, the loop closes the generator once it is collected
        for _ in range(10):
            await asyncio.sleep(0)
        assert backend.cancelled == 2

    asyncio.run(scenario())
    assert backend.calls == inputs.taken == 3
    assert not caplog.records  # no "Task was destroyed but it is pending"


def test_a_bug_outside_robustprompt_is_one_outcome_of_a_stream_and_its_loop_closes(
    loops: list[asyncio.AbstractEventLoop],
) -> None:
    def answer(prompt: Prompt) -> str:
        raise KeyError("a bug in the user's function")

    outcomes = list(ECHO.stream(Counted(10), model=FunctionModel(answer), concurrency=2))
    assert len(outcomes) == 10
    assert all(isinstance(outcome, rp.ConfigError) for _, outcome in outcomes)
    assert loops[0].is_closed()


def test_an_interrupted_stream_still_cancels_its_calls_and_closes_its_loop(
    loops: list[asyncio.AbstractEventLoop],
) -> None:
    class Interrupting(Hanging):
        async def acomplete(self, prompt: Prompt) -> Completion:
            if input_of(prompt) == "2":
                raise KeyboardInterrupt  # Ctrl-C landing in the middle of a step
            return await super().acomplete(prompt)

    backend = Interrupting(quick=set())
    with pytest.raises(KeyboardInterrupt):
        list(ECHO.stream(Counted(), model=async_model(backend), concurrency=3))
    assert backend.cancelled == 2
    assert loops[0].is_closed()


class Box(pydantic.BaseModel):
    text: str


def test_stream_keeps_nothing_it_handed_over() -> None:
    boxes: rp.Task[str, Box] = rp.Task("box", input=str, output=Box, instructions="Box the input.")
    model = async_model(AsyncBackend(lambda prompt: json.dumps({"text": input_of(prompt)})))
    handed: list[weakref.ref[Box]] = []
    for _, box in boxes.stream(Counted(20), model=model, concurrency=3):
        assert isinstance(box, Box)
        handed.append(weakref.ref(box))
        del box
        gc.collect()
        assert [ref() for ref in handed] == [None] * len(handed)
    assert len(handed) == 20


def test_stream_with_runs_yields_runs() -> None:
    pairs: list[tuple[int, object]] = list(ECHO.stream(["a", "b"], model=async_model(AsyncBackend(echo)), runs=True))
    assert sorted((index, run.output) for index, run in pairs if isinstance(run, rp.Run)) == [(0, "a"), (1, "b")]

    async def collect() -> list[tuple[int, object]]:
        return [pair async for pair in ECHO.astream(["a"], model=async_model(AsyncBackend(echo)), runs=True)]

    assert [type(outcome) for _, outcome in asyncio.run(collect())] == [rp.Run]


def test_stream_inside_a_running_loop_says_to_use_astream() -> None:
    async def inside() -> None:
        ECHO.stream(["x"], model=async_model(AsyncBackend(echo)))

    with pytest.raises(rp.ConfigError, match="astream"):
        asyncio.run(inside())


@pytest.mark.parametrize("form", ["stream", "astream"])
@pytest.mark.parametrize(
    ("options", "message"),
    [({"concurrency": 0}, "concurrency must be at least 1"), ({"rpm": 0}, "rpm must be > 0"), ({"tpm": -1}, "tpm")],
)
def test_a_stream_checks_its_limits_when_made(form: str, options: dict[str, float], message: str) -> None:
    with pytest.raises(rp.ConfigError, match=message):
        getattr(ECHO, form)(["x"], model=async_model(AsyncBackend(echo)), **options)


def test_rpm_paces_a_stream() -> None:
    clock = FakeClock()
    backend = AsyncBackend(echo, seed=3, clock=clock)
    stream = stream_task(ECHO, Counted(12), Batch(async_model(backend), rpm=30, concurrency=4, clock=clock))
    assert sum(1 for _ in stream) == 12
    gaps = [b - a for a, b in itertools.pairwise(backend.started)]
    assert len(backend.started) == 12 and min(gaps) >= 2.0 - 1e-9  # 30 a minute: one every 2 s


def test_the_progress_bar_counts_a_stream_of_unknown_length() -> None:
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", stream)
        list(ECHO.stream(Counted(3), model=async_model(AsyncBackend(echo)), progress=True))
        list(ECHO.stream(["a", "b"], model=async_model(AsyncBackend(echo)), progress=True))
    first, second, rest = stream.getvalue().split("\n")  # each bar redraws in place, then ends its line
    assert rest == ""
    assert first.endswith("test:async 3 done")
    assert second.endswith("2/2") and "test:async [" in second


# Pacing under hostile usage figures: a server's usage is data from outside, and no wait outlasts the deadline.


@pytest.mark.parametrize("reported", [float("inf"), 1e12, 10_000_000, float("nan"), "lots", -5])
def test_absurd_reported_usage_does_not_stall_the_token_pacer(reported: Any) -> None:
    def answer(prompt: Prompt) -> Completion:
        return Completion(echo(prompt), usage=Usage(10, reported))

    start = time.monotonic()
    results = map_task(ECHO, [str(i) for i in range(5)], Batch(FunctionModel(answer), concurrency=1, tpm=600_000))
    assert time.monotonic() - start < 5  # one request's worth of debt at most, not hours of it
    assert all(isinstance(r, rp.Run) for r in results)


def test_the_deadline_bounds_a_wait_for_the_rate_limit() -> None:
    def answer(prompt: Prompt) -> Completion:
        return Completion(echo(prompt))  # no usage reported: the estimate stands

    inputs = [str(i) for i in range(4)]
    start = time.monotonic()
    results = map_task(
        ECHO,
        inputs,
        Batch(FunctionModel(answer), rp.Policy(deadline=0.5), concurrency=4, tpm=60),  # a token a second
    )
    assert time.monotonic() - start < 0.5 + 1.0
    assert isinstance(results[0], rp.Run)  # the first fits the bucket; the others would wait a minute each
    late = results[1:]
    assert all(isinstance(r, rp.ProviderTimeout) and r.code == "deadline" for r in late)
