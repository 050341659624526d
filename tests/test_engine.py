from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

import robustprompt as rp
from robustprompt.testing import FunctionModel, ScriptedModel
from tests.models import Person, Review, Sentiment, classify_task

FAST = rp.Policy(backoff_initial=0.001, backoff_max=0.002)


def test_valid_answer_returns_the_typed_output() -> None:
    model = ScriptedModel(['{"label": "positive"}'])
    run = classify_task().run(Review(text="great"), model=model, policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert run.ok
    assert len(run.attempts) == 1
    assert run.attempts[0].repairs == ()


def test_messy_answer_is_repaired_and_the_repairs_recorded() -> None:
    model = ScriptedModel(['Sure! ```json\n{"label": "Positive",}\n```'])
    run = classify_task().run(Review(text="great"), model=model, policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].repairs


def test_invalid_first_answer_is_reasked_with_the_errors_and_the_second_returned() -> None:
    model = ScriptedModel(['{"label": "happy"}', '{"label": "positive"}'])
    run = classify_task().run(Review(text="great"), model=model, policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert [a.ok for a in run.attempts] == [False, True]
    reask = model.prompts[1].messages
    assert reask[-2] == rp.Message("assistant", '{"label": "happy"}')
    assert "happy" in reask[-1].content
    assert "positive" in reask[-1].content  # the allowed values are named for the model


def test_reask_budget_is_bounded_and_output_error_carries_every_attempt() -> None:
    model = ScriptedModel(["nope", "still nope", "never"])
    with pytest.raises(rp.OutputError) as info:
        classify_task().run(Review(text="x"), model=model, policy=rp.Policy(reasks=2))
    assert len(info.value.run.attempts) == 3
    assert all(not a.ok for a in info.value.run.attempts)
    assert [a.raw for a in info.value.run.attempts] == ["nope", "still nope", "never"]


def test_zero_reasks_means_one_attempt() -> None:
    model = ScriptedModel(["nope"])
    with pytest.raises(rp.OutputError):
        classify_task().run(Review(text="x"), model=model, policy=rp.Policy(reasks=0))
    assert len(model.prompts) == 1


def test_checks_failures_are_fed_back_like_validation_errors() -> None:
    def adult(p: Person) -> str | None:
        return None if p.age >= 18 else f"age {p.age} is under 18; only adults are listed"

    task = rp.Task("people", input=str, output=Person, instructions="Extract the person.", checks=[adult])
    model = ScriptedModel(['{"name": "Ann", "age": 12}', '{"name": "Ann", "age": 32}'])
    person = task("Ann is 32", model=model, policy=FAST)
    assert person.age == 32
    assert "only adults" in model.prompts[1].messages[-1].content


def test_retryable_provider_error_is_retried_then_succeeds() -> None:
    model = ScriptedModel([rp.RateLimitError("slow down", retry_after=0.01), '{"label": "negative"}'])
    run = classify_task().run(Review(text="bad"), model=model, policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert len(run.attempts) == 1
    assert run.attempts[0].transport_errors == ("RateLimitError: slow down",)


def test_transport_retry_budget_is_bounded() -> None:
    errors = [rp.ServerError("boom", status=500) for _ in range(5)]
    model = ScriptedModel(errors)
    with pytest.raises(rp.ServerError) as info:
        classify_task().run(Review(text="x"), model=model, policy=rp.Policy(transport_retries=2, backoff_initial=0.001))
    assert len(model.prompts) == 3
    assert info.value.run is not None
    assert len(info.value.run.attempts[0].transport_errors) == 2


def test_permanent_error_is_not_retried() -> None:
    model = ScriptedModel([rp.ModelNotFoundError("gone", status=404), '{"label": "positive"}'])
    with pytest.raises(rp.ModelNotFoundError):
        classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert len(model.prompts) == 1


def test_retry_after_beyond_the_cap_stops_instead_of_retrying_early() -> None:
    model = ScriptedModel([rp.RateLimitError("later", retry_after=120), '{"label": "positive"}'])
    with pytest.raises(rp.RateLimitError):
        classify_task().run(Review(text="x"), model=model, policy=rp.Policy(retry_after_cap=1))
    assert len(model.prompts) == 1


def test_refusal_is_a_typed_error() -> None:
    model = ScriptedModel([rp.Completion("", finish_reason="refusal", refusal="I can't help with that.")])
    with pytest.raises(rp.RefusalError, match="can't help"):
        classify_task().run(Review(text="x"), model=model, policy=FAST)


def test_truncated_answer_says_so_in_the_reask() -> None:
    model = ScriptedModel([rp.Completion('{"label": "pos', finish_reason="length"), '{"label": "positive"}'])
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert "cut off" in model.prompts[1].messages[-1].content


def test_schema_rejection_downgrades_the_mode_and_remembers_it() -> None:
    class Rejecting(FunctionModel):
        pass

    seen: list[rp.OutputMode] = []

    def answer(prompt: rp.Prompt) -> str:
        seen.append(prompt.mode)
        if prompt.mode is rp.OutputMode.JSON_SCHEMA:
            raise rp.SchemaRejectedError("Invalid schema for response_format 'classify'", status=400)
        return '{"label": "neutral"}'

    model = Rejecting(answer, name="test:downgrade")
    object.__setattr__(
        model,
        "profile",
        rp.ModelProfile("test", "downgrade", modes=(rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT)),
    )
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert run.output == Sentiment(label="neutral")
    assert run.mode is rp.OutputMode.JSON_OBJECT
    classify_task().run(Review(text="y"), model=model, policy=FAST)
    assert seen == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT, rp.OutputMode.JSON_OBJECT]


def test_examples_that_do_not_fit_are_dropped_deterministically() -> None:
    long = "word " * 600
    task = classify_task(
        examples=[
            rp.Example(Review(text="short one"), Sentiment(label="positive")),
            rp.Example(Review(text=long), Sentiment(label="negative")),
            rp.Example(Review(text="short two"), Sentiment(label="neutral")),
        ]
    )
    model = FunctionModel(
        lambda p: '{"label": "positive"}', context_window=800
    )  # 600 tokens for the prompt after a quarter for output
    run = task.run(Review(text="x"), model=model, policy=FAST)
    assert run.dropped_examples == (1,)
    assert len(model.prompts[0].messages) == 5  # two examples kept, then the input


def test_input_too_long_for_the_context_is_a_context_length_error() -> None:
    model = FunctionModel(lambda p: "{}", context_window=1100)
    with pytest.raises(rp.ContextLengthError, match="shorten the input"):
        classify_task().run(Review(text="word " * 2000), model=model)


def test_async_twin_gives_the_same_result() -> None:
    model = ScriptedModel(['{"label": "happy"}', '{"label": "positive"}'])
    run = asyncio.run(classify_task().arun(Review(text="great"), model=model, policy=FAST))
    assert run.output == Sentiment(label="positive")
    assert len(run.attempts) == 2
    assert asyncio.run(
        classify_task().acall(Review(text="x"), model=ScriptedModel(['{"label":"negative"}']))
    ) == Sentiment(label="negative")


def test_forcing_an_unsupported_mode_is_a_config_error() -> None:
    with pytest.raises(rp.ConfigError, match="does not support output mode"):
        classify_task().run(Review(text="x"), model=ScriptedModel([]), policy=rp.Policy(mode=rp.OutputMode.GRAMMAR))


def test_scripted_model_running_out_is_a_clear_error() -> None:
    with pytest.raises(rp.ConfigError, match="ran out"):
        classify_task().run(Review(text="x"), model=ScriptedModel([]))


def _two_mode_model(name: str, answer: Callable[[rp.Prompt], str | rp.Completion]) -> FunctionModel:
    model = FunctionModel(answer, name=name)
    profile = rp.ModelProfile("test", name, modes=(rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT))
    object.__setattr__(model, "profile", profile)
    return model


def test_a_server_that_keeps_ignoring_the_schema_mode_is_downgraded_for_later_calls() -> None:
    seen: list[rp.OutputMode] = []

    def answer(prompt: rp.Prompt) -> str:
        seen.append(prompt.mode)
        return 'Sure! Here it is: {"label": "positive"}'  # prose: no constrained decoder wrote this

    model = _two_mode_model("test:ignores-schema", answer)
    for text in ("a", "b", "c"):
        run = classify_task().run(Review(text=text), model=model, policy=FAST)
        assert run.output == Sentiment(label="positive")  # the repaired answer still counts
    classify_task().run(Review(text="d"), model=model, policy=FAST)
    assert seen == [rp.OutputMode.JSON_SCHEMA] * 3 + [rp.OutputMode.JSON_OBJECT]


def test_one_fenced_answer_does_not_demote_the_mode() -> None:
    answers = iter(['```json\n{"label": "positive"}\n```'] + ['{"label": "positive"}'] * 20)
    model = _two_mode_model("test:fenced-once", lambda p: next(answers))
    runs = [classify_task().run(Review(text=str(i)), model=model, policy=FAST) for i in range(20)]
    assert [r.attempts[-1].mode for r in runs] == [rp.OutputMode.JSON_SCHEMA] * 20


@pytest.fixture
def now() -> Iterator[list[float]]:
    """The process clock as a value the test moves; the real clock again afterwards, for the tests that follow."""
    moved = [0.0]
    rp.reset(clock=lambda: moved[0])
    yield moved
    rp.reset(clock=time.monotonic)


def test_a_demotion_lapses_and_the_mode_is_tried_again(now: list[float]) -> None:
    rejected = iter([rp.SchemaRejectedError("strict mode unsupported", status=400)])

    def answer(prompt: rp.Prompt) -> str:
        if prompt.mode is rp.OutputMode.JSON_SCHEMA:
            error = next(rejected, None)
            if error is not None:
                raise error
        return '{"label": "positive"}'

    model = _two_mode_model("test:rejects-once", answer)
    modes = lambda run: [a.mode for a in run.attempts]  # noqa: E731
    first = classify_task().run(Review(text="a"), model=model, policy=FAST)
    assert modes(first) == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT]
    assert modes(classify_task().run(Review(text="b"), model=model, policy=FAST)) == [rp.OutputMode.JSON_OBJECT]
    now[0] += 601  # past the demotion's ten minutes
    assert modes(classify_task().run(Review(text="c"), model=model, policy=FAST)) == [rp.OutputMode.JSON_SCHEMA]


def test_an_ignored_mode_with_an_invalid_answer_retries_in_the_next_mode_outside_the_reask_budget() -> None:
    answers = iter(["I think it is happy", '{"label": "negative"}'])
    model = _two_mode_model("test:ignores-schema-2", lambda p: next(answers))
    run = classify_task().run(Review(text="x"), model=model, policy=rp.Policy(reasks=0))
    assert run.output == Sentiment(label="negative")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT]
    assert "not valid" in model.prompts[1].messages[-1].content  # the errors travel with the new mode


def test_a_truncated_answer_in_a_constrained_mode_is_not_taken_for_an_ignored_mode() -> None:
    answers = iter([rp.Completion('{"label": "pos', finish_reason="length"), '{"label": "positive"}'])
    model = _two_mode_model("test:truncates", lambda p: next(answers))
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_SCHEMA]


def test_without_an_output_cap_the_output_share_leaves_room_for_the_prompt() -> None:
    model = FunctionModel(lambda p: '{"label": "positive"}', context_window=8192)
    object.__setattr__(
        model, "profile", rp.ModelProfile("test", "big-output", context_window=8192, max_output_tokens=8192)
    )
    run = classify_task().run(Review(text="x"), model=model)
    assert run.output == Sentiment(label="positive")
    assert run.dropped_examples == ()
