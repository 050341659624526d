"""Property: under any schedule of faults, hostile ones included, a batch loses no input, every outcome is a value
or a typed error, the wall time stays within the deadline plus a small slack, and memory stays bounded."""

from __future__ import annotations

import resource
import time
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import robustprompt as rp
from robustprompt.testing import Fault, FaultPlan, FaultServer, answer_from


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


TASK = rp.Task("classify", input=Review, output=Sentiment, instructions="Classify the sentiment of the review.")
ANSWER = answer_from(lambda review: {"label": "negative" if "bad" in review["text"] else "positive"})
N = 6
DEADLINE = 1.0
SLACK = 1.0  # seconds: the event loop's start and shutdown, the server's threads
API_NAMES = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-haiku-4-5"}


def _batch(api: str, plan: FaultPlan) -> tuple[list[object], float]:
    with FaultServer(api, plan, ANSWER, api_key="sk-schedule-0123456789") as server:
        model = rp.model(API_NAMES[api], base_url=server.base_url, api_key="sk-schedule-0123456789", timeout=0.4)
        policy = rp.Policy(deadline=DEADLINE, transport_retries=1, reasks=1, backoff_initial=0.01, backoff_max=0.02)
        inputs = [Review(text=f"{'bad' if i % 2 else 'good'} {i}") for i in range(N)]
        start = time.monotonic()
        results = TASK.map(inputs, model=model, policy=policy, batch=rp.Batch(concurrency=3, tpm=6_000_000))
        return results, time.monotonic() - start


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(st.sampled_from([*Fault, None]), min_size=N, max_size=2 * N),
    api=st.sampled_from(sorted(API_NAMES)),
)
def test_any_fault_schedule_loses_nothing_and_ends_in_time(script: list[Fault | None], api: str) -> None:
    rp.reset()  # a 404 earlier in the schedule marks the model dead for the process
    _, clean = _batch(api, FaultPlan(rate=0.0))  # how long the machine takes right now, imports included
    before = _peak_mb()
    results, wall = _batch(api, FaultPlan(rate=0.0, script=tuple(script), retry_after=0.01, hang=3.0, trickle=0.05))
    assert len(results) == N
    for i, result in enumerate(results):
        assert isinstance(result, (Sentiment, rp.RobustPromptError)), type(result)
        if isinstance(result, Sentiment):
            assert result.label == ("negative" if i % 2 else "positive")
    assert wall < DEADLINE + SLACK + 2 * clean  # a slow machine stretches the slack, never the deadline
    assert _peak_mb() - before < 3 * 32 + 32  # a bomb is refused near the 32 MiB cap, not inflated to 512 MiB
