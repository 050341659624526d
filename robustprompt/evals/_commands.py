"""The evaluation commands of `robustprompt` (`run`, `migrate`, `migrate --link`, `snapshot`, `drift`): each runs a
task's cases (or reuses today's stored results), compares, reports and returns the exit status. `robustprompt.cli`
adds them to its parser with `add_commands`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from robustprompt._adapt import DEFAULT_BUDGET
from robustprompt._adaptation import configuration_for, render_adaptation
from robustprompt._batch import Batch, Outcome, TaskJob, _limited, _SystemClock, map_job
from robustprompt._batch_api import BatchJob, submit
from robustprompt._cache import Cache
from robustprompt._calling import Task
from robustprompt._catalog import close_matches, lookup
from robustprompt._db import is_url
from robustprompt._engine import learn_rejected_modes, rejected_modes
from robustprompt._errors import ConfigError
from robustprompt._ledger import Ledger
from robustprompt._model import Model
from robustprompt._pipeline import Link, Pipeline, PipelineBatch
from robustprompt._policy import Policy
from robustprompt._resolve import model as make_model
from robustprompt._resolve import resolve
from robustprompt.evals._cases import Case, CaseSet, load_cases
from robustprompt.evals._compare import (
    CANNOT_JUDGE,
    NO_REGRESSION,
    REGRESSION,
    Comparison,
    Thresholds,
    compare,
    format_p,
    format_pct,
    settle,
    trend,
)
from robustprompt.evals._fixed import LinkAgreement, SharedAnswers, fixed_links, unchanged_links
from robustprompt.evals._html import render_html
from robustprompt.evals._links import link_case_results
from robustprompt.evals._loading import load_pipeline, load_task
from robustprompt.evals._replay import ReplaySource, is_replay
from robustprompt.evals._report import render_json, render_single_table, render_table, render_trend
from robustprompt.evals._results import CaseResult
from robustprompt.evals._store import Store, default_store_path, is_final, row_id, today

if TYPE_CHECKING:
    from robustprompt.evals._ray import RaySuite

__all__ = ["EXIT_CANNOT_JUDGE", "EXIT_OK", "EXIT_REGRESSED", "add_commands", "alpha", "max_drop"]

EXIT_OK, EXIT_REGRESSED, EXIT_CANNOT_JUDGE = 0, 1, 3
DOWNGRADE_TTL = 7 * 24 * 3600.0  # seconds a rejected output mode is remembered across runs
_EXIT = {NO_REGRESSION: EXIT_OK, REGRESSION: EXIT_REGRESSED, CANNOT_JUDGE: EXIT_CANNOT_JUDGE}
_MAX_NOTED_PROBLEMS = 20
_POINTS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:pts?|points?|%)?", re.IGNORECASE)


# ------------------------------------------------------------------------------------------- argument types


def max_drop(text: str) -> float:
    """`--max-drop`: percentage points, as a fraction. "2", "2pts", "2 points" and "2%" all mean 2 points."""
    match = _POINTS.fullmatch(text.strip())
    if match is None or float(match.group(1)) > 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of percentage points from 0 to 100, e.g. 2pts")
    return float(match.group(1)) / 100


def percent(text: str) -> float:
    """`--min-valid`: a percentage, as a fraction. "50" and "50%" both mean half."""
    match = _POINTS.fullmatch(text.strip())
    if match is None or float(match.group(1)) > 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage from 0 to 100, e.g. 50%")
    return float(match.group(1)) / 100


def gate(text: str) -> tuple[str, float]:
    """`--gate field=NAME:max-drop=POINTS`: (the output field, its own max drop as a fraction)."""
    parts = dict(part.partition("=")[::2] for part in text.split(":"))
    unknown = sorted(set(parts) - {"field", "max-drop"})
    if unknown or not parts.get("field") or "max-drop" not in parts:
        raise argparse.ArgumentTypeError(f"{text!r} is not a gate: write field=NAME:max-drop=POINTS, e.g. "
                                         "field=product:max-drop=5pts")  # fmt: skip
    return parts["field"], max_drop(parts["max-drop"])


def _config_gates(path: str) -> dict[str, float]:
    """The `gates` section of a JSON or YAML config file: {field: max drop}, e.g. `gates: {product: 5pts}`."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no config file at {path!r}")
    text = file.read_text("utf-8")
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError(f"{path} is YAML, which needs PyYAML: pip install pyyaml, or write JSON") from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # JSON's and YAML's errors both derive from it
        raise ConfigError(f"cannot read the config file {path!r}: {exc}") from exc
    if not isinstance(data, dict) or set(data) - {"gates"} or not isinstance(data.get("gates", {}), dict):
        raise ConfigError(f"{path}: a config file holds a 'gates' mapping of field to max drop, e.g. "
                          '{"gates": {"product": "5pts"}}')  # fmt: skip
    gates = {}
    for name, drop in data.get("gates", {}).items():
        try:
            gates[str(name)] = max_drop(str(drop))
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{path}: gate {name!r}: {exc}") from None
    return gates


def _between_0_and_1(text: str, what: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what} between 0 and 1, e.g. {example}")
    return value


def alpha(text: str) -> float:
    return _between_0_and_1(text, "a significance level", "0.05")


