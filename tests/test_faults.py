"""Every fault kind of the fault server, through a real HTTP round trip: the exact outcome of each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import robustprompt as rp
from robustprompt.testing._faults import TRANSIENT, Fault, FaultPlan, FaultServer, answer_from
from tests.models import Review, Sentiment, classify_task

KEY = "sk-fault-test"
POLICY = rp.Policy(backoff_initial=0.01, backoff_max=0.02)
label = answer_from(lambda review: {"label": "negative" if "bad" in review["text"] else "positive"})


MODELS = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-sonnet-4-5"}


@pytest.fixture(params=MODELS)
def api(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def serve(api: str) -> Callable[[tuple[Fault | None, ...]], FaultServer]:
    def make(script: tuple[Fault | None, ...]) -> FaultServer:
        return FaultServer(api, FaultPlan(rate=0.0, script=script, retry_after=0.1, hang=1.0), label, api_key=KEY)

    return make


@pytest.fixture
def model(api: str, client: httpx.Client) -> Callable[[FaultServer], rp.Model]:
    def make(server: FaultServer) -> rp.Model:
        return rp.model(
            MODELS[api], base_url=server.base_url, api_key=KEY, timeout=0.3, http_client=client, max_output_tokens=100
        )

    return make


Serve = Callable[[tuple[Fault | None, ...]], FaultServer]
Make = Callable[[FaultServer], rp.Model]


RETRIED = {
    Fault.RATE_LIMIT: "RateLimitError",
    Fault.RATE_LIMIT_MS: "RateLimitError",
    Fault.SERVER_ERROR: "ServerError",
    Fault.BAD_GATEWAY: "ServerError",
    Fault.UNAVAILABLE: "OverloadedError",
    Fault.OVERLOADED: "OverloadedError",
    Fault.HANG: "ProviderTimeout",
    Fault.RESET: "ProviderConnectionError",
    Fault.TRUNCATED: "ProviderConnectionError",
    Fault.MALFORMED_JSON: "ProviderConnectionError",
}


@pytest.mark.parametrize(("fault", "error"), RETRIED.items())
def test_transport_faults_are_retried_and_succeed(fault: Fault, error: str, serve: Serve, model: Make) -> None:
    with serve((fault,)) as server:
        run = classify_task().run(Review(text="bad phone"), model=model(server), policy=POLICY)
    assert run.output == Sentiment(label="negative")
    assert len(run.attempts) == 1
    assert run.attempts[0].transport_errors[0].startswith(error)
    assert server.early_retries == 0


@pytest.mark.parametrize(("fault", "error"), RETRIED.items())
def test_transport_faults_are_retried_on_the_default_async_transport(
    fault: Fault, error: str, serve: Serve, api: str
) -> None:
    with serve((fault,)) as server:
        model = rp.model(MODELS[api], base_url=server.base_url, api_key=KEY, timeout=0.3, max_output_tokens=100)
        run = asyncio.run(classify_task().arun(Review(text="bad phone"), model=model, policy=POLICY))
    assert run.output == Sentiment(label="negative")
    assert run.attempts[0].transport_errors[0].startswith(error)
    assert server.early_retries == 0


@pytest.mark.parametrize("fault", [Fault.SCHEMA_INVALID, Fault.LENGTH])
def test_answer_faults_are_reasked_and_succeed(fault: Fault, serve: Serve, model: Make) -> None:
    with serve((fault,)) as server:
        run = classify_task().run(Review(text="good"), model=model(server), policy=POLICY)
    assert run.output == Sentiment(label="positive")
    assert [a.ok for a in run.attempts] == [False, True]


def test_refusal_is_a_typed_error(serve: Serve, model: Make) -> None:
    with serve((Fault.REFUSAL,)) as server, pytest.raises(rp.RefusalError):
        classify_task().run(Review(text="x"), model=model(server), policy=POLICY)


def test_model_not_found_is_not_retried(serve: Serve, model: Make) -> None:
    with serve((Fault.MODEL_NOT_FOUND, None)) as server, pytest.raises(rp.ModelNotFoundError):
        classify_task().run(Review(text="x"), model=model(server), policy=POLICY)
    assert len(server.requests) == 1


def test_a_retry_after_is_never_jumped(serve: Serve, model: Make) -> None:
    with serve((Fault.RATE_LIMIT, Fault.RATE_LIMIT_MS, None)) as server:
        classify_task().run(Review(text="x"), model=model(server), policy=rp.Policy(transport_retries=3))
    assert server.counts == {"rate_limit": 1, "rate_limit_ms": 1, "ok": 1}
    assert server.early_retries == 0


def test_the_schedule_is_reproducible() -> None:
    plan = FaultPlan(rate=0.3, seed=11)
    draws = [plan.fault(i) for i in range(1000)]
    assert draws == [plan.fault(i) for i in range(1000)]
    faulted = sum(d is not None for d in draws)
    assert 240 <= faulted <= 360
    assert {d for d in draws if d is not None} == set(TRANSIENT)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    rate=st.floats(0.0, 0.9),
    kinds=st.lists(st.sampled_from([f for f in TRANSIENT if f is not Fault.HANG]), min_size=1, unique=True),
    retries=st.integers(0, 2),
    reasks=st.integers(0, 2),
    own_client=st.booleans(),  # the user's sync httpx client, or the default async transport
)
def test_under_any_fault_schedule_no_item_is_lost_and_budgets_hold(
    seed: int, rate: float, kinds: list[Fault], retries: int, reasks: int, own_client: bool, client: httpx.Client
) -> None:
    plan = FaultPlan(rate=rate, kinds=tuple(kinds), seed=seed, retry_after=0.01)
    policy = rp.Policy(transport_retries=retries, reasks=reasks, backoff_initial=0.001, backoff_max=0.002)
    inputs = [Review(text=f"review {i} {'bad' if i % 2 else 'good'}") for i in range(12)]
    with FaultServer("openai", plan, label, api_key=KEY) as server:
        given = client if own_client else None
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, timeout=2, http_client=given)
        results = classify_task().map(inputs, model=model, policy=policy, batch=rp.Batch(concurrency=4), runs=True)
    assert len(results) == len(inputs)  # every input accounted for, in order
    per_call = (retries + 1) * (reasks + 1)  # sends per attempt, times attempts (no other mode to move to)
    for value, result in zip(inputs, results, strict=True):
        run = result.run if isinstance(result, rp.RobustPromptError) else result
        assert isinstance(run, rp.Run)
        sent = sum(1 + len(a.transport_errors) for a in run.attempts)
        assert sent <= per_call
        if not isinstance(result, rp.RobustPromptError):
            assert result.output == Sentiment(label="negative" if "bad" in value.text else "positive")
    assert len(server.requests) <= per_call * len(inputs)
    assert server.early_retries == 0
