"""Hostile answers and responses: each ends in a bounded, typed error; nothing crashes or hangs."""

from __future__ import annotations

import httpx
import pytest

import robustprompt as rp
from robustprompt.testing import OpenAIServer, Reply, ScriptedModel
from robustprompt.testing._openai_server import chat_reply
from tests.loopback import server_fixture
from tests.models import Review, classify_task

HOSTILE_ANSWERS = {
    "100 MB answer": "x" * 100_000_000,
    "nesting 100k deep": "[" * 100_000 + "]" * 100_000,
    "NaN and Infinity": '{"label": NaN, "score": Infinity}',
    "duplicate keys": '{"label": "positive", "label": "negative"}',
    "huge number": '{"label": ' + "9" * 100_000 + "}",
    "lone surrogate": '{"label": "\ud800"}',
    "control characters": '{"label": "pos\x00itive"}',
}


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_hostile_answers_end_in_an_output_error(answer: str) -> None:
    model = ScriptedModel([answer, answer])
    with pytest.raises(rp.OutputError) as info:
        classify_task().run(Review(text="x"), model=model, policy=rp.Policy(reasks=1))
    run = info.value.run
    assert len(run.attempts) == 2
    assert all(a.errors for a in run.attempts)
    reask = model.prompts[1].messages
    assert len(reask[-2].content) <= 2_100  # the hostile answer is trimmed before it is sent back


server = server_fixture(lambda: OpenAIServer(api_key="k"))


def test_a_100_mb_response_is_refused_at_the_size_cap(server: OpenAIServer) -> None:
    server.enqueue(Reply(200, b'{"choices": "' + b"x" * 100_000_000 + b'"}'))
    with httpx.Client() as client:
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="k", http_client=client)
        with pytest.raises(rp.ProviderError, match="max_response_bytes"):
            classify_task().run(Review(text="x"), model=model)


def test_invalid_utf8_in_a_response_is_a_retryable_connection_error(server: OpenAIServer) -> None:
    good = chat_reply('{"label": "positive"}')
    server.enqueue(Reply(200, good.body.replace(b"positive", b"pos\xff\xfeitive")), good)
    with httpx.Client() as client:
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="k", http_client=client)
        run = classify_task().run(Review(text="x"), model=model, policy=rp.Policy(backoff_initial=0.01))
    assert run.attempts[0].transport_errors[0].startswith("ProviderConnectionError")


@pytest.mark.parametrize("reported", [float("inf"), 1e12, 10_000_000, -3])
def test_absurd_reported_usage_is_bounded_by_what_one_request_can_use(server: OpenAIServer, reported: float) -> None:
    server.enqueue(chat_reply('{"label": "positive"}', prompt_tokens=reported, completion_tokens=reported))  # type: ignore[arg-type]
    with httpx.Client() as client:
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="k", http_client=client)
        usage = classify_task().run(Review(text="x"), model=model).usage
    assert 0 <= usage.input_tokens <= model.profile.context_window
    assert 0 <= usage.output_tokens <= model.profile.max_output_tokens
