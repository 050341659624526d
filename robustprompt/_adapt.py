"""Adapting a task to a model: measure the rendering configurations, keep the best, write the record.

The candidates are the rendering space (`_renderings`): layout x input format x example choice x output mode (when
the model has several), the model profile's default first. They are scored by validated accuracy, on the task's own
examples left out one at a time (each scored with the other examples as its shots) or, when cases are given, on
those dev cases; never on anything else, so the cases a report is computed on stay unseen.

The search is bounded by a budget of scored calls, planned before the first one (the plan depends only on counts,
never on answers, so it can be printed and is the same every time): while every candidate cannot be scored on every
case, each round scores the candidates still in on the next few cases, in a seeded order, and keeps the better half
(successive halving). The survivors of the last round are ranked by accuracy, then validity, then prompt tokens, then
latency, then their place in the stable candidate order; the first wins. Scored calls make no re-ask, so a
configuration is judged on its first answers. Given a cache, answers already paid for are served from it.

When every example copies some output field from its input (`_spans`), one more step follows, planned with the
rest: the winner with copied spans, scored on the same cases. It replaces the winner only if it scores better,
because it narrows what the model can answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustprompt._adaptation import Adaptation, Score, write_record
from robustprompt._batch import _Progress, _progress_stream
from robustprompt._cache import CACHED_NOTE
from robustprompt._engine import _render, run_async, run_sync  # _render: what a call sends, to count its tokens
from robustprompt._errors import ConfigError, RobustPromptError
from robustprompt._model import Model, embedder
from robustprompt._policy import Policy
from robustprompt._prompt import OutputMode, Prompt
from robustprompt._renderings import INPUT_FORMATS, LAYOUTS, Configuration, Pair
from robustprompt._resolve import embedding_model, resolve
from robustprompt._run import Run
from robustprompt._spans import copied_fields

if TYPE_CHECKING:
    from robustprompt._cache import Cache
    from robustprompt._task import Example, TaskDeclaration

__all__ = ["DEFAULT_BUDGET", "AdaptOptions", "aadapt", "adapt", "candidates"]

DEFAULT_BUDGET = 150  # scored calls: the whole space on 3 cases for a model with one mode, at ~0.3 s a local call
_SIMILAR_K = 3
_POOL_SUBSETS = 3  # seeded random example sets drawn from a labelled pool, beside a label-balanced one
_SPANS_MIN_CASES = 4  # fewer cases cannot tell copied spans from the winner


@dataclass(frozen=True, slots=True)
class ScoringCase:
    """One scored input: its JSON, the expected output record, and the examples its candidates draw from
    (None: each candidate's own, the task's unless it selected others)."""

    input_json: str
    expected: dict[str, Any]
    pool: tuple[Pair, ...] | None = None


@dataclass(slots=True)
class _Tally:
    correct: int = 0
    valid: int = 0
    n: int = 0
    prompt_tokens: int = 0
    latency: float = 0.0  # over live calls only: an answer read from the cache says nothing of the model's speed
    live: int = 0

    def score(self, config: Configuration) -> Score:
        n = max(self.n, 1)
        return Score(config, self.correct, self.valid, self.n, self.prompt_tokens / n, self.latency / max(self.live, 1))


@dataclass(slots=True)
class _Cost:
    calls: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)


_Choice = tuple[str, int, str | None]  # example choice, k, embedder (None: the model's own)


def _choices(pool_size: int, embeds: bool, embedders: Sequence[str] = ()) -> list[_Choice]:
    """The example choices (k, embedder) worth trying with `pool_size` examples per case: no two that show the
    same. `nearest` by the model's own embeddings where it embeds text, and by each of `embedders`."""
    if pool_size == 0:
        return [("none", _SIMILAR_K, None)]
    found: list[_Choice] = [("all", _SIMILAR_K, None)]
    if pool_size >= 2:
        found.append(("reversed", _SIMILAR_K, None))
    if pool_size >= 3:
        k = min(_SIMILAR_K, pool_size - 1)
        found.append(("similar", k, None))
        found += [("nearest", k, None)] if embeds else []
        found += [("nearest", k, name) for name in embedders]
    return [*found, ("none", _SIMILAR_K, None)]


