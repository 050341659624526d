"""Nothing raised for one input ends a batch: whatever goes wrong inside one call is that call's typed error."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

import robustprompt as rp
from robustprompt import _batch, _engine, _task, _transport, _validate
from robustprompt._breaker import Breakers
from robustprompt.adapters.openai import OpenAIChatAdapter
from robustprompt.testing import FunctionModel, OpenAIServer
from robustprompt.testing._openai_server import chat_reply
from tests.models import Review, Sentiment, classify_task

N = 6

# Every stage a call goes through, as (owner, attribute): each gets an exception injected on its third use.
STAGES: dict[str, tuple[Any, str]] = {
    "input serialisation": (_task.TaskDeclaration, "input_json"),
    "prompt rendering": (_engine, "_render"),
    "request building": (OpenAIChatAdapter, "prepare"),
    "the wire": (_transport.AiohttpTransport, "handle_async_request"),
    "reading the answer": (OpenAIChatAdapter, "read"),
    "parsing": (_engine, "parse"),
    "validation": (_validate.Validator, "validate"),
    "the breaker": (Breakers, "success"),
    "the rate limiter": (_batch._Bucket, "take"),
    "the cache": (rp.Cache, "get"),
}


class Injected(Exception):
    pass


def _inject(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, on_call: int = 3) -> None:
    original = getattr(owner, name)
    calls = itertools.count(1)

    def fail_now() -> None:
        if next(calls) == on_call:  # itertools.count is atomic under the GIL: threads share it safely
            raise Injected(f"injected into {name}")

    def failing(*args: Any, **kwargs: Any) -> Any:
        fail_now()
        return original(*args, **kwargs)

    async def afailing(*args: Any, **kwargs: Any) -> Any:
        fail_now()
        return await original(*args, **kwargs)

    monkeypatch.setattr(owner, name, afailing if asyncio.iscoroutinefunction(original) else failing)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key="k") as srv:
        srv.responder = lambda received: chat_reply('{"label": "positive"}')
        yield srv


@pytest.mark.parametrize("stage", STAGES.values(), ids=STAGES.keys())
def test_an_exception_at_any_stage_is_one_items_typed_error(
    stage: tuple[Any, str], server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    _inject(monkeypatch, *stage)
    model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="k")
    with rp.Cache(tmp_path / "c.sqlite") as cache:
        results = classify_task().map(
            [Review(text=f"r{i}") for i in range(N)],
            model=model,
            policy=rp.Policy(transport_retries=0, reasks=0),
            batch=rp.Batch(concurrency=1, rpm=60_000),
            cache=cache,
        )
    assert len(results) == N
    errors = [r for r in results if not isinstance(r, Sentiment)]
    assert len(errors) == 1 and isinstance(errors[0], rp.RobustPromptError)
    assert "Injected" in str(errors[0])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_single_call_ends_in_a_typed_error_keeping_the_original(mode: str) -> None:
    def answer(prompt: object) -> str:
        raise KeyError("a bug in the user's function")

    task, model = classify_task(), FunctionModel(answer)

    def call() -> object:
        if mode == "sync":
            return task.run(Review(text="x"), model=model)
        return asyncio.run(task.arun(Review(text="x"), model=model))

    with pytest.raises(rp.ConfigError, match="unexpected KeyError") as info:  # no answer yet: the code is at fault
        call()
    assert isinstance(info.value.__cause__, KeyError)


def test_a_lone_surrogate_answer_is_asked_again_and_loses_nothing(server: OpenAIServer) -> None:
    def reply(received: Any) -> Any:
        first_ask = '"r3"' in str(received.body) and received.body["messages"][-1]["content"].startswith("Input:")
        return chat_reply('{"label": "\ud800"}' if first_ask else '{"label": "positive"}')

    server.responder = reply
    model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="k")
    results = classify_task().map([Review(text=f"r{i}") for i in range(20)], model=model, runs=True)
    assert all(isinstance(r, rp.Run) and r.output == Sentiment(label="positive") for r in results)
    assert len(results[3].attempts) == 2  # the re-ask went out, with the surrogate replaced
    reask = [r.body["messages"] for r in server.requests if '"r3"' in str(r.body)][-1]
    assert "\ufffd" in reask[-2]["content"]
