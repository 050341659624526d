"""Budgets over a whole call, fallbacks, circuit breakers and retirement warnings."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import warnings

import pytest
import tenacity

import robustprompt as rp
from robustprompt._breaker import Breakers
from robustprompt._lifecycle import ModelRetirementWarning, warn_retirement
from robustprompt.testing import FunctionModel, ScriptedModel
from tests.models import Review, Sentiment, classify_task

FAST = rp.Policy(backoff_initial=0.001, backoff_max=0.002)
OK = '{"label": "positive"}'


def policy(**kw: object) -> rp.Policy:
    return rp.Policy(backoff_initial=0.001, backoff_max=0.002, **kw)  # type: ignore[arg-type]


def test_a_retired_model_goes_to_the_fallback_at_once_and_the_run_says_why() -> None:
    retired = ScriptedModel([rp.ModelNotFoundError("The model `gpt-4` does not exist", status=404)], name="test:old")
    fallback = ScriptedModel([OK], name="test:new")
    run = classify_task().run(Review(text="x"), model=retired, policy=policy(fallbacks=(fallback,)))
    assert run.output == Sentiment(label="positive")
    assert run.model == "test:new"
    assert len(retired.prompts) == 1  # not retried
    assert any("test:old failed: ModelNotFoundError" in note for note in run.notes)
    assert [a.model for a in run.attempts] == ["test:old", "test:new"]


def test_a_dead_model_costs_one_wasted_call_per_process() -> None:
    calls = []

    def gone(prompt: rp.Prompt) -> str:
        calls.append(prompt)
        raise rp.ModelNotFoundError("retired", status=404)

    retired = FunctionModel(gone, name="test:retired")
    fallback = FunctionModel(lambda p: OK, name="test:fallback")
    for _ in range(5):
        run = classify_task().run(Review(text="x"), model=retired, policy=policy(fallbacks=(fallback,)))
        assert run.model == "test:fallback"
    assert len(calls) == 1
    assert "skipped test:retired" in run.notes[0]


def test_an_output_failure_falls_back_and_keeps_every_attempt() -> None:
    weak = ScriptedModel(["nope", "still nope"], name="test:weak")
    strong = ScriptedModel([OK], name="test:strong")
    run = classify_task().run(Review(text="x"), model=weak, policy=policy(fallbacks=(strong,)))
    assert run.output == Sentiment(label="positive")
    assert len(run.attempts) == 3


def test_when_every_model_fails_the_last_error_is_raised_with_the_whole_run() -> None:
    a = ScriptedModel([rp.QuotaExceededError("no credit", status=429)], name="test:a")
    b = ScriptedModel([rp.AuthError("bad key", status=401)], name="test:b")
    with pytest.raises(rp.AuthError) as info:
        classify_task().run(Review(text="x"), model=a, policy=policy(fallbacks=(b,)))
    assert info.value.run is not None
    assert [x.model for x in info.value.run.attempts] == ["test:a", "test:b"]


def test_max_attempts_caps_requests_across_retries_reasks_and_fallbacks() -> None:
    flaky = FunctionModel(lambda p: (_ for _ in ()).throw(rp.ServerError("boom", status=500)), name="test:flaky")
    bad = FunctionModel(lambda p: "nope", name="test:bad")
    with pytest.raises(rp.RobustPromptError):
        classify_task().run(
            Review(text="x"), model=flaky, policy=policy(max_attempts=4, transport_retries=10, fallbacks=(bad,))
        )
    assert len(flaky.prompts) + len(bad.prompts) == 4


def test_the_deadline_ends_a_call_that_keeps_failing_validation() -> None:
    def slow_and_wrong(prompt: rp.Prompt) -> str:
        time.sleep(0.05)
        return "nope"

    model = FunctionModel(slow_and_wrong, name="test:slow")
    with pytest.raises(rp.OutputError, match="deadline"):  # the model answered, only never validly
        classify_task().run(Review(text="x"), model=model, policy=policy(deadline=0.12, reasks=50))
    assert 2 <= len(model.prompts) <= 4


def test_a_retry_after_past_the_deadline_gives_up_instead_of_retrying_early() -> None:
    limited = ScriptedModel([rp.RateLimitError("wait", retry_after=30), OK], name="test:limited")
    with pytest.raises(rp.RateLimitError):
        classify_task().run(Review(text="x"), model=limited, policy=policy(deadline=5, retry_after_cap=60))
    assert len(limited.prompts) == 1


def test_the_circuit_opens_after_sustained_failures_and_half_opens_after_the_cooldown() -> None:
    clock = [0.0]
    b = Breakers(clock=lambda: clock[0])
    for _ in range(3):
        assert b.allow("m", cooldown=10) is None
        b.failure("m", threshold=3)
    assert "circuit open" in (b.allow("m", cooldown=10) or "")
    clock[0] = 11
    assert b.allow("m", cooldown=10) is None  # the one trial
    assert "half-open" in (b.allow("m", cooldown=10) or "")
    b.failure("m", threshold=3)  # the trial failed: open again
    assert "circuit open" in (b.allow("m", cooldown=10) or "")
    clock[0] = 22
    assert b.allow("m", cooldown=10) is None
    b.success("m")
    assert b.allow("m", cooldown=10) is None


def test_an_open_circuit_routes_calls_to_the_fallback() -> None:
    failing = FunctionModel(lambda p: (_ for _ in ()).throw(rp.OverloadedError("busy", status=529)), name="test:busy")
    fallback = FunctionModel(lambda p: OK, name="test:spare")
    p = policy(transport_retries=0, breaker_failures=2, breaker_cooldown=60, fallbacks=(fallback,))
    for _ in range(5):
        assert classify_task()(Review(text="x"), model=failing, policy=p) == Sentiment(label="positive")
    assert len(failing.prompts) == 2  # then the circuit is open


def test_a_refused_output_mode_does_not_open_the_circuit() -> None:
    """A server that does not know a mode refuses every request in it: adapt's forced-mode candidates must not shut
    the model for the calls after them."""
    refused = rp.SchemaRejectedError("response_format: Input should be 'text' or 'json_object'", status=400)
    model = FunctionModel(
        lambda p: (_ for _ in ()).throw(refused) if p.mode is rp.OutputMode.JSON_SCHEMA else OK,
        name="test:picky",
        modes=(rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT),
    )
    forced = policy(transport_retries=0, breaker_failures=2, mode=rp.OutputMode.JSON_SCHEMA)
    for _ in range(4):
        with pytest.raises(rp.SchemaRejectedError):
            classify_task().run(Review(text="x"), model=model, policy=forced)
    assert classify_task()(Review(text="x"), model=model, policy=policy(breaker_failures=2)) == Sentiment(
        label="positive"
    )


def test_retirement_warning_names_the_replacement_and_the_command_once() -> None:
    profile = rp.ModelProfile("openai", "old-one", retired=dt.date(2026, 1, 1), replacement="openai:new-one")
    with pytest.warns(ModelRetirementWarning, match=r"was retired on 2026-01-01.*openai:new-one.*robustprompt migrate"):
        warn_retirement(profile, today=dt.date(2026, 11, 24))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_retirement(profile, today=dt.date(2026, 11, 24))  # once per model per process


def test_far_away_retirements_do_not_warn() -> None:
    profile = rp.ModelProfile("openai", "long-lived", retired=dt.date(2030, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_retirement(profile, today=dt.date(2026, 11, 24))


def test_policy_validation() -> None:
    with pytest.raises(rp.ConfigError, match="max_attempts"):
        rp.Policy(max_attempts=0)
    with pytest.raises(rp.ConfigError, match="tuple of models"):
        rp.Policy(fallbacks="openai:gpt-4.1")  # type: ignore[arg-type]


def test_a_model_the_catalog_says_is_retired_costs_one_call_even_under_concurrency() -> None:
    from concurrent.futures import ThreadPoolExecutor

    calls = []

    def gone(prompt: rp.Prompt) -> str:
        calls.append(prompt)
        time.sleep(0.05)  # long enough for every other call to arrive while this one is in flight
        raise rp.ModelNotFoundError("The model `old` does not exist", status=404)

    retired = FunctionModel(gone, name="test:old")
    profile = rp.ModelProfile("test", "old", retired=dt.date(2026, 1, 1), replacement="test:new")
    object.__setattr__(retired, "profile", profile)
    fallback = FunctionModel(lambda p: OK, name="test:new")
    with pytest.warns(ModelRetirementWarning), ThreadPoolExecutor(max_workers=16) as pool:
        runs = list(
            pool.map(
                lambda _: classify_task().run(Review(text="x"), model=retired, policy=policy(fallbacks=(fallback,))),
                range(32),
            )
        )
    assert all(run.model == "test:new" for run in runs)
    assert len(calls) == 1


def test_a_retired_date_that_slipped_does_not_stop_a_model_that_still_answers() -> None:
    alive = FunctionModel(lambda p: OK, name="test:slipped")
    profile = rp.ModelProfile("test", "slipped", retired=dt.date(2026, 1, 1))
    object.__setattr__(alive, "profile", profile)
    with pytest.warns(ModelRetirementWarning):
        runs = [classify_task().run(Review(text="x"), model=alive) for _ in range(3)]
    assert [run.model for run in runs] == ["test:slipped"] * 3
    assert len(alive.prompts) == 3


def test_the_retirement_warning_points_at_the_callers_line() -> None:
    old = FunctionModel(lambda p: OK, name="test:old-line")
    object.__setattr__(old, "profile", rp.ModelProfile("test", "old-line", retired=dt.date(2026, 1, 1)))
    with pytest.warns(ModelRetirementWarning) as caught:
        classify_task().run(Review(text="x"), model=old)
    assert caught[0].filename == __file__


def test_a_half_open_trial_that_ends_without_a_verdict_frees_the_slot() -> None:
    answers = iter([rp.ServerError("down", status=500), rp.ServerError("down", status=500), "not json", OK, OK])

    def answer(prompt: rp.Prompt) -> str:
        item = next(answers)
        if isinstance(item, Exception):
            raise item
        return item

    model = FunctionModel(answer, name="test:flaky-trial")
    p = policy(transport_retries=0, reasks=0, breaker_failures=2, breaker_cooldown=0.05)
    for _ in range(2):
        with pytest.raises(rp.ServerError):
            classify_task().run(Review(text="x"), model=model, policy=p)
    time.sleep(0.06)
    with pytest.raises(rp.OutputError):  # the half-open trial: the model answers, badly
        classify_task().run(Review(text="x"), model=model, policy=p)
    assert classify_task().run(Review(text="x"), model=model, policy=p).output == Sentiment(label="positive")


def test_a_deadline_bounds_a_request_already_in_flight() -> None:
    import httpx

    from robustprompt.testing import OpenAIServer, Reply
    from robustprompt.testing._openai_server import chat_reply

    slow = chat_reply('{"label": "positive"}')
    with OpenAIServer(api_key="k") as server, httpx.Client() as client:
        server.enqueue(Reply(slow.status, slow.body, slow.headers, delay=3.0))
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="k", http_client=client)
        start = time.monotonic()
        with pytest.raises(rp.ProviderTimeout):
            classify_task().run(Review(text="x"), model=model, policy=policy(deadline=0.4))
        assert time.monotonic() - start < 2.0  # not the 3 s the server took
        assert len(server.requests) == 1  # and no retry started past the deadline


def test_a_spent_budget_after_a_schema_rejection_raises_the_rejection() -> None:
    def reject(prompt: rp.Prompt) -> str:
        raise rp.SchemaRejectedError("Invalid schema for response_format 'x'", status=400)

    model = FunctionModel(reject, name="test:rejects")
    profile = rp.ModelProfile("test", "rejects", modes=(rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT))
    object.__setattr__(model, "profile", profile)
    with pytest.raises(rp.SchemaRejectedError):
        classify_task().run(Review(text="x"), model=model, policy=policy(max_attempts=1))


def test_tenacity_takes_over_only_after_a_retryable_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    real_sync, real_async = tenacity.Retrying, tenacity.AsyncRetrying

    def sync(**kw: object) -> tenacity.Retrying:
        built.append("sync")
        return real_sync(**kw)  # type: ignore[arg-type]

    def asyn(**kw: object) -> tenacity.AsyncRetrying:
        built.append("async")
        return real_async(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tenacity, "Retrying", sync)
    monkeypatch.setattr(tenacity, "AsyncRetrying", asyn)
    task = classify_task()
    assert task(Review(text="x"), model=ScriptedModel([OK]), policy=FAST) == Sentiment(label="positive")
    assert built == []  # the common case: one send, no retry machinery
    busy = rp.OverloadedError("overloaded", status=529)
    run = task.run(Review(text="x"), model=ScriptedModel([busy, busy, OK]), policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].transport_errors == ("OverloadedError: overloaded (HTTP 529)",) * 2
    run = asyncio.run(task.arun(Review(text="x"), model=ScriptedModel([busy, OK]), policy=FAST))
    assert len(run.attempts[0].transport_errors) == 1
    assert built == ["sync", "async"]


def test_a_dead_mark_survives_a_late_success_of_a_call_sent_before_it() -> None:
    memory = Breakers()
    assert memory.allow("m", 30) is None  # a call goes out...
    memory.dead("m", "answered 404")  # ...another call learns the model is gone...
    memory.success("m")  # ...and the first one's answer lands afterwards
    assert memory.allow("m", 30) == "answered 404"


def test_later_calls_on_a_dead_model_raise_model_not_found_naming_the_replacement() -> None:
    gone = ScriptedModel([rp.ModelNotFoundError("retired", status=404)] * 3, name="test:old-dead")
    object.__setattr__(gone, "profile", rp.ModelProfile("test", "old-dead", replacement="test:new-alive"))
    with pytest.raises(rp.ModelNotFoundError):
        classify_task().run(Review(text="x"), model=gone, policy=FAST)
    for _ in range(2):
        with pytest.raises(rp.ModelNotFoundError, match="its replacement is test:new-alive") as info:
            classify_task().run(Review(text="x"), model=gone, policy=FAST)
        assert "robustprompt migrate TASK --cases FILE --from test:old-dead --to test:new-alive" in str(info.value)
        assert info.value.run is not None and "skipped test:old-dead" in info.value.run.notes[0]
    assert len(gone.prompts) == 1  # dead for the process: never called again


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "json_scheme"}, "Policy.mode must be an rp.OutputMode or one of"),
        ({"backoff_initial": -1}, "Policy.backoff_initial must be a finite number of seconds >= 0"),
        ({"backoff_max": float("nan")}, "Policy.backoff_max must be a finite number"),
        ({"retry_after_cap": -5}, "Policy.retry_after_cap must be"),
        ({"breaker_cooldown": -1}, "Policy.breaker_cooldown must be"),
        ({"deadline": float("nan")}, "Policy.deadline must be a finite number of seconds > 0"),
        ({"deadline": 0}, "Policy.deadline must be"),
        ({"transport_retries": 1.5}, "Policy.transport_retries must be a whole number"),
        ({"max_attempts": 0}, "Policy.max_attempts must be a whole number >= 1"),
    ],
)
def test_a_bad_policy_is_refused_at_construction_naming_the_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(rp.ConfigError, match=message):
        rp.Policy(**kwargs)  # type: ignore[arg-type]


def test_a_mode_given_by_name_is_the_mode() -> None:
    assert rp.Policy(mode="json_schema").mode is rp.OutputMode.JSON_SCHEMA  # type: ignore[arg-type]


def test_on_retired_takes_raise_or_replace() -> None:
    assert rp.Policy().on_retired == "raise"
    with pytest.raises(rp.ConfigError, match="on_retired must be 'raise' or 'replace'"):
        rp.Policy(on_retired="fallback")  # type: ignore[arg-type]


def test_a_gone_model_with_no_known_replacement_still_raises_under_replace() -> None:
    gone = ScriptedModel([rp.ModelNotFoundError("The model `x` does not exist", status=404)], name="test:gone")
    with pytest.raises(rp.ModelNotFoundError):
        classify_task().run(Review(text="x"), model=gone, policy=policy(on_retired="replace"))
