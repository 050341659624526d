"""Adapting on the two embedded models: small budgets, the task's own examples only."""

from __future__ import annotations

from pathlib import Path

import pytest

import robustprompt as rp
from robustprompt._renderings import Configuration
from tests.models import Review, Sentiment, classify_task

pytestmark = pytest.mark.local_model


@pytest.mark.parametrize("name", ["local:smollm2", "local:gemma3-270m"])
def test_adapt_on_a_real_model_writes_a_record_the_next_call_uses(name: str, tmp_path: Path) -> None:
    model = rp.model(name, temperature=0, max_output_tokens=32)
    task = classify_task()
    task.adaptations = tmp_path / "robustprompt.adapt.json"
    adaptation = task.adapt(model, budget=12, progress=False)
    assert adaptation.calls <= 12 and adaptation.tokens > 0
    assert all(0 <= s.correct <= s.valid <= s.n for s in adaptation.candidates)
    run = task.run(Review(text="Absolutely wonderful, I love it."), model=model)
    assert isinstance(run.output, Sentiment)
    assert run.configuration == adaptation.chosen.label


@pytest.mark.parametrize("name", ["local:smollm2", "local:gemma3-270m"])
def test_the_completion_layout_runs_raw_on_both_models(name: str) -> None:
    model = rp.model(name, temperature=0, max_output_tokens=32)
    policy = rp.Policy(configuration=Configuration("completion", "text"))
    run = classify_task().run(Review(text="Broke after one day, awful."), model=model, policy=policy)
    assert isinstance(run.output, Sentiment) and run.attempts[0].ok
    assert run.configuration == "completion/text, examples all"