def candidates(
    model: Model, pool_size: int, pools: Sequence[tuple[Pair, ...]] = (), embedders: Sequence[str] = ()
) -> list[Configuration]:
    """The configurations adapt tries, the model profile's default first, then a stable order.

    `pools` are example sets selected from a labelled pool: each is tried with every layout, its inputs as text.
    `embedders` name other models whose embeddings `nearest` may rank the examples by (the model's own is tried
    wherever it has some).
    """
    modes: Sequence[OutputMode | None] = model.profile.modes
    default = model.profile.default_configuration
    found = [Configuration(default.layout, default.input_format, "all", mode=modes[0])] if pool_size else []
    # The layout varies fastest, then the input format: a budget that covers only the first candidates still
    # tries every rendering, in the profile's best mode first.
    embeds = embedder(model) is not None
    others = [name for name in embedders if not (embeds and name == model.name)]  # its own is tried already
    for mode in modes:
        for choice, k, by in _choices(pool_size, embeds, others):
            for input_format in INPUT_FORMATS:
                for layout in LAYOUTS:
                    found.append(Configuration(layout, input_format, choice, k, mode, embedder=by))
    for pool in pools:
        for layout in LAYOUTS:
            found.append(Configuration(layout, "text", "all", mode=modes[0], pool=pool))
    return list(dict.fromkeys(found))