def _share(text: str) -> float:
    return _between_0_and_1(text, "a share", "0.3")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _whole(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _temperature(text: str) -> float | None:
    if text == "default":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a temperature from 0 to 2, or 'default'")
    return value


def _seed(text: str) -> int | None:
    if text == "none":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0, or 'none'")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


# ---------------------------------------------------------------------------------------------- the runs


@dataclasses.dataclass(frozen=True)
class _Sampling:
    """How the models are called: deterministic by default, so a comparison measures the models, not the dice."""

    temperature: float | None = 0.0
    seed: int | None = 0
    repeat: int = 1

    @property
    def label(self) -> str:
        """What a result records, and a stored result must match to be reused."""
        temperature = "provider default" if self.temperature is None else f"{self.temperature:g}"
        return f"temperature {temperature}, seed {'none' if self.seed is None else self.seed}"

    def describe(self) -> str:
        runs = f"{self.repeat} runs per case" if self.repeat > 1 else "1 run per case"
        return f"{self.label} (the seed is sent where the provider takes one), {runs}"


_REPLAYED = "recorded answers, sampled as they were recorded"


@dataclasses.dataclass(frozen=True)
class _Options:
    """What every command that runs cases shares."""

    task: Task[Any, Any]
    cases: CaseSet
    store: Store
    concurrency: int
    rpm: float | None
    tpm: float | None
    sampling: _Sampling = _Sampling()
    unlisted: bool = False  # models the catalog does not list are not checked for typos
    ledger: Ledger = dataclasses.field(default_factory=Ledger)  # what this process spends, by model and task
    batch: bool = False  # through the provider's batch API, the handle kept in the store until collected
    poll: float = 30.0  # seconds between two polls of a provider batch
    ray: RaySuite | None = None  # --engine ray: the cases run on a Ray cluster


@dataclasses.dataclass(frozen=True)
class _Side:
    """One model's results on the cases: each case's settled answer, and with repeats how stable it was."""

    name: str
    date: str
    results: list[CaseResult]
    stability: dict[str, float]
    settings: str


def _input_sha(case: Case) -> str:
    return hashlib.sha256(json.dumps(case.input, sort_keys=True, default=str).encode()).hexdigest()


def _resolve(options: _Options, name: str) -> Model | ReplaySource:
    """The model (its name, key and address checked) or recording `name` stands for, before any call is made."""
    if is_replay(name):
        return ReplaySource.open(name)
    _check_listed(name, options.unlisted)
    return make_model(name, temperature=options.sampling.temperature, seed=options.sampling.seed)


def _check_listed(name: str, unlisted: bool) -> None:
    """A name the catalog does not list but that looks like one it does is a typo until the user says otherwise:
    caught here, not after a whole side's cases were spent on it."""
    if unlisted or lookup(name) is not None:
        return
    provider = name.partition(":")[0]
    close = [match for match in close_matches(name) if match.partition(":")[0] == provider]
    if close:
        raise ConfigError(
            f"the catalog does not list {name!r} — did you mean {' or '.join(map(repr, close))}? "
            "(for a model it does not list yet, pass --unlisted)"
        )


def _results(
    options: _Options, source: Model | ReplaySource, policy: Policy | None = None, label: str | None = None
) -> _Side:
    """One result per case in case order: today's stored ones for the same inputs and settings, the rest run now.
    With `--repeat N` each case runs N times and its result is the commonest answer (`settle`). `policy` sets how
    the calls are made, and `label` (default: the model's name) names the results: another policy's results must
    not be taken for the model's own."""
    task, cases = options.task, options.cases.cases
    date = today()  # read once: a run that crosses midnight stays one day's results
    if isinstance(source, ReplaySource):
        # Replay is free and the file may have changed: always recomputed, stored for snapshots and history.
        # A recording holds one answer per case: repeating it would only measure the file.
        replayed = source.results(task, cases)
        options.store.put(task.name, task.fingerprint, replayed, date=date)
        return _Side(source.name, date, replayed, {}, _REPLAYED)
    model, sampling = source, options.sampling
    name = label or model.name
    config, origin = configuration_for(task, model, policy or Policy())
    print(f"{name}: configuration {config.label} ({origin})", file=sys.stderr)
    runs, done, missing = _todo(options, name, date)
    if missing:
        reused = f" ({len(done)} stored today)" if done else ""
        runs_of = f" ({sampling.repeat} runs per case)" if sampling.repeat > 1 else ""
        print(f"{name}: running {len(missing)} case(s){runs_of}{reused}", file=sys.stderr)

    def keep_result(run: tuple[Case, int], result: CaseResult) -> None:
        case, repeat = run
        result = dataclasses.replace(
            result, expected=case.expected, input_sha=_input_sha(case), settings=sampling.label, repeat=repeat
        )
        options.store.put(task.name, task.fingerprint, [result], date=date)  # at once: an interrupted run keeps it
        done[row_id(case.id, repeat)] = result

    def keep_run(run: tuple[Case, int], outcome: Outcome) -> None:
        keep_result(run, CaseResult.from_outcome(run[0].id, task, outcome, model=name, profile=model.profile))

    def keep(index: int, outcome: Outcome) -> None:
        keep_run(missing[index], outcome)

    def keep_ray(index: int, result: CaseResult) -> None:  # a Ray worker builds the result where it ran the case
        keep_result(missing[index], result)

    if options.batch:
        by_key = {row_id(case.id, repeat): (case, repeat) for case, repeat in runs}
        while missing:  # a resumed batch may cover fewer cases than are missing now: the rest go in a new one
            resumed = _batched(options, model, policy, name, date, by_key, missing, keep_run)
            left = [run for run in missing if row_id(run[0].id, run[1]) not in done]
            if not resumed and len(left) == len(missing):
                raise ConfigError(f"{name}: the provider batch answered none of the {len(missing)} case(s) sent")
            missing = left
    elif options.ray is not None and missing:
        options.ray.run(model, name, policy, [(case.id, case.input) for case, _ in missing], keep_ray, options.ledger)
    else:
        batch = Batch(concurrency=options.concurrency, rpm=options.rpm, tpm=options.tpm)
        job = TaskJob(task, model, policy, ledger=options.ledger)
        map_job(job, [case.input for case, _ in missing], batch, on_result=keep)
    settled = [settle([done[row_id(case.id, r)] for r in range(sampling.repeat)]) for case in cases]
    stability = {case.id: share for case, (_, share) in zip(cases, settled, strict=True)} if sampling.repeat > 1 else {}
    return _Side(name, date, [result for result, _ in settled], stability, sampling.describe())


def _todo(
    options: _Options, name: str, date: str
) -> tuple[list[tuple[Case, int]], dict[str, CaseResult], list[tuple[Case, int]]]:
    """Every (case, repeat) to have a result for, the results stored today that stand for theirs (by `row_id`),
    and those still missing."""
    sampling = options.sampling
    stored = options.store.get(options.task.fingerprint, name, date)
    runs = [(case, repeat) for case in options.cases.cases for repeat in range(sampling.repeat)]
    # A stored answer counts only for the input it answered (a case file's line may have changed under its id)
    # and the settings it was sampled with; the case file's expected output wins over the stored one: it may have
    # been corrected since.
    done: dict[str, CaseResult] = {}
    for case, repeat in runs:
        old = stored.get(row_id(case.id, repeat))
        if old is not None and is_final(old) and old.input_sha == _input_sha(case) and old.settings == sampling.label:
            done[row_id(case.id, repeat)] = dataclasses.replace(old, expected=case.expected)
    missing = [(case, repeat) for case, repeat in runs if row_id(case.id, repeat) not in done]
    return runs, done, missing


def _submit_ahead(options: _Options, source: Model | ReplaySource) -> None:
    """With --batch, send a side's missing cases now, so that both sides' batches run at the provider at once
    (each may take hours); `_results` then collects the batch it finds in the store."""
    if isinstance(source, ReplaySource):
        return
    date, task = today(), options.task
    missing = _todo(options, source.name, date)[2]
    if missing and options.store.batch(task.fingerprint, source.name, date) is None:
        _submitted(options, source, None, source.name, date, missing)


def _submitted(
    options: _Options, model: Model, policy: Policy | None, name: str, date: str, missing: list[tuple[Case, int]]
) -> BatchJob[Any]:
    """`missing` sent as a provider batch, its handle stored just before and just after each of its batches is
    created (a run killed in between finds that batch by the job's mark), with the settings and inputs it was
    sent for: a run resumed under other ones must not take its answers as theirs."""
    task, store = options.task, options.store
    keys = [row_id(case.id, repeat) for case, repeat in missing]
    inputs = {key: _input_sha(case) for key, (case, _) in zip(keys, missing, strict=True)}
    sent_for = {"settings": options.sampling.label, "inputs": inputs}

    def kept(job: BatchJob[Any]) -> None:
        store.keep_batch(task.fingerprint, name, date, json.dumps({**sent_for, "job": job.to_json()}))

    job = submit(task, [case.input for case, _ in missing], model, policy, keys=keys, on_part=kept)
    print(f"{name}: submitted {len(job)} case(s) as provider batch {', '.join(job.batch_ids)}", file=sys.stderr)
    return job


def _batched(
    options: _Options,
    model: Model,
    policy: Policy | None,
    name: str,
    date: str,
    by_key: dict[str, tuple[Case, int]],
    missing: list[tuple[Case, int]],
    keep: Callable[[tuple[Case, int], Outcome], None],
) -> bool:
    """Run `missing` through the provider's batch API: the batch submitted earlier today when the store keeps
    one (a killed run resumes polling it, nothing is submitted twice), else a new one, its handle stored as soon
    as each of its batches exists. Each result is stored as it is collected, unless its case's input or the
    sampling settings changed since it was sent; the handle is dropped after. True when a stored batch was resumed.
    """
    task, store = options.task, options.store
    stored = store.batch(task.fingerprint, name, date)
    if stored is not None:
        sent_for = json.loads(stored)
        job = BatchJob.from_json(sent_for["job"], task, model=model, policy=policy)
        sent = ", ".join(job.batch_ids) or "(none kept)"
        looking = "; looking up the one being created when the run stopped" if job.pending else ""
        print(f"{name}: resuming provider batch {sent} submitted earlier today{looking}", file=sys.stderr)
        if sent_for["settings"] != options.sampling.label:
            print(f"{name}: it was sent with other sampling settings: its answers are not kept", file=sys.stderr)
    else:
        job = _submitted(options, model, policy, name, date, missing)
        sent_for = {"settings": options.sampling.label, "inputs": {}}
    for index, outcome in job.outcomes(interval=options.poll):
        options.ledger.add(task.name, outcome)
        run = by_key.get(key := job.keys[index])
        if run is None or sent_for["settings"] != options.sampling.label:
            continue
        if stored is None or sent_for["inputs"].get(key) == _input_sha(run[0]):
            keep(run, outcome)
    store.drop_batch(task.fingerprint, name, date)
    return stored is not None


def _compare_sides(options: _Options, title: str, a: _Side, b: _Side, thresholds: Thresholds) -> Comparison:
    repeats = options.sampling.repeat
    stability = (a.stability, b.stability, repeats) if a.stability or b.stability else None
    return compare(
        title, a.name, a.results, b.name, b.results, thresholds,
        settings={"A": a.settings, "B": b.settings}, stability=stability, scorers=options.task.scorers,
    )  # fmt: skip


def _report_failures(model: str, results: Sequence[CaseResult]) -> None:
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    kinds = Counter(r.error_kind for r in failed)
    summary = ", ".join(f"{kind} x{count}" for kind, count in kinds.most_common())
    print(
        f"{model}: {len(failed)} of {len(results)} case(s) failed ({summary}); first: {failed[0].error}",
        file=sys.stderr,
    )


def _load(args: argparse.Namespace, stack: contextlib.ExitStack) -> _Options:
    task = load_task(args.task)
    cases = _read_cases(args, task)
    store = stack.enter_context(Store(args.store or default_store_path()))
    # What earlier runs learned about servers' output modes, and what this one learns, kept for the next.
    learn_rejected_modes(store.downgrades(now=time.time(), ttl=DOWNGRADE_TTL))
    stack.callback(lambda: store.remember_downgrades(rejected_modes(), now=time.time()))
    sampling = _Sampling(args.temperature, args.seed, args.repeat)
    batch, poll = getattr(args, "batch", False), getattr(args, "poll", 30.0)  # commands without --batch have neither
    if args.workers is not None and args.engine != "ray":
        raise ConfigError("--workers sets the Ray workers: add --engine ray, or drop --workers")
    if batch and args.engine == "ray":
        raise ConfigError("--batch hands the cases to the provider's batch API, --engine ray runs them live: drop one")
    ray = stack.enter_context(_ray_suite(args)) if args.engine == "ray" else None
    return _Options(
        task,
        cases,
        store,
        args.concurrency,
        args.rpm,
        args.tpm,
        sampling,
        args.unlisted,
        batch=batch,
        poll=poll,
        ray=ray,
    )


def _ray_suite(args: argparse.Namespace) -> RaySuite:
    from robustprompt.evals._ray import RaySuite  # Ray is imported only when it is used

    return RaySuite(args.task, workers=args.workers, concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm)


def _read_cases(
    args: argparse.Namespace, task: Task[Any, Any], check_input: Callable[[Any], object] | None = None
) -> CaseSet:
    """The runnable cases, expected outputs read as `task`'s; each problem in the file is printed."""
    cases = load_cases(args.cases, task, check_input=check_input).limited(args.limit)
    for problem in cases.problems:
        print(f"robustprompt: {problem}", file=sys.stderr)
    if not cases.cases:
        raise ConfigError(f"{args.cases} holds no case that can run")
    return cases


def _noted(c: Comparison, cases: CaseSet) -> Comparison:
    """The comparison with the case file's problems among its notes, so every report shows them."""
    problems = [str(p) for p in cases.problems]
    if len(problems) > _MAX_NOTED_PROBLEMS:
        hidden = len(problems) - _MAX_NOTED_PROBLEMS
        problems = [*problems[:_MAX_NOTED_PROBLEMS], f"and {hidden} more problem(s) in the case file"]
    return dataclasses.replace(c, notes=[*c.notes, *(f"case file: {p}" for p in problems)])


def _write(path: str | None, text: str) -> None:
    if path is None:
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path!r}: {exc}") from exc
    print(f"wrote {path}", file=sys.stderr)


