from __future__ import annotations

import asyncio
import json
import re
import threading
import warnings
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

import robustprompt as rp
from robustprompt._adapt import candidates, plan
from robustprompt._adaptation import AdaptationWarning, read_records
from robustprompt._completion import Completion, Usage
from robustprompt._prompt import Prompt
from robustprompt._renderings import INPUT_FORMATS, LAYOUTS, Configuration
from robustprompt.testing import FunctionModel


class Review(BaseModel):
    text: str


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


WORDS = {"good": "positive", "great": "positive", "lovely": "positive", "bad": "negative", "awful": "negative"}
EXAMPLES = [
    rp.Example(Review(text=text), Sentiment(label=label))
    for text, label in [
        ("good and great", "positive"),
        ("bad, just bad", "negative"),
        ("lovely fit", "positive"),
        ("awful seller", "negative"),
    ]
]


def make_task(tmp_path: Path, instructions: str = "Classify the review.") -> rp.Task[Review, Sentiment]:
    task = rp.Task("classify", input=Review, output=Sentiment, instructions=instructions, examples=EXAMPLES)
    task.adaptations = tmp_path / "robustprompt.adapt.json"
    return task


def last_input(prompt: Prompt) -> str:
    return (prompt.text or prompt.messages[-1].content).rsplit("Input:", 1)[1]


def truth(text: str) -> str:
    return next((label for word, label in WORDS.items() if word in text), "positive")


def picky(prompt: Prompt) -> str:
    """Right only with a completion-style text and the input as bare text: otherwise it always says positive."""
    shown = last_input(prompt)
    if prompt.text is not None and "{" not in shown:
        return json.dumps({"label": truth(shown)})
    return '{"label": "positive"}'


