"""Retry-After as openai-python's table reads it, with RFC 9110's "0 or a past date means now" and a 120 s cap."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

import robustprompt as rp
from robustprompt.adapters._common import retry_after
from robustprompt.testing import ScriptedModel
from tests.models import Review, Sentiment, classify_task

FAST = rp.Policy(backoff_initial=0.001, backoff_max=0.002)


def http_date(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "20"}, 20.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "120"}, 120.0),
        ({"retry-after": "121"}, 121.0),  # beyond the cap: the retry loop gives up on it
        ({"retry-after": "-10"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "NaN"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "-inf"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Zun, 29 Sep 2023 16:26:27 GMT"}, None),
        ({"retry-after": "Fri, 29 Sep 2023 16:26:27 GMT"}, 0.0),  # past: retry at once
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "nan", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "-5", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "0"}, 0.0),
        ({}, None),
    ],
)
def test_retry_after_header_table(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers) == expected


def test_a_future_http_date_is_the_seconds_until_it() -> None:
    assert retry_after({"retry-after": http_date(30)}) == pytest.approx(30, abs=2)


@pytest.mark.parametrize("asked", [float("nan"), float("inf"), -1.0])
def test_an_unusable_wait_falls_back_to_backoff_in_a_blocking_call(asked: float) -> None:
    model = ScriptedModel([rp.RateLimitError("slow down", retry_after=asked), '{"label": "negative"}'])
    run = classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert run.output == Sentiment(label="negative")
    assert len(model.prompts) == 2


@pytest.mark.parametrize("asked", [float("nan"), float("inf"), -1.0])
def test_an_unusable_wait_falls_back_to_backoff_in_an_async_call(asked: float) -> None:
    model = ScriptedModel([rp.RateLimitError("slow down", retry_after=asked), '{"label": "negative"}'])

    async def call() -> rp.Run[Sentiment]:
        # No deadline in the policy: before the fix, asyncio.sleep(nan) never returned.
        return await asyncio.wait_for(classify_task().arun(Review(text="x"), model=model, policy=FAST), 5)

    assert asyncio.run(call()).output == Sentiment(label="negative")


def test_zero_retries_at_once_and_the_default_cap_honours_two_minutes() -> None:
    assert rp.Policy().retry_after_cap == 120
    model = ScriptedModel([rp.RateLimitError("now", retry_after=0), '{"label": "positive"}'])
    start = time.monotonic()
    run = classify_task().run(Review(text="x"), model=model, policy=rp.Policy(backoff_initial=5))
    assert run.output == Sentiment(label="positive") and time.monotonic() - start < 1


def test_a_wait_beyond_the_default_cap_gives_up_typed() -> None:
    model = ScriptedModel([rp.RateLimitError("later", retry_after=121), '{"label": "positive"}'])
    with pytest.raises(rp.RateLimitError):
        classify_task().run(Review(text="x"), model=model, policy=FAST)
    assert len(model.prompts) == 1
