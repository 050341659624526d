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
from robustprompt._batch import Limits, TaskJob, map_job
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
    runs = ECHO.map(inputs, model=async_model(AsyncBackend(echo, seed)), batch=rp.Batch(concurrency=7), runs=True)
    assert [run.output for run in runs if isinstance(run, rp.Run)] == inputs


def test_concurrency_is_bounded_and_used() -> None:
    backend = AsyncBackend(echo, seed=1)
    ECHO.map([str(i) for i in range(30)], model=async_model(backend), batch=rp.Batch(concurrency=4))
    assert backend.most_in_flight == 4
    assert backend.calls == 30


def test_every_input_is_a_run_or_the_error_that_ended_it() -> None:
    def answer(prompt: Prompt) -> str:
        text = input_of(prompt)
        if text == "down":
            raise rp.ServerError("boom", provider="test", model="async", status=500)
        return '{"answer": "maybe"}' if text == "bad" else '{"answer": "yes"}'

    inputs = ["ok", "bad", "down", 42, "ok"]
    outcomes = YES_NO.map(
        inputs, model=FunctionModel(answer), policy=rp.Policy(reasks=0, transport_retries=0), runs=True
    )
    assert len(outcomes) == len(inputs)
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Run", "OutputError", "ServerError", "ConfigError", "Run"]
    failed = sum(isinstance(o, rp.RobustPromptError) for o in outcomes)
    assert failed == 3


def test_on_result_sees_each_index_once() -> None:
    seen: list[int] = []
    map_job(TaskJob(ECHO, async_model(AsyncBackend(echo))), ["a", "b", "c"], on_result=lambda i, _: seen.append(i))
    assert sorted(seen) == [0, 1, 2]


def test_rpm_spaces_every_request() -> None:
    clock = FakeClock()
    backend = AsyncBackend(echo, seed=3, clock=clock)
    ECHO.map([str(i) for i in range(12)], model=async_model(backend), batch=rp.Batch(rpm=30, clock=clock))
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

    batch = rp.Batch(rpm=60, concurrency=1, clock=clock)
    runs = YES_NO.map(["a", "b", "c"], model=FunctionModel(answer), batch=batch, runs=True)
    assert all(isinstance(run, rp.Run) and len(run.attempts) == 2 for run in runs)
    assert started == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_tpm_keeps_tokens_within_the_rate() -> None:
    clock = FakeClock()
    backend = AsyncBackend(echo, tokens=5, clock=clock)
    tpm = 600.0  # 10 tokens a second, in a bucket of 10
    inputs = [f"input number {i}" for i in range(10)]
    runs = ECHO.map(inputs, model=async_model(backend), batch=rp.Batch(tpm=tpm, concurrency=1, clock=clock), runs=True)
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
        ECHO.map(["a", "b"], model=async_model(AsyncBackend(echo)), batch=rp.Batch(progress=True))
        ECHO.map(["a", "b"], model=async_model(AsyncBackend(echo)), batch=rp.Batch(progress=False))
    drawn = stream.getvalue()
    assert drawn.count("\n") == 1
    assert drawn.rstrip().endswith("2/2") and "test:async [" in drawn


def test_the_progress_bar_counts_failures() -> None:
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", stream)
        YES_NO.map(["a"], model=FunctionModel(lambda _: "?"), policy=rp.Policy(reasks=0), batch=rp.Batch(progress=True))
    assert stream.getvalue().rstrip().endswith("1/1, 1 failed")


def test_map_runs_in_a_thread_with_no_loop() -> None:
    found: list[object] = []
    model = async_model(AsyncBackend(echo))
    worker = threading.Thread(target=lambda: found.extend(ECHO.map(["x"], model=model, runs=True)))
    worker.start()
    worker.join()
    assert [run.output for run in found if isinstance(run, rp.Run)] == ["x"]


def test_map_inside_a_running_loop_says_to_await() -> None:
    async def inside() -> None:
        ECHO.map(["x"], model=async_model(AsyncBackend(echo)))

    with pytest.raises(rp.ConfigError, match=r"use `await task.amap\(...\)`"):
        asyncio.run(inside())


@pytest.mark.parametrize(
    ("options", "message"),
    [({"concurrency": 0}, "concurrency must be at least 1"), ({"rpm": 0}, "rpm must be > 0"), ({"tpm": -1}, "tpm")],
)
def test_bad_limits_are_config_errors(options: dict[str, float], message: str) -> None:
    with pytest.raises(rp.ConfigError, match=message):
        ECHO.map(["x"], model=async_model(AsyncBackend(echo)), batch=rp.Batch(**options))  # type: ignore[arg-type]


def test_no_inputs_no_calls() -> None:
    backend = AsyncBackend(echo)
    assert ECHO.map([], model=async_model(backend)) == []
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
            ECHO.amap(["a", "b", "c", "d"], model=async_model(Hanging(echo)), batch=rp.Batch(concurrency=3))
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

    results = ECHO.map([str(i) for i in range(50)], model=FunctionModel(answer), batch=rp.Batch(concurrency=2))
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

    pairs = list(ECHO.stream(inputs, model=async_model(AsyncBackend(answer, seed=2)), batch=rp.Batch(concurrency=7)))
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
    for handed, _ in enumerate(
        ECHO.stream(inputs, model=async_model(AsyncBackend(echo, seed=5)), batch=rp.Batch(concurrency=5))
    ):
        assert inputs.taken <= handed + 5  # those handed over before this one, and the calls in flight
        if handed == 29:
            break
    assert inputs.taken <= 29 + 5