def _spent(ledger: Ledger) -> list[str]:
    """What the calls made now cost, per model and task (stored results reused today cost nothing again)."""
    lines = []
    for (model, task), line in ledger.lines().items():
        cost = "unknown (no price in the catalog)" if line.cost is None else f"${line.cost:.4f}"
        lines.append(
            f"cost: {model} on task {task}: {cost} for {line.calls} call(s), {line.requests} request(s), "
            f"{line.input_tokens:,} input / {line.output_tokens:,} output tokens"
        )
    return lines or ["cost: no call made now (every result was stored or replayed)"]


def _finish(args: argparse.Namespace, c: Comparison, cases: CaseSet, ledger: Ledger) -> int:
    c = _noted(c, cases)
    c = dataclasses.replace(c, notes=[*c.notes, *_spent(ledger)])
    print(render_table(c), end="")
    _write(args.report, render_html(c))
    _write(args.json, render_json(c))
    return _EXIT[c.verdict]


def _thresholds(args: argparse.Namespace) -> Thresholds:
    # Flags win over the config file, field by field.
    gates = {**(_config_gates(args.config) if args.config else {}), **dict(args.gate)}
    return Thresholds(args.max_drop, args.alpha, args.min_valid, args.min_pairs, gates)


# ------------------------------------------------------------------------------------------------ commands