def test_adapt_finds_the_one_configuration_the_model_reads_within_budget(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    model = FunctionModel(picky)
    adaptation = task.adapt(model, budget=100, progress=False)  # the whole space: 24 candidates x 4 examples
    chosen = adaptation.chosen
    assert (chosen.layout, chosen.input_format) == ("completion", "text")
    assert adaptation.best.correct == adaptation.best.n == 4
    assert len(model.prompts) == adaptation.calls <= 100
    baseline = adaptation.score_of(adaptation.baseline) if adaptation.baseline else None
    assert baseline is not None and baseline.correct == 2  # the default says positive to everything
    # The record is loaded by the next call on that model, and the run says which configuration answered.
    run = task.run(Review(text="awful, awful"), model=model)
    assert run.output == Sentiment(label="negative")
    assert run.configuration == chosen.label


def test_the_plan_is_bounded_and_halves(tmp_path: Path) -> None:
    assert plan(48, 4, 1000) == [(48, 4)]
    rounds = plan(48, 4, 150)
    assert sum(a * c for a, c in rounds) <= 150
    assert rounds[0][0] == 48 and rounds[-1][0] < 48
    assert sum(a * c for a, c in plan(48, 4, 20)) <= 20  # a budget below the space: only the first ones scored
    assert plan(48, 4, 20)[0] == (20, 1)


def test_the_default_is_scored_first_so_a_tiny_budget_still_measures_it(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    adaptation = task.adapt(FunctionModel(picky), budget=1, progress=False, record=False)
    assert adaptation.chosen == adaptation.baseline and len(adaptation.candidates) == 1
    assert adaptation.untried == len(candidates(FunctionModel(picky), 3)) - 1
    assert not task.adaptations.exists()


def test_adapt_is_deterministic(tmp_path: Path) -> None:
    def scores(a: rp.Adaptation) -> list[tuple[str, int, int]]:
        return [(s.configuration.label, s.correct, s.n) for s in a.candidates]

    first = make_task(tmp_path).adapt(FunctionModel(picky), budget=50, progress=False, record=False)
    second = make_task(tmp_path).adapt(FunctionModel(picky), budget=50, progress=False, record=False)
    assert first.chosen == second.chosen and scores(first) == scores(second)


def test_ties_go_to_fewer_prompt_tokens(tmp_path: Path) -> None:
    task = make_task(tmp_path)  # an oracle: every configuration is right; the shortest prompt must win
    adaptation = task.adapt(FunctionModel(lambda p: json.dumps({"label": truth(last_input(p))})), progress=False)
    assert adaptation.chosen.examples == "none"
    fewest = min(s.prompt_tokens for s in adaptation.candidates if s.n == adaptation.best.n)
    assert adaptation.best.prompt_tokens == fewest


def test_output_modes_are_an_axis_when_the_model_has_several(tmp_path: Path) -> None:
    def grammar_only(prompt: Prompt) -> str:
        right = prompt.mode is rp.OutputMode.GRAMMAR
        return json.dumps({"label": truth(last_input(prompt)) if right else "positive"})

    model = FunctionModel(grammar_only, modes=(rp.OutputMode.PROMPTED, rp.OutputMode.GRAMMAR))
    adaptation = make_task(tmp_path).adapt(model, progress=False, record=False)
    assert adaptation.chosen.mode is rp.OutputMode.GRAMMAR


def full_text(prompt: Prompt) -> str:
    return prompt.text or prompt.system + "".join(m.content for m in prompt.messages)


def test_leave_one_out_never_shows_the_scored_example_as_a_shot(tmp_path: Path) -> None:
    model = FunctionModel(lambda p: '{"label": "positive"}')
    make_task(tmp_path).adapt(model, budget=40, progress=False, record=False)
    texts = [e.input.text for e in EXAMPLES]
    for prompt in model.prompts:
        scored = next(t for t in texts if t in last_input(prompt))
        assert full_text(prompt).count(scored) == 1  # as the input, never among the shots


def test_dev_cases_are_the_only_inputs_scored(tmp_path: Path) -> None:
    model = FunctionModel(picky)
    dev = [
        rp.Example(Review(text="good day"), Sentiment(label="positive")),
        rp.Example(Review(text="bad day"), Sentiment(label="negative")),
    ]
    adaptation = make_task(tmp_path).adapt(model, dev, progress=False, record=False)
    assert adaptation.scored_on == "2 dev case(s)"
    assert model.prompts and all(re.search(r"(good|bad) day", last_input(p)) for p in model.prompts)


def test_a_pool_selects_the_examples_the_task_carries(tmp_path: Path) -> None:
    """The model is right only when an example whose output is 'negative' mentions 'meh': only the pool has one."""

    def needs_meh(prompt: Prompt) -> str:
        text = prompt.text or prompt.system + "".join(m.content for m in prompt.messages)
        knows = "so-so meh" in text.rsplit("Input:", 1)[0]
        shown = last_input(prompt)
        label = "negative" if "meh" in shown and knows else truth(shown) if "meh" not in shown else "positive"
        return json.dumps({"label": label})

    pool = [
        rp.Example(Review(text="so-so meh"), Sentiment(label="negative")),
        rp.Example(Review(text="great"), Sentiment(label="positive")),
    ]
    dev = [rp.Example(Review(text=f"meh {i}"), Sentiment(label="negative")) for i in range(3)]
    task = make_task(tmp_path)
    adaptation = task.adapt(FunctionModel(needs_meh), dev, pool=pool, progress=False)
    assert adaptation.chosen.pool is not None
    assert any("meh" in i for i, _ in adaptation.chosen.pool)
    assert adaptation.best.correct == 3
    with pytest.raises(rp.ConfigError, match="keep them apart"):
        task.adapt(FunctionModel(needs_meh), pool, pool=pool, progress=False, record=False)


def test_the_record_round_trips(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    adaptation = task.adapt(FunctionModel(picky), budget=40, progress=False)
    [read] = read_records(task.adaptations)
    assert read.to_json() == json.loads(json.dumps(adaptation.to_json()))
    assert read.chosen == adaptation.chosen
    entry = json.loads(task.adaptations.read_text())["records"][0]
    interval = entry["candidates"][0]["interval"]
    assert 0 <= interval[0] <= entry["candidates"][0]["accuracy"] <= interval[1] <= 1


def test_a_changed_task_makes_the_record_stale(tmp_path: Path) -> None:
    model = FunctionModel(picky)
    make_task(tmp_path).adapt(model, budget=40, progress=False)
    changed = make_task(tmp_path, instructions="Classify the product review.")
    with pytest.warns(AdaptationWarning, match="another version of the task"):
        run = changed.run(Review(text="awful"), model=model)
    assert run.configuration == model.profile.default_configuration.label
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every call
        changed.run(Review(text="awful"), model=model)


def test_an_unreadable_record_file_warns_and_falls_back(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    task.adaptations.write_text("{not json")
    with pytest.warns(AdaptationWarning, match="not a robustprompt adaptation record file"):
        run = task.run(Review(text="good"), model=FunctionModel(picky))
    assert run.configuration == "turns/json, examples all"


def test_paid_answers_are_reused_from_the_cache(tmp_path: Path) -> None:
    cache = rp.Cache(tmp_path / "cache.sqlite")
    model = FunctionModel(picky)
    first = make_task(tmp_path).adapt(model, budget=40, progress=False, cache=cache, record=False)
    again = make_task(tmp_path).adapt(model, budget=40, progress=False, cache=cache, record=False)
    assert first.calls > 0
    assert again.calls < first.calls and again.chosen == first.chosen
    cache.close()


def test_the_async_twin_chooses_the_same(tmp_path: Path) -> None:
    sync = make_task(tmp_path).adapt(FunctionModel(picky), budget=60, progress=False, record=False)
    task = make_task(tmp_path)
    result = asyncio.run(task.aadapt(FunctionModel(picky), budget=60, progress=False, record=False))
    assert result.chosen == sync.chosen
    assert [(s.correct, s.n) for s in result.candidates] == [(s.correct, s.n) for s in sync.candidates]


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    with pytest.raises(rp.ConfigError, match="budget"):
        task.adapt(FunctionModel(picky), budget=0)
    lone = rp.Task("one", input=Review, output=Sentiment, instructions="Classify.", examples=EXAMPLES[:1])
    with pytest.raises(rp.ConfigError, match="at least 2"):
        lone.adapt(FunctionModel(picky))
    with pytest.raises(rp.ConfigError, match="held-out cases"):
        task.adapt(FunctionModel(picky), pool=EXAMPLES)


def test_the_plan_is_printed_before_the_first_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_task(tmp_path).adapt(FunctionModel(picky), budget=30, progress=None, record=False)
    err = capsys.readouterr().err
    assert "adapting classify to test:function" in err and "(budget 30)" in err


def test_a_completion_from_usage_is_counted_as_cost(tmp_path: Path) -> None:
    def billed(prompt: Prompt) -> Completion:
        return Completion(picky(prompt), usage=Usage(10, 2), model_id="x")

    adaptation = make_task(tmp_path).adapt(FunctionModel(billed), budget=20, progress=False, record=False)
    assert adaptation.tokens == 12 * adaptation.calls


def test_a_policy_configuration_overrides_the_record(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    model = FunctionModel(picky)
    task.adapt(model, budget=60, progress=False)
    forced = Configuration("turns", "json")
    run = task.run(Review(text="awful"), model=model, policy=rp.Policy(configuration=forced))
    assert run.configuration == forced.label and run.output == Sentiment(label="positive")


def test_similar_examples_are_chosen_per_input_within_the_context_window(tmp_path: Path) -> None:
    model = FunctionModel(lambda p: '{"label": "negative"}')
    policy = rp.Policy(configuration=Configuration("turns", "text", "similar", 1))
    run = make_task(tmp_path).run(Review(text="the seller was awful"), model=model, policy=policy)
    shots = [m.content for m in model.prompts[-1].messages[:-1] if m.role == "user"]
    assert shots == ["Input:\nawful seller"] and run.configuration == "turns/text, examples similar-1"
    # A window too small for every chosen example keeps those that fit and names the others.
    tight = FunctionModel(lambda p: '{"label": "negative"}', context_window=180)
    two = rp.Policy(configuration=Configuration("turns", "json", "similar", 4))
    run = make_task(tmp_path).run(Review(text="bad, awful, bad"), model=tight, policy=two)
    assert run.dropped_examples and len(tight.prompts[-1].messages) < 9


def copycat(prompt: Prompt) -> str:
    """Answers the label of the last example it was shown (positive with none): right only when the example
    nearest the input in meaning comes last."""
    content = prompt.text or "\n".join([prompt.system, *(m.content for m in prompt.messages)])
    shown = re.findall(r'"label":\s*"(\w+)"', content)
    return json.dumps({"label": shown[-1] if shown else "positive"})


def meaning(text: str) -> list[float]:
    """A toy embedding: how positive and how negative the text's words are. No two examples share a word."""
    return [
        sum(w in text for w, lab in WORDS.items() if lab == "positive"),
        sum(w in text for w in ("bad", "awful")),
        0.1,
    ]


def test_adapt_tries_nearest_examples_by_the_models_embeddings_and_finds_them(tmp_path: Path) -> None:
    model = FunctionModel(copycat, embed=meaning)
    adaptation = make_task(tmp_path).adapt(model, budget=200, progress=False, record=False)
    assert adaptation.chosen.examples == "nearest" and adaptation.best.correct == adaptation.best.n == 4
    similar = [s for s in adaptation.candidates if s.configuration.examples == "similar"]
    assert similar and max(s.correct for s in similar) < 4  # word overlap finds no neighbour here
    # A model without embeddings is never offered the choice.
    assert all(c.examples != "nearest" for c in candidates(FunctionModel(copycat), 4))


def test_another_models_embeddings_choose_the_examples_for_a_model_that_has_none(tmp_path: Path) -> None:
    model = FunctionModel(copycat)  # no embeddings of its own
    ranker = FunctionModel(lambda p: "{}", name="test:ranker", embed=meaning)
    task = make_task(tmp_path)
    adaptation = task.adapt(model, budget=200, progress=False, embedders=[ranker])
    chosen = adaptation.chosen
    assert (chosen.examples, chosen.embedder) == ("nearest", "test:ranker") and adaptation.best.correct == 4
    assert "examples nearest-2 by test:ranker" in chosen.label
    # The record names the ranker; a later call finds it by that name and shows the example it ranks nearest last.
    run = task.run(Review(text="so lovely and good"), model=model)
    assert run.output.label == "positive" and run.configuration == chosen.label
    run = task.run(Review(text="awful, just awful"), model=model)
    assert run.output.label == "negative"


def test_an_async_call_embeds_for_nearest_off_the_event_loop(tmp_path: Path) -> None:
    threads: list[int] = []

    def noting(text: str) -> list[float]:
        threads.append(threading.get_ident())
        return meaning(text)

    model = FunctionModel(copycat, embed=noting)
    policy = rp.Policy(configuration=Configuration("turns", "text", "nearest", 1))

    async def go() -> tuple[Sentiment, int]:
        output = await make_task(tmp_path).acall(Review(text="awful, just awful"), model=model, policy=policy)
        return output, threading.get_ident()

    async def streamed() -> tuple[object, int]:
        items = [
            item async for item in make_task(tmp_path).astream_output(Review(text="bad"), model=model, policy=policy)
        ]
        return items[-1], threading.get_ident()

    first = len(EXAMPLES) + 1  # the input and each example, embedded ahead; the render embeds them again
    for run in (go, streamed):
        threads.clear()
        output, loop_thread = asyncio.run(run())
        assert output == Sentiment(label="negative")  # the nearest example, shown last, was a negative one
        assert len(threads) >= first and loop_thread not in threads[:first]  # embedded in a worker thread


def test_an_embedder_that_gives_no_embeddings_is_refused_with_the_fix(tmp_path: Path) -> None:
    task, model, silent = make_task(tmp_path), FunctionModel(copycat), FunctionModel(copycat, name="test:silent")
    with pytest.raises(rp.ConfigError, match=r"'test:silent' was given to adapt as an embedder.*gives no embeddings"):
        task.adapt(model, budget=10, progress=False, embedders=[silent])
    with pytest.raises(rp.ConfigError, match="a list of models or names"):
        task.adapt(model, budget=10, progress=False, embedders="test:silent")
    # A configuration naming such a model fails the call with the same fix, before anything is sent.
    bad = rp.Policy(configuration=Configuration("turns", "text", "nearest", 2, embedder="test:silent"))
    with pytest.raises(rp.ConfigError, match=r"'test:silent', the embedder of the configuration.*gives no embeddings"):
        task.run(Review(text="good"), model=model, policy=bad)
    assert not model.prompts


def test_a_budget_for_only_the_first_candidates_still_tries_every_rendering() -> None:
    model = FunctionModel(picky, modes=(rp.OutputMode.GRAMMAR, rp.OutputMode.PROMPTED))
    first = candidates(model, 3)[:7]
    assert {(c.layout, c.input_format) for c in first} == {(lay, fmt) for lay in LAYOUTS for fmt in INPUT_FORMATS}
    assert all(c.mode is rp.OutputMode.GRAMMAR for c in first)