def test_astream_holds_the_batch_while_the_consumer_is_busy() -> None:
    inputs = Counted(200)
    backend = AsyncBackend(echo, seed=6)

    async def consume() -> int:
        handed = 0
        async for _ in ECHO.astream(inputs, model=async_model(backend), batch=rp.Batch(concurrency=4)):
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
    for index, _ in ECHO.stream(inputs, model=async_model(backend), batch=rp.Batch(concurrency=3)):
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
        outcomes = ECHO.astream(inputs, model=async_model(backend), batch=rp.Batch(concurrency=3))
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

    outcomes = list(ECHO.stream(Counted(10), model=FunctionModel(answer), batch=rp.Batch(concurrency=2)))
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
        list(ECHO.stream(Counted(), model=async_model(backend), batch=rp.Batch(concurrency=3)))
    assert backend.cancelled == 2
    assert loops[0].is_closed()


class Box(pydantic.BaseModel):
    text: str


def test_stream_keeps_nothing_it_handed_over() -> None:
    boxes: rp.Task[str, Box] = rp.Task("box", input=str, output=Box, instructions="Box the input.")
    model = async_model(AsyncBackend(lambda prompt: json.dumps({"text": input_of(prompt)})))
    handed: list[weakref.ref[Box]] = []
    for _, box in boxes.stream(Counted(20), model=model, batch=rp.Batch(concurrency=3)):
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
        getattr(ECHO, form)(["x"], model=async_model(AsyncBackend(echo)), batch=rp.Batch(**options))


def test_rpm_paces_a_stream() -> None:
    clock = FakeClock()
    backend = AsyncBackend(echo, seed=3, clock=clock)
    stream = ECHO.stream(Counted(12), model=async_model(backend), batch=rp.Batch(rpm=30, concurrency=4, clock=clock))
    assert sum(1 for _ in stream) == 12
    gaps = [b - a for a, b in itertools.pairwise(backend.started)]
    assert len(backend.started) == 12 and min(gaps) >= 2.0 - 1e-9  # 30 a minute: one every 2 s


def test_the_progress_bar_counts_a_stream_of_unknown_length() -> None:
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", stream)
        list(ECHO.stream(Counted(3), model=async_model(AsyncBackend(echo)), batch=rp.Batch(progress=True)))
        list(ECHO.stream(["a", "b"], model=async_model(AsyncBackend(echo)), batch=rp.Batch(progress=True)))
    first, second, rest = stream.getvalue().split("\n")  # each bar redraws in place, then ends its line
    assert rest == ""
    assert first.endswith("test:async 3 done")
    assert second.endswith("2/2") and "test:async [" in second


# Pipelines: the same pool, so the same bounds, pacing, progress and streaming form.


def echo_pipeline(*models: rp.Model) -> rp.Pipeline:
    """One ECHO link per model, in a chain: each hands its input on unchanged."""
    return rp.Pipeline("echoes", [rp.Link(f"echo{i}", ECHO, model=m) for i, m in enumerate(models)])


def ended(item: object) -> object:
    return item.output if isinstance(item, rp.PipelineRun) else type(item).__name__


@pytest.mark.parametrize("seed", range(3))
def test_a_pipeline_batch_keeps_input_order_and_bounds_the_runs_in_flight(seed: int) -> None:
    backend = AsyncBackend(echo, seed)
    inputs = [f"case {i}" for i in range(30)]
    batch = echo_pipeline(async_model(backend)).map(inputs, batch=rp.Batch(concurrency=4))
    assert [ended(item) for item in batch.items] == inputs
    assert backend.most_in_flight == 4 and backend.calls == 30


def test_a_pipeline_batch_accounts_for_every_input() -> None:
    def answer(prompt: Prompt) -> str:
        return '{"answer": "maybe"}' if input_of(prompt) == "bad" else '{"answer": "yes"}'

    pipeline = rp.Pipeline("p", [rp.Link("yes_no", YES_NO, model=FunctionModel(answer), policy=rp.Policy(reasks=0))])
    inputs: list[Any] = ["ok", "bad", 42, "ok"]
    assert [ended(item) for item in pipeline.map(inputs).items] == ["yes", "PipelineError", "PipelineError", "yes"]
    streamed = dict(pipeline.stream(inputs))
    assert [ended(streamed[i]) for i in range(len(inputs))] == ["yes", "PipelineError", "PipelineError", "yes"]