def plan(candidate_count: int, case_count: int, budget: int) -> list[tuple[int, int]]:
    """(candidates scored, cases each) per round, from counts alone. Each later round keeps the better half."""
    rounds: list[tuple[int, int]] = []
    alive, left = candidate_count, case_count
    while alive and left and budget > 0:
        if alive * left <= budget:
            rounds.append((alive, left))
            break
        halvings = max(1, math.ceil(math.log2(alive)))
        chunk = max(1, min(left, budget // (halvings * alive)))
        alive = min(alive, budget // chunk)
        rounds.append((alive, chunk))
        budget -= alive * chunk
        left -= chunk
        alive = math.ceil(alive / 2) if alive > 1 else alive
    return rounds


def plan_with_spans(
    candidate_count: int, case_count: int, budget: int, copies: bool
) -> tuple[list[tuple[int, int]], int]:
    """The rounds, and the cases the winner with copied spans is then scored on (0: no such step). The step takes
    as many calls as the cases the winner is scored on, so it is planned only where it leaves the search at least as
    many, and only on enough cases to tell the two apart."""
    rounds = plan(candidate_count, case_count, budget)
    if not copies or budget < 2 * case_count:
        return rounds, 0
    reserve = case_count
    wanted = plan(candidate_count, case_count, budget - reserve)
    # Reserve only what the winner will have been scored on: what a shorter plan leaves over goes back to it.
    while (covered := sum(cases for _, cases in wanted)) < reserve:
        wider = plan(candidate_count, case_count, budget - covered)
        if sum(a * c for a, c in wider) + sum(c for _, c in wider) > budget:
            break
        wanted, reserve = wider, covered
    covered = sum(cases for _, cases in wanted)
    return (wanted, covered) if covered >= _SPANS_MIN_CASES else (rounds, 0)


def _rank(score: Score, index: int) -> tuple[float, float, float, float, int]:
    n = max(score.n, 1)
    # Latency decides only between equal prompts and then only by tenths of a second: finer is noise.
    return (-score.correct / n, -score.valid / n, round(score.prompt_tokens), round(score.latency, 1), index)


@dataclass
class _Search:
    """The schedule and the tallies: which candidate is scored on which case next, and what each scored."""

    configs: list[Configuration]
    cases: list[ScoringCase]
    budget: int
    copies: bool = False  # the examples copy a field from their input: the winner is tried with copied spans
    alive: list[int] = field(default_factory=list)
    tallies: list[_Tally] = field(default_factory=list)
    done: int = 0  # cases every surviving candidate has been scored on
    rounds: list[tuple[int, int]] = field(default_factory=list)
    refining: int = 0  # cases the winner with copied spans is scored on: those the winner was
    refined: int | None = None  # the index of the winner with copied spans, once it is scored

    def __post_init__(self) -> None:
        self.rounds, self.refining = plan_with_spans(len(self.configs), len(self.cases), self.budget, self.copies)
        self.alive = list(range(len(self.configs)))
        self.tallies = [_Tally() for _ in self.configs]

    @property
    def total(self) -> int:
        return sum(a * c for a, c in self.rounds) + self.refining

    def jobs(self, number: int) -> list[tuple[int, ScoringCase]]:
        count, chunk = self.rounds[number]
        self.alive = self.alive[:count]
        cases = self.cases[self.done : self.done + chunk]
        self.done += chunk
        return [(index, case) for index in self.alive for case in cases]

    def halve(self) -> None:
        ranked = sorted(self.alive, key=lambda i: _rank(self.tallies[i].score(self.configs[i]), i))
        self.alive = ranked[: math.ceil(len(ranked) / 2)]

    def winner(self) -> int:
        best = min(self.alive, key=lambda i: _rank(self.tallies[i].score(self.configs[i]), i))
        if self.refined is None:
            return best
        # Copied spans narrow what can be answered: they win on accuracy or validity, never on tokens or latency.
        plain, spans = self.alive
        return spans if _rank(self._score(spans), 0)[:2] < _rank(self._score(plain), 0)[:2] else plain

    def _score(self, index: int) -> Score:
        return self.tallies[index].score(self.configs[index])

    def refinement(self) -> list[tuple[int, ScoringCase]]:
        """The winner with copied spans, on the cases the winner was scored on; the two are all that stay in."""
        best = self.winner()
        self.configs.append(replace(self.configs[best], spans=True))
        self.tallies.append(_Tally())
        self.refined = len(self.configs) - 1
        self.alive = [best, self.refined]
        return [(self.refined, case) for case in self.cases[: self.done]]


def _prompt_tokens(task: TaskDeclaration[Any, Any], model: Model, case: ScoringCase, config: Configuration) -> int:
    mode = config.mode or model.profile.modes[0]
    prompt: Prompt = _render(task, case.input_json, model, mode, config)
    texts = [prompt.text] if prompt.text is not None else [prompt.system, *(m.content for m in prompt.messages)]
    return sum(model.backend.count_tokens(t).tokens for t in texts)


def _job_config(config: Configuration, case: ScoringCase) -> Configuration:
    return config if case.pool is None or config.pool is not None else replace(config, pool=case.pool)


def _tally(
    task: TaskDeclaration[Any, Any],
    model: Model,
    search: _Search,
    index: int,
    case: ScoringCase,
    outcome: Run[Any] | RobustPromptError,
    cost: _Cost,
) -> None:
    tally = search.tallies[index]
    config = _job_config(search.configs[index], case)
    tally.n += 1
    tally.prompt_tokens += _prompt_tokens(task, model, case, config)
    run = outcome if isinstance(outcome, Run) else getattr(outcome, "run", None)
    if run is not None and not any(note.startswith(CACHED_NOTE) for note in run.notes):
        tally.latency += run.latency
        tally.live += 1
        cost.calls += len(run.attempts)
        cost.tokens += run.usage.total_tokens
    if isinstance(outcome, Run):
        tally.valid += 1
        tally.correct += task.output_record(outcome.output) == case.expected


def _policy(config: Configuration) -> Policy:
    return Policy(reasks=0, mode=config.mode, configuration=config)


def _loo_cases(task: TaskDeclaration[Any, Any]) -> list[ScoringCase]:
    pairs = task.examples
    return [
        ScoringCase(i, json.loads(o), tuple(p for j, p in enumerate(pairs) if j != k)) for k, (i, o) in enumerate(pairs)
    ]


def _dev_cases(task: TaskDeclaration[Any, Any], cases: Any) -> list[ScoringCase]:
    """Scoring cases from a CaseSet (`robustprompt.evals.load_cases`), or a sequence of Examples or Cases."""
    from robustprompt._task import Example

    if isinstance(cases, (str, bytes)) or (not hasattr(cases, "__iter__") and not hasattr(cases, "cases")):
        raise ConfigError(
            "adapt's cases are rp.Example(input, output)s or a CaseSet: read a case file with "
            "robustprompt.evals.load_cases(path, task)"
        )
    items = list(getattr(cases, "cases", cases))
    found: list[ScoringCase] = []
    for item in items:
        if isinstance(item, Example):
            found.append(ScoringCase(task.input_json(item.input), task.output_record(item.output)))
        elif hasattr(item, "input") and hasattr(item, "expected"):  # a case read from a case file
            if item.expected is not None:
                found.append(ScoringCase(task.input_json(item.input), item.expected))
        else:
            raise ConfigError(f"adapt's cases are rp.Example(input, output)s or cases of a CaseSet, got {item!r}")
    if not found:
        raise ConfigError("adapt needs cases with expected outputs to score on; none of the given cases has one")
    return found


def _pools(
    task: TaskDeclaration[Any, Any], pool: Sequence[Example[Any, Any]], size: int, seed: int
) -> list[tuple[Pair, ...]]:
    """Example sets drawn from a labelled pool: one that covers the outputs round-robin, and seeded random ones."""
    pairs = [(task.input_json(e.input), task.output_json(e.output)) for e in pool]
    size = min(size, len(pairs))
    by_output: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_output.setdefault(pair[1], []).append(pair)
    balanced: list[Pair] = []
    groups = list(by_output.values())
    while len(balanced) < size:
        for group in groups:
            if group and len(balanced) < size:
                balanced.append(group.pop(0))
    rng = random.Random(seed)
    drawn = [tuple(rng.sample(pairs, size)) for _ in range(_POOL_SUBSETS)]
    return list(dict.fromkeys([tuple(balanced), *drawn]))


@dataclass(frozen=True, slots=True)
class AdaptOptions:
    """How `adapt` searches: `Task.adapt`'s keywords, in one place for the blocking and the async search."""

    pool: Sequence[Example[Any, Any]] | None = None
    pool_size: int = 4
    budget: int = DEFAULT_BUDGET
    seed: int = 0
    record: Path | str | bool | None = None
    progress: bool | None = None
    cache: Cache | None = None
    concurrency: int = 4
    embedders: Sequence[Model | str] = ()


@dataclass(slots=True)
class _Setup:
    task: TaskDeclaration[Any, Any]
    model: Model
    search: _Search
    scored_on: str
    options: AdaptOptions
    record: Path | None
    cost: _Cost = field(default_factory=_Cost)


def _embedder_names(embedders: Sequence[Model | str]) -> list[str]:
    """The names of the models given to rank examples by, each checked to embed text."""
    if isinstance(embedders, (str, Model)):
        raise ConfigError(f"adapt's embedders are a list of models or names, got {embedders!r}: wrap it in a list")
    names: list[str] = []
    for given in embedders:
        found = embedding_model(given)
        if embedder(found) is None:
            raise ConfigError(
                f"{found.name!r} was given to adapt as an embedder, and it gives no embeddings: name a model "
                "whose backend embeds text (the embedded runtime's)"
            )
        names.append(found.name)
    return list(dict.fromkeys(names))


def _setup(task: TaskDeclaration[Any, Any], model: Model | str, cases: Any, options: AdaptOptions) -> _Setup:
    pool, budget, seed, record = options.pool, options.budget, options.seed, options.record
    if budget < 1:
        raise ConfigError(f"adapt's budget is a number of scored calls >= 1, got {budget}")
    resolved = resolve(model)
    if cases is None:
        if pool is not None:
            raise ConfigError("adapt selects examples from a pool only when scored on held-out cases: give cases=")
        if len(task.examples) < 2:
            raise ConfigError(
                f"task {task.name!r} has {len(task.examples)} example(s): adapt scores on the task's own examples "
                "left out one at a time and needs at least 2, or give dev cases with cases="
            )
        scoring = _loo_cases(task)
        scored_on = f"leave-one-out on the task's {len(scoring)} examples"
        pool_size_per_case = len(task.examples) - 1
        pools: list[tuple[Pair, ...]] = []
    else:
        scoring = _dev_cases(task, cases)
        scored_on = f"{len(scoring)} dev case(s)"
        pool_size_per_case = len(task.examples)
        pools = []
        if pool is not None:
            pools = _pools(task, pool, options.pool_size, seed)
            held = {c.input_json for c in scoring}
            overlap = sum(1 for p in pools for i, _ in p if i in held)
            if overlap:
                raise ConfigError(
                    "an input is both in the example pool and in the cases adapt scores on: keep them apart"
                )
            scored_on += f", {len(pools)} example set(s) selected from a pool of {len(pool)}"
    random.Random(seed).shuffle(scoring)
    configs = candidates(resolved, pool_size_per_case, pools, _embedder_names(options.embedders))
    # Leave-one-out works out each case's copied fields from the other examples: never fewer than the whole
    # pool's, so a field the left-out example alone does not copy counts against the step, never for it.
    shown = [examples for examples in (task.examples, *pools) if examples]
    copies = bool(shown) and all(copied_fields(task.spec.schema, examples) for examples in shown)
    where = None if record is False else Path(record) if isinstance(record, (str, Path)) else task.adaptations
    return _Setup(task, resolved, _Search(configs, scoring, budget, copies), scored_on, options, where)


def _announce(setup: _Setup) -> _Progress:
    search, budget = setup.search, setup.options.budget
    if setup.options.progress is not False:
        print(
            f"adapting {setup.task.name} to {setup.model.name}: {len(search.configs)} configuration(s), "
            f"scored on {setup.scored_on}; {search.total} scored call(s) planned (budget {budget}) in "
            + ", then ".join(f"{alive} x {cases} case(s)" for alive, cases in search.rounds)
            + (f", then the best with copied spans on {search.refining}" if search.refining else ""),
            file=sys.stderr,
        )
    return _Progress(f"adapt {setup.model.name}", search.total, _progress_stream(setup.options.progress))


def _rounds(search: _Search) -> Iterator[list[tuple[int, ScoringCase]]]:
    """Each round's jobs (candidate index, case); the better half goes on to the next round. Then, when planned,
    the winner with copied spans."""
    for number in range(len(search.rounds)):
        yield search.jobs(number)
        if number + 1 < len(search.rounds):
            search.halve()
    if search.refining:
        yield search.refinement()


def _scored(
    setup: _Setup, bar: _Progress, index: int, case: ScoringCase, outcome: Run[Any] | RobustPromptError
) -> None:
    _tally(setup.task, setup.model, setup.search, index, case, outcome, setup.cost)
    bar.update(outcome)


def _finish(setup: _Setup) -> Adaptation:
    search, cost = setup.search, setup.cost
    scores = tuple(t.score(c) for t, c in zip(search.tallies, search.configs, strict=True))
    tried = [i for i, t in enumerate(search.tallies) if t.n]
    if not tried:
        raise ConfigError("adapt scored nothing: raise the budget")
    best = search.winner()
    adaptation = Adaptation(
        setup.task.name,
        setup.task.fingerprint,
        setup.model.name,
        search.configs[best],
        tuple(scores[i] for i in tried),
        setup.scored_on,
        setup.options.budget,
        cost.calls,
        cost.tokens,
        time.monotonic() - cost.started,
        setup.options.seed,
        untried=len(search.configs) - len(tried),
        baseline=search.configs[0],
    )
    if setup.record is not None:
        write_record(setup.record, adaptation)
    return adaptation


def adapt(task: TaskDeclaration[Any, Any], model: Model | str, cases: Any, options: AdaptOptions) -> Adaptation:
    setup = _setup(task, model, cases, options)
    bar = _announce(setup)
    try:
        for jobs in _rounds(setup.search):
            for index, case in jobs:
                config = _job_config(setup.search.configs[index], case)
                outcome: Run[Any] | RobustPromptError
                try:
                    outcome = run_sync(task, json.loads(case.input_json), setup.model, _policy(config), options.cache)
                except RobustPromptError as exc:
                    outcome = exc
                _scored(setup, bar, index, case, outcome)
    finally:
        bar.close()
    return _finish(setup)


async def aadapt(task: TaskDeclaration[Any, Any], model: Model | str, cases: Any, options: AdaptOptions) -> Adaptation:
    """`adapt`, `options.concurrency` scored calls at a time."""
    setup = _setup(task, model, cases, options)
    bar = _announce(setup)
    gate = asyncio.Semaphore(max(1, options.concurrency))

    async def score(index: int, case: ScoringCase) -> None:
        config = _job_config(setup.search.configs[index], case)
        outcome: Run[Any] | RobustPromptError
        async with gate:
            try:
                value = json.loads(case.input_json)
                outcome = await run_async(task, value, setup.model, _policy(config), options.cache)
            except RobustPromptError as exc:
                outcome = exc
        _scored(setup, bar, index, case, outcome)

    try:
        for jobs in _rounds(setup.search):
            await asyncio.gather(*(score(index, case) for index, case in jobs))
    finally:
        bar.close()
    return _finish(setup)
