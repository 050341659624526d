"""Pipelines: only validated values cross a hand-off; a failing link falls back, hands on its default, or stops
the run with an error naming it; the trace says what every link did."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import robustprompt as rp
from robustprompt._completion import Completion, Usage
from robustprompt._pipeline import Link, Pipeline, PipelineError, PipelineRun, Step
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Prompt
from robustprompt._tokens import TokenCount, count_tokens
from robustprompt.evals import link_case_results
from robustprompt.testing import FunctionModel

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NO_REASK = rp.Policy(reasks=0, transport_retries=0)


def non_negative(value: int) -> str | None:
    return None if value >= 0 else f"{value} is negative"


INC: rp.Task[int, int] = rp.Task("inc", input=int, output=int, instructions="Add one.", checks=[non_negative])


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative", "neutral"]


CLASSIFY: rp.Task[Review, Sentiment] = rp.Task(
    "classify", input=Review, output=Sentiment, instructions="Classify the review."
)


def given_input(prompt: Prompt) -> Any:
    """The input value the prompt carries (the data block of its last "Input:" turn, past any re-ask)."""
    inputs = [m.content for m in prompt.messages if m.role == "user" and m.content.startswith("Input:")]
    return json.loads(inputs[-1].split("\n", 1)[1])


def model_of(fn: Callable[[Any], Any], name: str, tokens: int = 0) -> FunctionModel:
    """A model answering `{"answer": fn(input)}` (or raising what fn raises), `tokens` in and out per call."""
    return FunctionModel(
        lambda p: Completion(json.dumps({"answer": fn(given_input(p))}), usage=Usage(tokens, tokens)), name=name
    )


def dead(name: str) -> FunctionModel:
    def gone(_: Prompt) -> str:
        raise rp.ModelNotFoundError("the model does not exist", provider="test", model=name)

    return FunctionModel(gone, name=name)


def inc_link(name: str, model: rp.Model, **options: Any) -> Link[int]:
    return Link(name, INC, model=model, policy=NO_REASK, **options)


# ------------------------------------------------------------------------------------------------ chains


def test_a_chain_hands_each_validated_value_on_and_traces_every_link() -> None:
    first, second = model_of(lambda n: n + 1, "test:first", tokens=3), model_of(lambda n: n * 10, "test:second")
    pipeline = Pipeline("chain", [inc_link("a", first), inc_link("b", second), Step("c", lambda n: f"#{n}")])
    run = pipeline.run(4)
    assert run.output == "#50" and run.values == {"a": 5, "b": 50, "c": "#50"} and run.ok
    assert [given_input(p) for p in second.prompts] == [5]
    a = run.trace["a"]
    assert (a.kind, a.outcome, a.model, a.mode, a.attempts, a.repairs) == ("task", "ok", "test:first", "prompted", 1, 0)
    assert a.usage == Usage(3, 3) and run.usage == Usage(3, 3) and a.run is not None and a.error is None
    assert run.trace["c"].kind == "step" and run.trace["c"].model is None and run.stopped_at is None


def test_an_invalid_answer_never_reaches_the_next_link_and_the_error_names_the_link() -> None:
    bad = FunctionModel(lambda _: '{"answer": "many"}', name="test:bad")
    after = model_of(lambda n: n, "test:after")
    pipeline = Pipeline("chain", [inc_link("count", bad), inc_link("double", after), Step("show", str)])
    with pytest.raises(PipelineError) as caught:
        pipeline.run(7)
    error = caught.value
    assert after.prompts == []  # nothing invalid passed downstream
    assert error.link == "count" and error.input == 7 and isinstance(error.__cause__, rp.OutputError)
    assert str(error).startswith("pipeline 'chain' stopped at link 'count': OutputError: inc on test:bad")
    assert error.run is not None and [a.raw for a in error.attempts] == ['{"answer": "many"}']
    partial = error.pipeline_run
    assert [t.outcome for t in partial.trace.values()] == ["failed", "skipped", "skipped"]
    assert partial.output is None and partial.stopped_at == "count" and partial.values == {}
    assert isinstance(error, rp.RobustPromptError)


def test_a_plausible_value_that_fails_the_links_checks_stops_it() -> None:
    pipeline = Pipeline("chain", [inc_link("a", model_of(lambda n: -n, "test:liar")), Step("b", str)])
    with pytest.raises(PipelineError) as caught:
        pipeline.run(3)
    assert caught.value.link == "a" and "check non_negative failed: -3 is negative" in str(caught.value)


def test_a_dead_model_falls_back_to_the_links_fallback() -> None:
    spare = model_of(lambda n: n + 1, "test:spare")
    pipeline = Pipeline("chain", [inc_link("a", dead("test:dead"), fallback=spare), Step("b", str)])
    run = pipeline.run(1)
    assert run.output == "2" and run.trace["a"].outcome == "fallback" and run.trace["a"].model == "test:spare"
    assert not run.ok and "degraded: a fallback" in run.format_trace()


def test_the_fallback_follows_the_policys_own_fallbacks() -> None:
    first_spare, second_spare = dead("test:spare1"), model_of(lambda n: n, "test:spare2")
    link = Link("a", INC, model=dead("test:dead"), policy=rp.Policy(fallbacks=(first_spare,)), fallback=second_spare)
    assert link.effective_policy is not None and link.effective_policy.fallbacks == (first_spare, second_spare)
    assert Pipeline("p", [link]).run(5).trace["a"].model == "test:spare2"
    assert Link("a", INC).effective_policy is None


def test_a_failing_link_hands_on_its_declared_default() -> None:
    downstream = FunctionModel(lambda p: json.dumps({"label": "negative"}), name="test:down")
    pipeline = Pipeline(
        "reviews",
        [
            Link("classify", CLASSIFY, model=dead("test:dead"), default=Sentiment(label="neutral")),
            Link("again", CLASSIFY, model=downstream, input=lambda s: Review(text=s.label)),
        ],
    )
    run = pipeline.run(Review(text="meh"))
    assert run.values["classify"] == Sentiment(label="neutral") and run.output == Sentiment(label="negative")
    assert given_input(downstream.prompts[0]) == {"text": "neutral"}
    trace = run.trace["classify"]
    assert trace.outcome == "default" and trace.error is not None and trace.error.startswith("ModelNotFoundError")
    assert "classify: ModelNotFoundError" in run.format_trace()


def test_a_default_is_validated_when_the_link_is_declared() -> None:
    with pytest.raises(rp.ConfigError, match="link 'a': the default does not match task 'classify'"):
        Link("a", CLASSIFY, default={"label": "happy"})  # type: ignore[misc]
    with pytest.raises(rp.ConfigError, match=r"link 'a': the default fails task 'inc'.s checks: check non_negative"):
        Link("a", INC, default=-1)
    assert Link("a", CLASSIFY, default={"label": "neutral"}).default == Sentiment(label="neutral")  # type: ignore[misc]
    assert Link("a", INC, default="3").default == 3  # type: ignore[misc]  # coerced like any answer


def test_a_config_error_is_never_hidden_behind_a_default() -> None:
    pipeline = Pipeline(
        "wired wrong",
        [
            inc_link("a", model_of(lambda n: n + 1, "test:a")),
            Link("b", CLASSIFY, model=dead("test:unused"), default=Sentiment(label="neutral")),
        ],
    )
    with pytest.raises(PipelineError) as caught:
        pipeline.run(1)
    assert caught.value.link == "b" and caught.value.input == 2 and isinstance(caught.value.__cause__, rp.ConfigError)
    assert "input does not match Review" in str(caught.value) and caught.value.run is None


def test_an_unknown_model_stops_the_link_with_a_config_error() -> None:
    with pytest.raises(PipelineError) as caught:
        Pipeline("p", [Link("a", INC, model="nosuch:model", default=0)]).run(1)
    assert isinstance(caught.value.__cause__, rp.ConfigError) and caught.value.pipeline_run.trace["a"].model is None


# ------------------------------------------------------------------------------------------------- steps


class Total(BaseModel):
    amount: int


def test_a_steps_output_type_validates_and_coerces_its_value() -> None:
    run = Pipeline("p", [Step("total", lambda n: {"amount": str(n)}, output=Total)]).run(4)
    assert run.output == Total(amount=4)
    with pytest.raises(PipelineError) as caught:
        Pipeline("p", [Step("total", lambda n: {"amount": "four"}, output=Total)]).run(4)
    assert caught.value.link == "total" and caught.value.run is None and caught.value.attempts == []
    assert "ValidationError" in str(caught.value)


def test_a_step_that_raises_fails_like_any_link() -> None:
    def broken(value: int) -> int:
        raise KeyError("total")

    with pytest.raises(PipelineError) as caught:
        Pipeline("p", [Step("parse", broken), Step("after", str)]).run(1)
    assert isinstance(caught.value.__cause__, KeyError) and caught.value.input == 1
    run = Pipeline("p", [Step("parse", broken, default=0), Step("after", str)]).run(1)
    assert run.output == "0" and run.trace["parse"].outcome == "default"


def test_a_steps_default_is_validated_against_its_output_type() -> None:
    with pytest.raises(rp.ConfigError, match="step 'total': the default does not match its output type"):
        Step("total", lambda n: n, output=Total, default={"amount": "x"})
    assert Step("total", lambda n: n, output=Total, default={"amount": 1}).default == Total(amount=1)
    assert Step("free", lambda n: n, default="anything").default == "anything"


def test_an_input_mapping_that_raises_is_the_links_failure() -> None:
    pipeline = Pipeline(
        "p", [Step("parts", lambda n: []), Link("first", INC, model=dead("test:x"), input=lambda parts: parts[0])]
    )
    with pytest.raises(PipelineError) as caught:
        pipeline.run(1)
    assert caught.value.link == "first" and caught.value.input == [] and isinstance(caught.value.__cause__, IndexError)


# ---------------------------------------------------------------------------------------------------- DAG


def branching(log: list[str] | None = None) -> Pipeline:
    def double(n: int) -> int:
        if log is not None:
            log.append(f"double {n}")
        return n * 2

    return Pipeline(
        "dag",
        [
            inc_link("inc", model_of(lambda n: n + 1, "test:inc")),
            Step("double", double, after=("input",)),
            Link(
                "sum", INC, model=model_of(lambda n: n, "test:sum"), after=("inc", "double"), input=lambda a, b: a + b
            ),
            Step("both", lambda total, original: (total, original), after=("sum", "input")),
        ],
    )


def test_a_dag_gives_each_link_the_values_it_names() -> None:
    run = branching().run(5)
    assert run.values == {"inc": 6, "double": 10, "sum": 16, "both": (16, 5)} and run.output == (16, 5)


def test_the_async_form_gives_the_same_run() -> None:
    run = asyncio.run(branching().arun(5))
    assert run.output == (16, 5) and list(run.trace) == list(run.values) == ["inc", "double", "sum", "both"]


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ([], "pipeline 'p' has no links"),
        ([Step("a", str), Step("a", str)], "pipeline 'p' has two links named 'a'"),
        ([Step("a", str, after=("b",)), Step("b", str)], "link 'a' runs after 'b', which is no earlier link"),
        (
            [Step("a", str), Step("b", str), Link("c", INC, after=("a", "b"))],
            "link 'c' takes 2 values (a, b): give input=lambda v0, v1: ...",
        ),
        (["not a link"], "'not a link' is not an rp.Link or an rp.Step"),
    ],
)
def test_wiring_mistakes_are_config_errors(links: list[Any], message: str) -> None:
    with pytest.raises(rp.ConfigError) as caught:
        Pipeline("p", links)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Step("input", str), "'input' names the pipeline's input"),
        (lambda: Step(" ", str), "a pipeline step needs a name"),
        (lambda: Step("a", str, after="b"), "after= takes a tuple of names: after=('b',)"),
        (lambda: Step("a", str, after=()), "after=() gives it nothing to run on"),
        (lambda: Step("a", "str"), "step 'a' takes a function, got str"),  # type: ignore[arg-type]
        (lambda: Link("a", str), "link 'a' takes an rp.Task, got type: wrap Python code in rp.Step"),  # type: ignore[arg-type]
        (lambda: Pipeline(" ", [Step("a", str)]), "a pipeline needs a name"),
    ],
)
def test_declaration_mistakes_are_config_errors(build: Callable[[], object], message: str) -> None:
    with pytest.raises(rp.ConfigError) as caught:
        build()
    assert message in str(caught.value)


class _LoggedBackend:
    """Answers after yielding to the event loop `yields` times, logging when each call starts and ends."""

    def __init__(self, name: str, log: list[str], answer: Callable[[Any], Any], yields: int = 3) -> None:
        self.name, self.log, self.answer, self.yields = name, log, answer, yields

    def complete(self, prompt: Prompt) -> Completion:
        self.log.append(f"{self.name} start")
        self.log.append(f"{self.name} end")
        return Completion(json.dumps({"answer": self.answer(given_input(prompt))}))

    async def acomplete(self, prompt: Prompt) -> Completion:
        self.log.append(f"{self.name} start")
        for _ in range(self.yields):
            await asyncio.sleep(0)
        self.log.append(f"{self.name} end")
        return Completion(json.dumps({"answer": self.answer(given_input(prompt))}))

    def count_tokens(self, text: str) -> TokenCount:
        return count_tokens(text, "estimate")


def logged(name: str, log: list[str], answer: Callable[[Any], Any], yields: int = 3) -> rp.Model:
    return rp.Model(f"test:{name}", ModelProfile("test", name), Settings(), _LoggedBackend(name, log, answer, yields))


def test_independent_links_run_concurrently_in_the_async_form() -> None:
    log: list[str] = []
    pipeline = Pipeline(
        "fan-out",
        [
            inc_link("left", logged("left", log, lambda n: n + 1)),
            inc_link("right", logged("right", log, lambda n: n + 2), after=("input",)),
            Step("join", lambda a, b: a + b, after=("left", "right")),
        ],
    )
    assert asyncio.run(pipeline.arun(1)).output == 5
    assert log[:2] == ["left start", "right start"]  # both in flight before either ended
    log.clear()
    assert pipeline.run(1).output == 5
    assert log == ["left start", "left end", "right start", "right end"]  # the blocking form: one at a time


def test_a_stop_in_the_async_form_cancels_the_links_still_running() -> None:
    log: list[str] = []
    pipeline = Pipeline(
        "fan-out",
        [
            inc_link("slow", logged("slow", log, lambda n: n, yields=50)),
            inc_link("broken", logged("broken", log, lambda n: "not a number"), after=("input",)),
            Step("join", lambda a, b: a + b, after=("slow", "broken")),
        ],
    )
    with pytest.raises(PipelineError) as caught:
        asyncio.run(pipeline.arun(1))
    assert caught.value.link == "broken" and "slow end" not in log
    outcomes = {name: t.outcome for name, t in caught.value.pipeline_run.trace.items()}
    assert outcomes == {"slow": "skipped", "broken": "failed", "join": "skipped"}


# ------------------------------------------------------------------------------------------------ batches


def flaky_pipeline() -> Pipeline:
    """`inc` fails on odd inputs; `label` fails on 5 (the input 4 plus one) and hands on its default then."""
    inc = model_of(lambda n: n + 1 if n % 2 == 0 else "odd", "test:inc")
    label = model_of(lambda n: "four" if n == 5 else f"n{n}", "test:label")
    task: rp.Task[int, str] = rp.Task(
        "label", input=int, output=str, instructions="Name it.", checks=[lambda s: s != "four"]
    )
    return Pipeline("flaky", [inc_link("inc", inc), Link("label", task, model=label, policy=NO_REASK, default="?")])


def stopped_at(error: rp.RobustPromptError) -> str:
    assert isinstance(error, PipelineError)
    return error.link


def test_map_keeps_input_order_and_counts_outcomes_per_link() -> None:
    batch = flaky_pipeline().map(range(8), batch=rp.Batch(concurrency=3))
    ended = [item.output if isinstance(item, PipelineRun) else stopped_at(item) for item in batch.items]
    assert ended == ["n1", "inc", "n3", "inc", "?", "inc", "n7", "inc"]
    assert batch.failed == 4
    outcomes = batch.outcomes()
    assert outcomes["inc"] == {"ok": 4, "failed": 4} and outcomes["label"] == {"ok": 3, "default": 1, "skipped": 4}
    table = batch.format_outcomes()
    assert table.startswith("pipeline flaky: 4 of 8 run(s) stopped\nlink   ok  fallback  default  failed  skipped")
    assert "inc    4   0         0        4       0" in table


def test_map_lists_an_input_that_does_not_match_the_pipelines_input_type() -> None:
    pipeline = Pipeline("typed", [Step("len", lambda r: len(r.text))], input=Review)
    batch = pipeline.map([{"text": "abc"}, {"txt": "x"}])
    assert isinstance(batch.items[0], PipelineRun) and batch.items[0].output == 3
    assert isinstance(batch.items[1], rp.ConfigError) and batch.runs[1] is None
    assert "pipeline 'typed': the input does not match its input type" in str(batch.items[1])
    assert batch.outcomes() == {"len": {"ok": 1}}


def test_map_arguments_and_event_loop_mistakes() -> None:
    pipeline = Pipeline("p", [Step("a", str)])
    with pytest.raises(rp.ConfigError, match="concurrency must be at least 1"):
        pipeline.map([1], batch=rp.Batch(concurrency=0))

    async def inside() -> None:
        pipeline.map([1])

    with pytest.raises(rp.ConfigError, match=r"use `await pipeline.amap\(...\)`"):
        asyncio.run(inside())


def test_format_trace_shows_every_link_and_the_errors() -> None:
    with pytest.raises(PipelineError) as caught:
        flaky_pipeline().run(1)
    text = caught.value.pipeline_run.format_trace()
    lines = text.splitlines()
    assert lines[0].startswith("pipeline flaky: stopped at inc (")
    assert lines[1].split() == ["link", "outcome", "model", "mode", "attempts", "repairs", "tokens", "latency"]
    assert lines[2].split()[:7] == ["inc", "failed", "test:inc", "prompted", "1", "0", "0"]
    assert lines[3].split() == ["label", "skipped", "-", "-", "-", "-", "-", "-"]
    assert lines[4].startswith("  inc: OutputError: inc on test:inc")


# ------------------------------------------------------------------------------------------ one link's model


def test_with_model_changes_one_link_and_keeps_the_rest() -> None:
    pipeline = flaky_pipeline()
    trial = pipeline.with_model("label", model_of(lambda n: "new", "test:new"))
    assert trial.run(0).output == "new" and pipeline.run(0).output == "n1"
    old, new = pipeline.link("label"), trial.link("label")
    assert isinstance(old, Link) and isinstance(new, Link) and (new.policy, new.default) == (old.policy, old.default)
    assert trial.link("inc") is pipeline.link("inc")
    with pytest.raises(rp.ConfigError, match="has no link 'lable' — did you mean 'label'"):
        pipeline.with_model("lable", "test:x")
    with pytest.raises(rp.ConfigError, match="link 'a' of pipeline 'p' is a Python step"):
        Pipeline("p", [Step("a", str)]).with_model("a", "test:x")


def test_case_results_for_a_pipeline_run_and_for_the_link() -> None:
    pipeline = flaky_pipeline()
    end, link = link_case_results(pipeline, "label", "c1", pipeline.run(2), model="B", expected={"answer": "n3"})
    assert end.ok and end.output == {"answer": "n3"} and end.correct is True and end.first_valid
    assert (end.attempts, end.model, end.mode, end.raw) == (2, "B", "prompted", '{"answer": "n3"}')
    assert link.ok and link.output == {"answer": "n3"} and link.expected is None and link.attempts == 1

    defaulted = pipeline.run(4)
    end, link = link_case_results(pipeline, "label", "c2", defaulted, model="B")
    assert end.ok and end.output == {"answer": "?"} and not end.first_valid
    assert not link.ok and link.error_kind == "OutputError"

    stopped = pipeline.map([1]).items[0]
    end, link = link_case_results(pipeline, "label", "c3", stopped, model="B")
    assert not end.ok and end.error_kind == "OutputError" and end.attempts == 1 and end.raw is None
    assert end.error is not None and end.error.startswith("pipeline 'flaky' stopped at link 'inc'")
    assert (link.ok, link.error_kind, link.attempts) == (False, "Skipped", 0)


def test_a_pipeline_ending_in_a_step_records_its_output_through_a_stand_in_task() -> None:
    typed = Pipeline("p", [Step("total", lambda n: {"amount": n}, output=Total)])
    assert typed.end_task.output_record(Total(amount=2)) == {"amount": 2}
    untyped = Pipeline("p", [Step("raw", lambda n: [n])])
    assert untyped.end_task.output_record([1]) == {"answer": [1]}
    pipeline = flaky_pipeline()
    last = pipeline.link("label")
    assert isinstance(last, Link) and pipeline.end_task is last.task


# ------------------------------------------------------------------------------------------ property


Behaviour = Literal["ok", "invalid", "unchecked", "dead"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.sampled_from(["ok", "invalid", "unchecked", "dead"]), st.booleans()), min_size=1, max_size=5)
)
def test_no_invalid_value_ever_crosses_a_hand_off(plan: list[tuple[Behaviour, bool]]) -> None:
    """Whatever each link's model does and whether it declares a default, every input a link receives is a
    validated value (its upstream's answer or default), and the run ends at the first link that fails with no
    default, or with the output the plan predicts."""
    rp.reset()  # each example's doubles are new models, but a freed one's key may come back
    received: list[list[Any]] = [[] for _ in plan]

    def answer(index: int, behaviour: Behaviour) -> Callable[[Any], Any]:
        def fn(n: Any) -> Any:
            received[index].append(n)
            if behaviour == "dead":
                raise rp.ModelNotFoundError("gone")
            return {"ok": n + 1, "invalid": "x", "unchecked": -1}[behaviour]

        return fn

    links = [
        inc_link(f"l{i}", model_of(answer(i, behaviour), f"test:l{i}"), **({"default": 100} if has_default else {}))
        for i, (behaviour, has_default) in enumerate(plan)
    ]
    expected: int | None = 0
    stop = None
    for i, (behaviour, has_default) in enumerate(plan):
        if behaviour == "ok":
            expected = (expected or 0) + 1
        elif has_default:
            expected = 100
        else:
            stop = f"l{i}"
            break
    pipeline = Pipeline("property", links)
    try:
        outcome: PipelineRun | PipelineError = pipeline.run(0)
    except PipelineError as exc:
        outcome = exc
    for values in received:
        assert all(isinstance(v, int) and v >= 0 for v in values)
    if stop is None:
        assert isinstance(outcome, PipelineRun) and outcome.output == expected
    else:
        assert isinstance(outcome, PipelineError) and outcome.link == stop
        index = int(stop[1:])
        assert all(not values for values in received[index + 1 :])


# ------------------------------------------------------------------------------------------ the example


@pytest.mark.local_model
def test_the_pipeline_example_runs_on_the_embedded_model() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "pipeline.py")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("pipeline review_to_record: ") >= 2, out
    for link in ("extract", "classify", "summarise", "record"):
        assert f"\n{link} " in out, out
    assert "local:gemma3-270m" in out and "grammar" in out
    assert "link       ok  fallback  default  failed  skipped" in out, out
