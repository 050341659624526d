"""A server that trickles: every phase of a request is bounded by `timeout`, and the whole call by its deadline.

Per-read timeouts never fire on a server sending one byte per interval; these tests use a fast trickle and small
budgets so that a call that is not cut off shows as a test over its bound, not as a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest

import robustprompt as rp
from robustprompt.testing import AnthropicServer, LoopbackServer, OpenAIServer, Reply
from robustprompt.testing._anthropic_server import message_reply
from robustprompt.testing._openai_server import chat_reply
from tests.models import Review, classify_task

ANSWER = '{"label": "positive"}'
APIS: dict[str, tuple[type[LoopbackServer], Callable[[str], Reply], str]] = {
    "openai": (OpenAIServer, chat_reply, "openai:gpt-4.1-mini"),
    "anthropic": (AnthropicServer, message_reply, "anthropic:claude-haiku-4-5"),
}
SLACK = 1.0  # seconds past the bound a call may take (scheduling on a busy machine)


@pytest.fixture(params=sorted(APIS))
def api(request: pytest.FixtureRequest) -> Iterator[tuple[LoopbackServer, Callable[[str], Reply], str]]:
    server_cls, reply, name = APIS[request.param]
    with server_cls(api_key="k") as server:
        yield server, reply, name


def _trickling(reply: Callable[[str], Reply], fault: str) -> Callable[[object], Reply]:
    return lambda received: replace(reply(ANSWER), fault=fault, interval=0.05)  # type: ignore[arg-type]


def _run(model: rp.Model, policy: rp.Policy, mode: str) -> object:
    task, review = classify_task(), Review(text="x")
    if mode == "sync":
        return task.run(review, model=model, policy=policy)
    return asyncio.run(task.arun(review, model=model, policy=policy))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fault", ["trickle_headers", "trickle_body"])
def test_the_deadline_ends_a_trickling_call(
    api: tuple[LoopbackServer, Callable[[str], Reply], str], fault: str, mode: str
) -> None:
    server, reply, name = api
    server.responder = _trickling(reply, fault)
    model = rp.model(name, base_url=server.base_url, api_key="k", timeout=30)
    start = time.monotonic()
    with pytest.raises(rp.ProviderTimeout) as info:
        _run(model, rp.Policy(deadline=0.8, backoff_initial=0.01), mode)
    assert time.monotonic() - start < 0.8 + SLACK
    assert info.value.code == "deadline"  # the call's own deadline, not a provider fault the breaker counts


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fault", ["trickle_headers", "trickle_body"])
def test_timeout_bounds_each_phase_of_a_request(
    api: tuple[LoopbackServer, Callable[[str], Reply], str], fault: str, mode: str
) -> None:
    server, reply, name = api
    server.responder = _trickling(reply, fault)
    model = rp.model(name, base_url=server.base_url, api_key="k", timeout=0.4)
    start = time.monotonic()
    with pytest.raises(rp.ProviderTimeout, match=r"no answer within 0\.4 s"):
        _run(model, rp.Policy(transport_retries=0), mode)
    assert time.monotonic() - start < 2 * 0.4 + SLACK  # headers, then body: two phases at most


def test_a_client_of_the_users_own_bounds_the_body_phase(
    api: tuple[LoopbackServer, Callable[[str], Reply], str],
) -> None:
    server, reply, name = api
    server.responder = _trickling(reply, "trickle_body")
    with httpx.Client() as client:
        model = rp.model(name, base_url=server.base_url, api_key="k", timeout=0.4, http_client=client)
        start = time.monotonic()
        with pytest.raises(rp.ProviderTimeout):
            _run(model, rp.Policy(transport_retries=0), "sync")
    assert time.monotonic() - start < 0.4 + SLACK


@pytest.mark.parametrize("fault", ["trickle_headers", "trickle_body"])
def test_the_deadline_ends_a_trickling_call_on_a_client_of_the_users_own(
    api: tuple[LoopbackServer, Callable[[str], Reply], str], fault: str
) -> None:
    server, reply, name = api
    server.responder = _trickling(reply, fault)
    with httpx.Client() as client:  # httpx's own transport: its timeout bounds each read only
        model = rp.model(name, base_url=server.base_url, api_key="k", timeout=30, http_client=client)
        start = time.monotonic()
        with pytest.raises(rp.ProviderTimeout) as info:
            _run(model, rp.Policy(deadline=0.8, backoff_initial=0.01), "sync")
        assert time.monotonic() - start < 0.8 + SLACK
    assert info.value.code == "deadline"


def test_one_trickling_item_does_not_hold_up_a_batch(
    api: tuple[LoopbackServer, Callable[[str], Reply], str],
) -> None:
    server, reply, name = api
    slow = _trickling(reply, "trickle_body")

    def respond(received: object) -> Reply:
        return slow(received) if "slow" in str(getattr(received, "body", "")) else reply(ANSWER)

    server.responder = respond
    model = rp.model(name, base_url=server.base_url, api_key="k", timeout=30)
    reviews = [Review(text="slow" if i == 3 else f"fine {i}") for i in range(10)]
    start = time.monotonic()
    results = classify_task().map(reviews, model=model, policy=rp.Policy(deadline=0.8), batch=rp.Batch(concurrency=4))
    assert time.monotonic() - start < 0.8 + SLACK
    assert isinstance(results[3], rp.ProviderTimeout)
    assert all(r == classify_task().validator.model(label="positive") for i, r in enumerate(results) if i != 3)