def test_a_pipeline_stream_takes_inputs_lazily_and_keeps_nothing(loops: list[asyncio.AbstractEventLoop]) -> None:
    inputs = Counted(40)
    backend = AsyncBackend(echo, seed=4)
    pipeline = echo_pipeline(async_model(backend), async_model(backend))
    handed: list[weakref.ref[rp.PipelineRun]] = []
    for _, item in pipeline.stream(inputs, batch=rp.Batch(concurrency=3)):  # enumerate() would keep the last item
        assert isinstance(item, rp.PipelineRun)
        handed.append(weakref.ref(item))
        assert inputs.taken <= len(handed) + 3  # those handed over, and the runs in flight
        del item
        gc.collect()
        assert [ref() for ref in handed] == [None] * len(handed)
    assert len(handed) == 40 and backend.most_in_flight <= 3
    assert len(loops) == 1 and loops[0].is_closed()


def test_leaving_a_pipeline_stream_early_cancels_the_runs_in_flight() -> None:
    backend = Hanging(quick={"0"})
    inputs = Counted()
    for index, _ in echo_pipeline(async_model(backend)).stream(inputs, batch=rp.Batch(concurrency=3)):
        assert index == 0
        break
    assert backend.calls == inputs.taken == 3
    assert backend.cancelled == 2


def test_leaving_a_pipeline_astream_cancels_the_runs_in_flight() -> None:
    backend = Hanging(quick={"0"})
    inputs = Counted()

    async def scenario() -> None:
        outcomes = echo_pipeline(async_model(backend)).astream(inputs, batch=rp.Batch(concurrency=3))
        async with contextlib.aclosing(outcomes):
            async for index, _ in outcomes:
                assert index == 0
                break
        assert backend.cancelled == 2

    asyncio.run(scenario())
    assert backend.calls == inputs.taken == 3


def test_rpm_paces_every_request_of_a_pipeline() -> None:
    clock = FakeClock()
    shared = AsyncBackend(echo, seed=7, clock=clock)  # two links on one model share its budget
    pipeline = echo_pipeline(async_model(shared), async_model(shared))
    batch = pipeline.map([str(i) for i in range(6)], batch=rp.Batch(rpm=30, concurrency=3, clock=clock))
    assert [ended(item) for item in batch.items] == [str(i) for i in range(6)]
    gaps = [b - a for a, b in itertools.pairwise(shared.started)]
    assert len(shared.started) == 12 and min(gaps) >= 2.0 - 1e-9  # 30 a minute: one every 2 s


def test_each_model_has_a_rate_budget_of_its_own() -> None:
    limits = Limits(30, None, FakeClock())
    one, other = async_model(AsyncBackend(echo)), FunctionModel(echo, name="test:other")
    assert limits(one) is limits(one) is not limits(other)
    assert limits(one).backend is not one.backend and limits(one).name == one.name
    assert Limits(None, None, FakeClock())(one) is one


def test_a_pipeline_batch_draws_its_progress_and_says_to_await_inside_a_loop() -> None:
    stream = io.StringIO()
    pipeline = echo_pipeline(async_model(AsyncBackend(echo)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", stream)
        pipeline.map(["a", "b"], batch=rp.Batch(progress=True))
    assert stream.getvalue().rstrip().endswith("2/2") and "pipeline echoes [" in stream.getvalue()

    async def inside() -> None:
        pipeline.stream(["x"])

    with pytest.raises(rp.ConfigError, match=r"use `async for ... in pipeline.astream\(...\)`"):
        asyncio.run(inside())


def test_concurrency_must_be_a_whole_number() -> None:
    with pytest.raises(rp.ConfigError, match=r"concurrency must be a whole number of calls, got 2\.5"):
        rp.Batch(concurrency=2.5)  # type: ignore[arg-type]


# Pacing under hostile usage figures: a server's usage is data from outside, and no wait outlasts the deadline.


@pytest.mark.parametrize("reported", [float("inf"), 1e12, 10_000_000, float("nan"), "lots", -5])
def test_absurd_reported_usage_does_not_stall_the_token_pacer(reported: Any) -> None:
    def answer(prompt: Prompt) -> Completion:
        return Completion(echo(prompt), usage=Usage(10, reported))

    start = time.monotonic()
    results = ECHO.map(
        [str(i) for i in range(5)], model=FunctionModel(answer), batch=rp.Batch(concurrency=1, tpm=600_000), runs=True
    )
    assert time.monotonic() - start < 5  # one request's worth of debt at most, not hours of it
    assert all(isinstance(r, rp.Run) for r in results)


def test_the_deadline_bounds_a_wait_for_the_rate_limit() -> None:
    def answer(prompt: Prompt) -> Completion:
        return Completion(echo(prompt))  # no usage reported: the estimate stands

    inputs = [str(i) for i in range(4)]
    start = time.monotonic()
    results = ECHO.map(
        inputs,
        model=FunctionModel(answer),
        policy=rp.Policy(deadline=0.5),
        batch=rp.Batch(concurrency=4, tpm=60),  # a token a second
        runs=True,
    )
    assert time.monotonic() - start < 0.5 + 1.0
    assert isinstance(results[0], rp.Run)  # the first fits the bucket; the others would wait a minute each
    late = results[1:]
    assert all(isinstance(r, rp.ProviderTimeout) and r.code == "deadline" for r in late)
