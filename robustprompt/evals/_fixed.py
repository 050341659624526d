"""The links `migrate --link` keeps fixed: one run of them feeds both sides, so only the migrated link differs.

Every fixed task link answers through a shared memory of its answers, keyed by the prompt: when side B asks a
fixed link what side A already asked it (the same input, hence the same prompt), it gets A's answer, not a fresh
sample. Upstream of the migrated link both sides therefore agree by construction; downstream, a link agrees
wherever its input did not change. `unchanged_links` then checks that claim on the results: a fixed link (or
Python step) that gave another value for the same input on the two sides means something other than the
migrated link changed, and the report says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core

from robustprompt._completion import Completion, Usage
from robustprompt._errors import RobustPromptError
from robustprompt._ledger import LedgerLine, price
from robustprompt._model import Backend, Model
from robustprompt._pipeline import INPUT, Link, Pipeline, PipelineRun, pipeline_run_of
from robustprompt._profile import ModelProfile
from robustprompt._prompt import Prompt
from robustprompt._resolve import resolve
from robustprompt._tokens import TokenCount

__all__ = ["LinkAgreement", "SharedAnswers", "fixed_links", "unchanged_links"]


class SharedAnswers:
    """A backend that asks its inner backend once per distinct prompt and hands every later asker that answer.
    A failed call is not kept: the next asker calls again. `spent` totals the requests really sent."""

    def __init__(self, inner: Backend, profile: ModelProfile) -> None:
        self._inner = inner
        self._profile = profile
        self.spent = LedgerLine()
        self._done: dict[str, Completion] = {}
        self._pending: dict[str, asyncio.Future[Completion | None]] = {}
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> TokenCount:
        return self._inner.count_tokens(text)

    def complete(self, prompt: Prompt) -> Completion:
        key = repr(prompt)
        with self._lock:  # the blocking path holds it across the call: a second asker waits for the answer
            if key not in self._done:
                self._done[key] = self._charged(self._inner.complete(prompt))
            return self._done[key]

    async def acomplete(self, prompt: Prompt) -> Completion:
        key = repr(prompt)
        while True:
            if key in self._done:
                return self._done[key]
            pending = self._pending.get(key)
            if pending is None:
                break
            if (answer := await pending) is not None:
                return answer
        future: asyncio.Future[Completion | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            completion = await self._inner.acomplete(prompt)
        except BaseException:
            future.set_result(None)  # the waiters call again themselves
            raise
        finally:
            self._pending.pop(key, None)
        self._done[key] = self._charged(completion)
        future.set_result(completion)
        return completion

    def _charged(self, completion: Completion) -> Completion:
        usage, spent = completion.usage or Usage(), self.spent
        self.spent = dataclasses.replace(
            spent,
            calls=spent.calls + 1,
            requests=spent.requests + 1,
            input_tokens=spent.input_tokens + usage.input_tokens,
            output_tokens=spent.output_tokens + usage.output_tokens,
            cost=None if spent.cost is None or (cost := price(self._profile, usage)) is None else spent.cost + cost,
        )
        return completion


def fixed_links(pipeline: Pipeline, migrated: str) -> tuple[Pipeline, dict[str, SharedAnswers]]:
    """`pipeline` with every task link but `migrated` answering through a shared memory of its answers, and those
    memories by link name (what each really spent). Run both sides through (their `with_model(migrated, ...)`
    forms of) the pipeline this returns."""
    pipeline.link(migrated)  # a ConfigError naming the links when there is no such link
    fixed, shared = pipeline, {}
    for node in pipeline.links:
        if isinstance(node, Link) and node.name != migrated:
            model = resolve(node.model)
            fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(Model)}
            fields["backend"] = shared[node.name] = SharedAnswers(model.backend, model.profile)
            fixed = fixed.with_model(node.name, Model(**fields))
    return fixed, shared


@dataclass(frozen=True)
class LinkAgreement:
    """One fixed link over the paired cases: how often it gave the same value on both sides, overall and where its
    input was the same (which must be every time)."""

    link: str
    same_input: int  # cases where the link ran on both sides with the same input
    same_answer_same_input: int
    ran: int  # cases where it ran on both sides
    same_answer: int

    @property
    def drifted(self) -> int:
        """Cases where the same input gave another value: something besides the migrated link changed."""
        return self.same_input - self.same_answer_same_input


def unchanged_links(
    pipeline: Pipeline,
    migrated: str,
    a: Sequence[PipelineRun | RobustPromptError],
    b: Sequence[PipelineRun | RobustPromptError],
) -> list[LinkAgreement]:
    """Per link other than `migrated`, in declared order, its agreement between the two sides' runs of each case."""
    agreements = []
    for node in pipeline.links:
        if node.name == migrated:
            continue
        same_input = same_answer_same_input = ran = same_answer = 0
        for run_a, run_b in zip(map(pipeline_run_of, a), map(pipeline_run_of, b), strict=True):
            if run_a is None or run_b is None or node.name not in run_a.values or node.name not in run_b.values:
                continue
            ran += 1
            answer = _json(run_a.values[node.name]) == _json(run_b.values[node.name])
            same_answer += answer
            upstream = pipeline.wiring[node.name]
            if all(_json(_value(run_a, name)) == _json(_value(run_b, name)) for name in upstream):
                same_input += 1
                same_answer_same_input += answer
        agreements.append(LinkAgreement(node.name, same_input, same_answer_same_input, ran, same_answer))
    return agreements


def _value(run: PipelineRun, name: str) -> Any:
    return run.input if name == INPUT else run.values.get(name)


def _json(value: Any) -> str:
    return json.dumps(pydantic_core.to_jsonable_python(value, fallback=repr), sort_keys=True)
