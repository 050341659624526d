"""Every fault kind of the fault server, through a real HTTP round trip: the exact outcome of each."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import robustprompt as rp
from robustprompt.testing._faults import TRANSIENT, Fault, FaultPlan, FaultServer, answer_from
from tests.models import Review, Sentiment, classify_task

KEY = "sk-fault-test"
POLICY = rp.Policy(backoff_initial=0.01, backoff_max=0.02)
label = answer_from(lambda review: {"label": "negative" if "bad" in review["text"] else "positive"})


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def serve(script: tuple[Fault | None, ...]) -> FaultServer:
    return FaultServer("openai", FaultPlan(rate=0.0, script=script, retry_after=0.1, hang=1.0), label, api_key=KEY)


def model(server: FaultServer, client: httpx.Client) -> rp.Model:
    return rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=KEY, timeout=0.3, http_client=client)


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
def test_transport_faults_are_retried_and_succeed(fault: Fault, error: str, client: httpx.Client) -> None:
    with serve((fault,)) as server:
        run = classify_task().run(Review(text="bad phone"), model=model(server, client), policy=POLICY)
    assert run.output == Sentiment(label="negative")
    assert len(run.attempts) == 1
    assert run.attempts[0].transport_errors[0].startswith(error)
    assert server.early_retries == 0


@pytest.mark.parametrize("fault", [Fault.SCHEMA_INVALID, Fault.LENGTH])
def test_answer_faults_are_reasked_and_succeed(fault: Fault, client: httpx.Client) -> None:
    with serve((fault,)) as server:
        run = classify_task().run(Review(text="good"), model=model(server, client), policy=POLICY)
    assert run.output == Sentiment(label="positive")
    assert [a.ok for a in run.attempts] == [False, True]


def test_refusal_is_a_typed_error(client: httpx.Client) -> None:
    with serve((Fault.REFUSAL,)) as server, pytest.raises(rp.RefusalError):
        classify_task().run(Review(text="x"), model=model(server, client), policy=POLICY)


def test_model_not_found_is_not_retried(client: httpx.Client) -> None:
    with serve((Fault.MODEL_NOT_FOUND, None)) as server, pytest.raises(rp.ModelNotFoundError):
        classify_task().run(Review(text="x"), model=model(server, client), policy=POLICY)
    assert len(server.requests) == 1


def test_a_retry_after_is_never_jumped(client: httpx.Client) -> None:
    with serve((Fault.RATE_LIMIT, Fault.RATE_LIMIT_MS, None)) as server:
        classify_task().run(Review(text="x"), model=model(server, client), policy=rp.Policy(transport_retries=3))
    assert server.counts == {"rate_limit": 1, "rate_limit_ms": 1, "ok": 1}
    assert server.early_retries == 0


def test_the_schedule_is_reproducible() -> None:
    plan = FaultPlan(rate=0.3, seed=11)
    draws = [plan.fault(i) for i in range(1000)]
    assert draws == [plan.fault(i) for i in range(1000)]
    faulted = sum(d is not None for d in draws)
    assert 240 <= faulted <= 360
    assert {d for d in draws if d is not None} == set(TRANSIENT)