def _cmd_run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    options = _load(args, stack)
    side = _results(options, _resolve(options, args.model))
    _report_failures(side.name, side.results)
    print(render_single_table(side.name, side.results, settings=side.settings, stability=side.stability), end="")
    print("\n".join(_spent(options.ledger)))
    return EXIT_OK


def _cmd_migrate(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    if args.batch and (args.link is not None or args.adapt):
        raise ConfigError("--batch runs plain migrations only: drop --link / --adapt, or drop --batch")
    if args.link is not None:
        return _migrate_link(args)
    options = _load(args, stack)
    if args.adapt:
        return _migrate_adapted(args, options, stack)
    # Both resolved before the first call: a typo or a missing key in B must not wait for A's cases to run.
    sources = [_resolve(options, name) for name in (args.from_model, args.to_model)]
    if options.batch:
        for source in sources:
            _submit_ahead(options, source)
    a, b = (_results(options, source) for source in sources)
    for side in (a, b):
        _report_failures(side.name, side.results)
    comparison = _compare_sides(options, options.task.name, a, b, _thresholds(args))
    return _finish(args, comparison, options.cases, options.ledger)


def _split(cases: CaseSet, share: float, seed: int) -> tuple[CaseSet, CaseSet]:
    """(dev, rest): a seeded `share` of the cases with an expected output for adapting, the rest for the verdict."""
    labelled = [c for c in cases.cases if c.expected is not None]
    if len(labelled) < 4:
        raise ConfigError(f"migrate --adapt needs at least 4 cases with expected outputs, {len(labelled)} have one")
    dev_ids = {c.id for c in random.Random(seed).sample(labelled, max(1, round(share * len(labelled))))}
    dev = tuple(c for c in cases.cases if c.id in dev_ids)
    rest = tuple(c for c in cases.cases if c.id not in dev_ids)
    return CaseSet(dev, ()), CaseSet(rest, cases.problems)


def _migrate_adapted(args: argparse.Namespace, options: _Options, stack: contextlib.ExitStack) -> int:
    """A against B as-is and B adapted on a dev share; the verdict is B adapted's, on the other cases only."""
    if is_replay(args.to_model):
        raise ConfigError(f"--adapt measures new configurations on model B: {args.to_model} only replays answers")
    # Both resolved before the first call: a typo or a missing key in B must not wait for A's cases to run.
    a_source, b_source = (_resolve(options, name) for name in (args.from_model, args.to_model))
    assert isinstance(b_source, Model)  # not a recording: refused above
    dev, rest = _split(options.cases, args.dev_share, args.adapt_seed)
    task = options.task
    print(
        f"adapting {args.to_model} on {len(dev.cases)} dev case(s); comparing on the other {len(rest.cases)}",
        file=sys.stderr,
    )
    cache = stack.enter_context(Cache(_adapt_cache_path(options.store.path)))
    adaptation = task.adapt(
        b_source, dev, budget=args.budget, seed=args.adapt_seed, record=False, cache=cache, embedders=args.embedders
    )
    print(render_adaptation(adaptation), end="")
    on_rest = dataclasses.replace(options, cases=rest)
    default = b_source.profile.default_configuration
    a = _results(on_rest, a_source)
    plain = _results(on_rest, b_source, Policy(configuration=default), f"{args.to_model} as-is")
    adapted = _results(on_rest, b_source, Policy(configuration=adaptation.chosen), f"{args.to_model} adapted")
    for side in (a, plain, adapted):
        _report_failures(side.name, side.results)
    as_is = _compare_sides(options, task.name, a, plain, _thresholds(args))
    verdict = _compare_sides(options, task.name, a, adapted, _thresholds(args))
    print("B as-is:")
    print(render_table(as_is), end="")
    print("B adapted:")
    notes = [
        f"B as-is ({default.label}): " + _accuracy_line(as_is),
        f"B adapted ({adaptation.chosen.label}, chosen on {adaptation.scored_on}): " + _accuracy_line(verdict),
        f"A ({a.name}) used its own configuration; the dev cases are not in any figure",
    ]
    verdict = dataclasses.replace(verdict, notes=[*notes, *verdict.notes])
    _write(args.adaptation_json, json.dumps(adaptation.to_json(), indent=2))
    return _finish(args, verdict, rest, options.ledger)


def _adapt_cache_path(store: str | Path) -> Path:
    """adapt's answer cache: beside a results file, or in the current directory's .robustprompt for a database."""
    if isinstance(store, Path) or not is_url(store):
        return Path(store).with_name("adapt-cache.sqlite")
    return Path.cwd() / ".robustprompt" / "adapt-cache.sqlite"


def _accuracy_line(c: Comparison) -> str:
    accuracy = next(r for r in c.rates if r.metric == "accuracy")
    return (
        f"accuracy {format_pct(accuracy.b.value)} of n={accuracy.b.n} against A's {format_pct(accuracy.a.value)}, "
        f"difference {format_pct(accuracy.diff)}, McNemar {format_p(accuracy.p_value)}; "
        f"schema-valid {format_pct(c.b.valid.value)}"
    )


@dataclasses.dataclass(frozen=True)
class _LinkSide:
    """One model on the link under test: the pipeline's end results, the link's own, and the runs' outcomes."""

    name: str
    end: list[CaseResult]
    link: list[CaseResult]
    batch: PipelineBatch


def _migrate_link(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        raise ConfigError("--engine ray runs a task's cases; --link runs a pipeline in this process: drop --engine ray")
    if args.workers is not None:
        raise ConfigError("--workers sets the Ray workers, which --link does not use: drop --workers")
    pipeline = load_pipeline(args.task)
    cases = _read_cases(args, pipeline.end_task, _pipeline_input_check(pipeline))
    if args.repeat > 1:
        raise ConfigError("--repeat is not available with --link yet: run the link's task on its own to repeat it")
    sampling = _Sampling(args.temperature, args.seed)
    # Both models, and every fixed link's, resolved before the first call.
    models = [_link_model(args, name, sampling) for name in (args.from_model, args.to_model)]
    fixed, shared = fixed_links(pipeline, args.link)
    a, b = (_link_side(args, fixed, model, cases) for model in models)
    for side in (a, b):
        _report_failures(side.name, side.end)
    title = f"{pipeline.name} (link {args.link})"
    settings = {"A": sampling.describe(), "B": sampling.describe()}
    scorers = pipeline.end_task.scorers
    c = compare(title, a.name, a.end, b.name, b.end, _thresholds(args), settings=settings, scorers=scorers)
    own = compare(title, a.name, a.link, b.name, b.link, _thresholds(args))
    agreements = unchanged_links(fixed, args.link, a.batch.items, b.batch.items)
    notes = [*_unchanged_notes(args.link, agreements), *_link_notes(args.link, a, b, own)]
    return _finish(args, dataclasses.replace(c, notes=[*notes, *c.notes]), cases, _link_ledger(fixed, a, b, shared))


def _link_ledger(pipeline: Pipeline, a: _LinkSide, b: _LinkSide, shared: dict[str, SharedAnswers]) -> Ledger:
    """What the two sides spent: the migrated link's calls on each, and each fixed link's calls once (a prompt
    both sides sent was sent once)."""
    ledger = Ledger()
    for side in (a, b):
        for run in side.batch.runs:
            for name, trace in (run.trace if run is not None else {}).items():
                if trace.run is not None and name not in shared:
                    ledger.add(trace.run.task, trace.run)
    for name, answers in shared.items():
        node = pipeline.link(name)
        if answers.spent.calls and isinstance(node, Link):
            ledger.charge(resolve(node.model).name, node.task.name, answers.spent)
    return ledger


def _pipeline_input_check(pipeline: Pipeline) -> Callable[[Any], object] | None:
    """Checks a case's input against the pipeline's input type, when it declares one (else anything goes)."""
    if pipeline.input_type is None:
        return lambda value: value
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(pipeline.input_type)

    def check(value: Any) -> object:
        try:
            return adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            raise ConfigError(f"pipeline {pipeline.name!r}: the input does not match its input type: {exc}") from exc

    return check


def _link_model(args: argparse.Namespace, model_name: str, sampling: _Sampling) -> Model:
    if is_replay(model_name):
        raise ConfigError(
            f"{model_name} replays answers to a task's cases; with --link the link's inputs come from the pipeline: "
            "give a model"
        )
    _check_listed(model_name, args.unlisted)
    # --rpm / --tpm pace the model under trial: the fixed links already run at the app's usual rate.
    model = make_model(model_name, temperature=sampling.temperature, seed=sampling.seed)
    return _limited(model, args.rpm, args.tpm, _SystemClock())


def _link_side(args: argparse.Namespace, pipeline: Pipeline, model: Model, cases: CaseSet) -> _LinkSide:
    """Every case through the pipeline with link `args.link` on `model`. Not stored: a pipeline's Python
    steps can change without any fingerprint showing it, so yesterday's results may not be today's pipeline's."""
    trial = pipeline.with_model(args.link, model)
    print(f"{model.name}: running {len(cases.cases)} case(s) through pipeline {pipeline.name}", file=sys.stderr)
    batch = trial.map([case.input for case in cases.cases], batch=Batch(concurrency=args.concurrency))
    pairs = [
        link_case_results(trial, args.link, case.id, item, model=model.name, expected=case.expected)
        for case, item in zip(cases.cases, batch.items, strict=True)
    ]
    return _LinkSide(model.name, [end for end, _ in pairs], [link for _, link in pairs], batch)


def _link_notes(link: str, a: _LinkSide, b: _LinkSide, own: Comparison) -> list[str]:
    """What the link itself did on each side: how often its answer changed, and what the runs did with it."""
    notes = [
        f"link {link}'s own output changed in {own.mismatch.k} of {own.mismatch.n} paired case(s); its valid rate "
        f"{format_pct(own.a.valid.value)} on A, {format_pct(own.b.valid.value)} on B"
    ]
    for label, side in (("A", a), ("B", b)):
        counts = side.batch.outcomes()[link]
        if set(counts) - {"ok"}:
            shown = ", ".join(f"{outcome} {count}" for outcome, count in sorted(counts.items()))
            notes.append(f"link {link} on {label} ({side.name}): {shown}")
    return notes


def _unchanged_notes(link: str, agreements: Sequence[LinkAgreement]) -> list[str]:
    """Each fixed link's agreement between the sides; a warning first when one changed for the same input."""
    warnings = [
        f"WARNING: link {g.link} was kept fixed but gave another value for the same input in {g.drifted} case(s): "
        f"something besides link {link} changed between the sides (a Python step that is not deterministic, or a "
        "fixed link's fallback or failed call)"
        for g in agreements
        if g.drifted
    ]
    for warning in warnings:
        print(f"robustprompt: {warning}", file=sys.stderr)
    shown = [
        f"unchanged link {g.link}: the same value on both sides in {g.same_answer} of {g.ran} case(s) "
        f"({format_pct(g.same_answer / g.ran if g.ran else None)})"
        + (f"; its input changed with link {link} in {g.ran - g.same_input}" if g.ran > g.same_input else "")
        for g in agreements
    ]
    return [*warnings, *shown]


def _cmd_adapt(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    task = load_task(args.task)
    cases = _read_cases(args, task) if args.cases else None
    cache = stack.enter_context(Cache(_adapt_cache_path(args.store or default_store_path())))
    record = Path(args.record) if args.record else None
    adaptation = task.adapt(
        args.model,
        cases,
        budget=args.budget,
        seed=args.adapt_seed,
        record=record,
        cache=cache,
        embedders=args.embedders,
    )
    print(render_adaptation(adaptation), end="")
    print(f"wrote {record or task.adaptations}", file=sys.stderr)
    return EXIT_OK


def _cmd_snapshot(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    options = _load(args, stack)
    side = _results(options, _resolve(options, args.model))
    _report_failures(side.name, side.results)
    task = options.task
    count = options.store.snapshot(args.name, task.name, task.fingerprint, side.date, side.results)
    print(f"snapshot {args.name!r}: {count} result(s) of {side.name} on {side.date} for task {task.name}")
    return EXIT_OK


def _cmd_drift(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    options = _load(args, stack)
    task = options.task
    info = None
    if args.baseline is not None:
        info = next((s for s in options.store.snapshots(args.baseline) if s.fingerprint == task.fingerprint), None)
        if info is None:
            raise ConfigError(_no_snapshot(options.store, args.baseline, task))
    source = _resolve(options, args.model)
    if info is not None and info.model != source.name and not args.other_model:
        raise ConfigError(
            f"snapshot {args.baseline!r} was recorded on {info.model}, not {source.name}: drift compares one model "
            "over time; pass --other-model to compare them anyway (or use `robustprompt migrate`)"
        )
    current = _results(options, source)
    _report_failures(current.name, current.results)
    print("\n".join(_snapshot_lines(options.store, task)), file=sys.stderr)
    # Both sides are scored against the case file as it is now: a corrected expected output must not read as drift.
    expected = {case.id: case.expected for case in options.cases.cases}
    history = _history(options, current.name, expected)
    if info is None:
        print(render_trend(current.name, trend(history, history[0][1] if history else [])), end="")
        return EXIT_OK
    baseline = [
        dataclasses.replace(r, expected=expected[r.case_id]) if r.case_id in expected else r
        for r in options.store.snapshot_results(args.baseline, task.fingerprint)
    ]
    settings = next((r.settings for r in baseline if r.settings), None) or "not recorded"
    a = _Side(f"{info.model} on {info.date} (snapshot {args.baseline})", info.date, baseline, {}, settings)
    b = dataclasses.replace(current, name=f"{current.name} on {current.date}")
    c = _compare_sides(options, task.name, a, b, _thresholds(args))
    c = dataclasses.replace(c, history=trend(history, baseline, _thresholds(args).level))
    return _finish(args, c, options.cases, options.ledger)


def _history(options: _Options, model: str, expected: dict[str, Any]) -> list[tuple[str, list[CaseResult]]]:
    """The model's stored results on each date, oldest first: the first run of each of today's cases."""
    task, ids = options.task, set(expected)
    dates = []
    for date in options.store.dates(task.fingerprint, model):
        rows = options.store.get(task.fingerprint, model, date)
        results = [dataclasses.replace(r, expected=expected[r.case_id]) for r in rows.values()
                   if r.repeat == 0 and r.case_id in ids]  # fmt: skip
        if results:
            dates.append((date, results))
    return dates


def _snapshot_lines(store: Store, task: Task[Any, Any]) -> list[str]:
    mine = [s for s in store.snapshots() if s.fingerprint == task.fingerprint]
    if not mine:
        return [f"no snapshot of task {task.name} yet: record one with `robustprompt snapshot`"]
    return [f"snapshots of task {task.name}:"] + [f"  {s.name}: {s.model} on {s.date}, {s.cases} case(s)" for s in mine]


def _no_snapshot(store: Store, name: str, task: Task[Any, Any]) -> str:
    others = store.snapshots(name)
    if others:
        return (
            f"snapshot {name!r} was taken of another version of task {task.name!r} (its instructions, types or "
            "examples changed since): take a new one with `robustprompt snapshot`"
        )
    known = sorted({s.name for s in store.snapshots() if s.fingerprint == task.fingerprint})
    hint = difflib.get_close_matches(name, known, n=1)
    listing = f"; this task has: {', '.join(known)}" if known else "; record one with `robustprompt snapshot`"
    return f"no snapshot named {name!r} in {store.path}{f' — did you mean {hint[0]!r}?' if hint else ''}{listing}"


# ------------------------------------------------------------------------------------------------- parser


def _case_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", metavar="TASK", help="module:attribute or path/to/file.py:attribute")
    parser.add_argument("--cases", required=True, metavar="FILE", help="JSONL or YAML cases: id, input, expected")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="run only the first N cases")
    parser.add_argument(
        "--store",
        metavar="PATH|URL",
        help="results store: a SQLite file or a postgresql:// URL (default: $ROBUSTPROMPT_STORE, else "
        ".robustprompt/results.sqlite)",
    )
    parser.add_argument("--concurrency", type=_positive_int, default=8, metavar="N", help="calls in flight (8)")
    parser.add_argument("--rpm", type=_positive_float, metavar="N", help="at most N requests a minute")
    parser.add_argument("--tpm", type=_positive_float, metavar="N", help="at most N tokens a minute (estimated)")
    parser.add_argument(
        "--engine",
        choices=("process", "ray"),
        default="process",
        help="where the calls run: this process (default), or a Ray cluster (RAY_ADDRESS, else a local one; "
        "--concurrency is then per worker, --rpm/--tpm hold across the workers; needs robustprompt[ray])",
    )
    parser.add_argument(
        "--workers", type=_positive_int, metavar="N", help="with --engine ray: Ray workers (default: one per CPU)"
    )
    parser.add_argument(
        "--unlisted",
        action="store_true",
        help="accept a model name the catalog does not list even when it looks like one it does (not a typo)",
    )
    parser.add_argument(
        "--temperature",
        type=_temperature,
        default=0.0,
        metavar="T",
        help="sampling temperature (default 0, so a comparison measures the models, not sampling noise; "
        "'default' leaves the provider's)",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="N",
        help="sampling seed, sent where the provider takes one (default 0; 'none' sends none)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run each case N times: the report gives each case's stability (the share of runs that agree) and "
        "tells unstable answers from changed ones (default 1)",
    )


def _comparison_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-drop",
        type=max_drop,
        default=0.02,
        metavar="POINTS",
        help="a gated rate may fall this many percentage points before it counts: 2, 2pts and 2%% all mean 2 "
        "points (default 2pts)",
    )
    parser.add_argument(
        "--alpha", type=alpha, default=0.05, help="significance level of the paired test (default 0.05)"
    )
    parser.add_argument(
        "--min-valid",
        type=percent,
        default=0.5,
        metavar="PERCENT",
        help="with either side schema-valid on fewer cases than this, the verdict is 'cannot judge' (default 50%%)",
    )
    parser.add_argument(
        "--min-pairs",
        type=_whole,
        default=10,
        metavar="N",
        help="with fewer paired cases valid on both sides, the verdict is 'cannot judge' (default 10)",
    )
    parser.add_argument(
        "--gate",
        type=gate,
        action="append",
        default=[],
        metavar="field=NAME:max-drop=POINTS",
        help="gate one output field: B regresses when the share of cases that field is right on falls more than "
        "POINTS (and the paired test agrees); repeatable",
    )
    parser.add_argument("--config", metavar="FILE", help="a JSON or YAML file with a 'gates' section: {field: POINTS}")
    parser.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report")
    parser.add_argument("--json", metavar="OUT.json", help="write the comparison as JSON")


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch",
        action="store_true",
        help="send the cases through the provider's batch API (about half the price, results within 24 h); the "
        "batch is kept in the store, so a run killed meanwhile resumes it instead of submitting again",
    )
    parser.add_argument(
        "--poll", type=_positive_float, default=30.0, metavar="SECONDS", help="with --batch: seconds between polls (30)"
    )


def _adapt_arguments(parser: argparse.ArgumentParser, seed_flag: str) -> None:
    parser.add_argument(
        "--budget",
        type=_positive_int,
        default=DEFAULT_BUDGET,
        metavar="N",
        help=f"scored calls at most ({DEFAULT_BUDGET})",
    )
    parser.add_argument(seed_flag, dest="adapt_seed", type=int, default=0, help="orders the scored cases (0)")
    parser.add_argument(
        "--embedder",
        dest="embedders",
        action="append",
        default=[],
        metavar="M",
        help="a model whose embeddings may pick the examples nearest each input (repeatable)",
    )


def add_commands(commands: Any) -> None:
    """Add the evaluation commands to the `robustprompt` parser's subcommands (`add_subparsers()`'s result)."""
    run = commands.add_parser("run", help="run the cases on one model and store the results")
    _case_arguments(run)
    run.add_argument("--model", required=True, metavar="M", help="a model name or replay:FILE#filter")
    _batch_arguments(run)
    run.set_defaults(handler=_cmd_run)

    migrate = commands.add_parser("migrate", help="compare model B against model A on the same cases")
    _case_arguments(migrate)
    migrate.add_argument("--from", dest="from_model", required=True, metavar="A", help="the model in use")
    migrate.add_argument("--to", dest="to_model", required=True, metavar="B", help="the candidate")
    migrate.add_argument(
        "--link",
        metavar="NAME",
        help="TASK is an rp.Pipeline: try A and B on its link NAME, the other links fixed, and compare the "
        "pipeline's end outputs (cases: the pipeline's input and expected end output; --rpm/--tpm pace the link's "
        "model; results are not stored)",
    )
    migrate.add_argument(
        "--adapt",
        action="store_true",
        help="adapt B on a dev share of the cases, then compare A, B as-is and B adapted on the others",
    )
    migrate.add_argument(
        "--dev-share", type=_share, default=0.3, metavar="F", help="with --adapt: the share used to adapt (0.3)"
    )
    migrate.add_argument("--adaptation-json", metavar="OUT.json", help="with --adapt: write the adaptation record")
    _adapt_arguments(migrate, "--adapt-seed")  # --seed is the sampling seed
    _comparison_arguments(migrate)
    _batch_arguments(migrate)
    migrate.set_defaults(handler=_cmd_migrate)

    adapt = commands.add_parser("adapt", help="measure how TASK is best rendered for a model and record it")
    adapt.add_argument("task", metavar="TASK", help="module:attribute or path/to/file.py:attribute")
    adapt.add_argument("--model", required=True, metavar="M")
    adapt.add_argument(
        "--cases", metavar="FILE", help="dev cases to score on (default: the task's own examples, left out in turn)"
    )
    adapt.add_argument("--limit", type=_positive_int, metavar="N", help="use only the first N dev cases")
    _adapt_arguments(adapt, "--seed")
    adapt.add_argument("--record", metavar="PATH", help="where to write the record (default: beside the task's file)")
    adapt.add_argument("--store", metavar="PATH", help="results store; its folder keeps adapt's answer cache")
    adapt.set_defaults(handler=_cmd_adapt)

    drift = commands.add_parser("drift", help="compare a model today against a stored snapshot")
    _case_arguments(drift)
    drift.add_argument("--model", required=True, metavar="M")
    drift.add_argument(
        "--baseline",
        metavar="SNAPSHOT",
        help="a name given to `snapshot`: compare today against it (without it, drift lists the snapshots and the "
        "trend over every stored date)",
    )
    drift.add_argument(
        "--other-model", action="store_true", help="accept a baseline recorded on another model than --model"
    )
    _comparison_arguments(drift)
    drift.set_defaults(handler=_cmd_drift)

    snapshot = commands.add_parser("snapshot", help="run (or reuse) today's results and keep them under a name")
    snapshot.add_argument("name", metavar="NAME")
    _case_arguments(snapshot)
    snapshot.add_argument("--model", required=True, metavar="M")
    snapshot.set_defaults(handler=_cmd_snapshot)
