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
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustprompt._batch import Batch, Outcome, TaskJob, _limited, _SystemClock, map_job
from robustprompt._calling import Task
from robustprompt._errors import ConfigError
from robustprompt._pipeline import Pipeline, PipelineBatch
from robustprompt._resolve import model as make_model
from robustprompt.evals._cases import Case, CaseSet, load_cases
from robustprompt.evals._compare import Comparison, Thresholds, compare, format_pct
from robustprompt.evals._html import render_html
from robustprompt.evals._links import link_case_results
from robustprompt.evals._loading import load_pipeline, load_task
from robustprompt.evals._replay import ReplaySource, is_replay
from robustprompt.evals._report import render_json, render_single_table, render_table
from robustprompt.evals._results import CaseResult
from robustprompt.evals._store import Store, default_store_path, is_final, today

__all__ = ["EXIT_OK", "EXIT_REGRESSED", "add_commands", "alpha", "max_drop"]

EXIT_OK, EXIT_REGRESSED = 0, 1
_MAX_NOTED_PROBLEMS = 20
_POINTS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:pts?|points?|%)?", re.IGNORECASE)


# ------------------------------------------------------------------------------------------- argument types


def max_drop(text: str) -> float:
    """`--max-drop`: percentage points, as a fraction. "2", "2pts", "2 points" and "2%" all mean 2 points."""
    match = _POINTS.fullmatch(text.strip())
    if match is None or float(match.group(1)) > 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of percentage points from 0 to 100, e.g. 2pts")
    return float(match.group(1)) / 100


def alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a significance level between 0 and 1, e.g. 0.05")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
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
class _Options:
    """What every command that runs cases shares."""

    task: Task[Any, Any]
    cases: CaseSet
    store: Store
    concurrency: int
    rpm: float | None
    tpm: float | None


def _input_sha(case: Case) -> str:
    return hashlib.sha256(json.dumps(case.input, sort_keys=True, default=str).encode()).hexdigest()


def _results(options: _Options, model_name: str) -> tuple[str, str, list[CaseResult]]:
    """(the model's name in results, the day they count for, one result per case in case order): today's stored
    ones for the same inputs, the rest run now."""
    task, cases = options.task, options.cases.cases
    date = today()  # read once: a run that crosses midnight stays one day's results
    if is_replay(model_name):
        source = ReplaySource.open(model_name)
        # Replay is free and the file may have changed: always recomputed, stored for snapshots and history.
        replayed = source.results(task, cases)
        options.store.put(task.name, task.fingerprint, replayed, date=date)
        return source.name, date, replayed
    model = make_model(model_name)
    stored = options.store.get(task.fingerprint, model.name, date)
    # A stored answer counts only for the input it answered (a case file's line may have changed under its id);
    # the case file's expected output wins over the stored one: it may have been corrected since.
    done = {
        case.id: dataclasses.replace(stored[case.id], expected=case.expected)
        for case in cases
        if case.id in stored and is_final(stored[case.id]) and stored[case.id].input_sha == _input_sha(case)
    }
    missing = [case for case in cases if case.id not in done]
    if missing:
        reused = f" ({len(done)} stored today)" if done else ""
        print(f"{model.name}: running {len(missing)} case(s){reused}", file=sys.stderr)

    def keep(index: int, outcome: Outcome) -> None:
        case = missing[index]
        result = CaseResult.from_outcome(
            case.id, task, outcome, model=model.name, expected=case.expected, profile=model.profile
        )
        result = dataclasses.replace(result, input_sha=_input_sha(case))
        options.store.put(task.name, task.fingerprint, [result], date=date)  # at once: an interrupted run keeps it
        done[case.id] = result

    batch = Batch(concurrency=options.concurrency, rpm=options.rpm, tpm=options.tpm)
    map_job(TaskJob(task, model), [case.input for case in missing], batch, on_result=keep)
    return model.name, date, [done[case.id] for case in cases]


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
    return _Options(task, cases, store, args.concurrency, args.rpm, args.tpm)


def _read_cases(args: argparse.Namespace, task: Task[Any, Any]) -> CaseSet:
    """The runnable cases, expected outputs read as `task`'s; each problem in the file is printed."""
    cases = load_cases(args.cases, task).limited(args.limit)
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


def _finish(args: argparse.Namespace, c: Comparison, cases: CaseSet) -> int:
    c = _noted(c, cases)
    print(render_table(c), end="")
    _write(args.report, render_html(c))
    _write(args.json, render_json(c))
    return EXIT_REGRESSED if c.regressed else EXIT_OK


def _thresholds(args: argparse.Namespace) -> Thresholds:
    return Thresholds(max_drop=args.max_drop, alpha=args.alpha)


# ------------------------------------------------------------------------------------------------ commands


def _cmd_run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    options = _load(args, stack)
    name, _, results = _results(options, args.model)
    _report_failures(name, results)
    print(render_single_table(name, results), end="")
    return EXIT_OK


def _cmd_migrate(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    if args.link is not None:
        return _migrate_link(args)
    options = _load(args, stack)
    a_name, _, a = _results(options, args.from_model)
    b_name, _, b = _results(options, args.to_model)
    for name, results in ((a_name, a), (b_name, b)):
        _report_failures(name, results)
    return _finish(args, compare(options.task.name, a_name, a, b_name, b, _thresholds(args)), options.cases)


@dataclasses.dataclass(frozen=True)
class _LinkSide:
    """One model on the link under test: the pipeline's end results, the link's own, and the runs' outcomes."""

    name: str
    end: list[CaseResult]
    link: list[CaseResult]
    batch: PipelineBatch


def _migrate_link(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.task)
    cases = _read_cases(args, pipeline.end_task)
    a, b = (_link_side(args, pipeline, name, cases) for name in (args.from_model, args.to_model))
    for side in (a, b):
        _report_failures(side.name, side.end)
    title = f"{pipeline.name} (link {args.link})"
    c = compare(title, a.name, a.end, b.name, b.end, _thresholds(args))
    notes = _link_notes(args.link, a, b, compare(title, a.name, a.link, b.name, b.link, _thresholds(args)))
    return _finish(args, dataclasses.replace(c, notes=[*notes, *c.notes]), cases)


def _link_side(args: argparse.Namespace, pipeline: Pipeline, model_name: str, cases: CaseSet) -> _LinkSide:
    """Every case through the pipeline with link `args.link` on `model_name`. Not stored: a pipeline's Python
    steps can change without any fingerprint showing it, so yesterday's results may not be today's pipeline's."""
    if is_replay(model_name):
        raise ConfigError(
            f"{model_name} replays answers to a task's cases; with --link the link's inputs come from the pipeline: "
            "give a model"
        )
    # --rpm / --tpm pace the model under trial: the fixed links already run at the app's usual rate.
    model = _limited(make_model(model_name), args.rpm, args.tpm, _SystemClock())
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


def _cmd_snapshot(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    options = _load(args, stack)
    name, date, results = _results(options, args.model)
    _report_failures(name, results)
    count = options.store.snapshot(args.name, options.task.name, options.task.fingerprint, date, results)
    print(f"snapshot {args.name!r}: {count} result(s) of {name} on {date} for task {options.task.name}")
    return EXIT_OK


def _cmd_drift(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    options = _load(args, stack)
    task = options.task
    info = next((s for s in options.store.snapshots(args.baseline) if s.fingerprint == task.fingerprint), None)
    if info is None:
        raise ConfigError(_no_snapshot(options.store, args.baseline, task))
    # Both sides are scored against the case file as it is now: a corrected expected output must not read as drift.
    expected = {case.id: case.expected for case in options.cases.cases}
    baseline = [
        dataclasses.replace(r, expected=expected[r.case_id]) if r.case_id in expected else r
        for r in options.store.snapshot_results(args.baseline, task.fingerprint)
    ]
    name, date, current = _results(options, args.model)
    _report_failures(name, current)
    a_name = f"{info.model} on {info.date} (snapshot {args.baseline})"
    c = compare(task.name, a_name, baseline, f"{name} on {date}", current, _thresholds(args))
    return _finish(args, c, options.cases)


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
        "--store", metavar="PATH", help="results store (default: $ROBUSTPROMPT_STORE or .robustprompt/results.sqlite)"
    )
    parser.add_argument("--concurrency", type=_positive_int, default=8, metavar="N", help="calls in flight (8)")
    parser.add_argument("--rpm", type=_positive_float, metavar="N", help="at most N requests a minute")
    parser.add_argument("--tpm", type=_positive_float, metavar="N", help="at most N tokens a minute (estimated)")


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
    parser.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report")
    parser.add_argument("--json", metavar="OUT.json", help="write the comparison as JSON")


def add_commands(commands: Any) -> None:
    """Add the evaluation commands to the `robustprompt` parser's subcommands (`add_subparsers()`'s result)."""
    run = commands.add_parser("run", help="run the cases on one model and store the results")
    _case_arguments(run)
    run.add_argument("--model", required=True, metavar="M", help="a model name or replay:FILE#filter")
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
    _comparison_arguments(migrate)
    migrate.set_defaults(handler=_cmd_migrate)

    drift = commands.add_parser("drift", help="compare a model today against a stored snapshot")
    _case_arguments(drift)
    drift.add_argument("--model", required=True, metavar="M")
    drift.add_argument("--baseline", required=True, metavar="SNAPSHOT", help="a name given to `snapshot`")
    _comparison_arguments(drift)
    drift.set_defaults(handler=_cmd_drift)

    snapshot = commands.add_parser("snapshot", help="run (or reuse) today's results and keep them under a name")
    snapshot.add_argument("name", metavar="NAME")
    _case_arguments(snapshot)
    snapshot.add_argument("--model", required=True, metavar="M")
    snapshot.set_defaults(handler=_cmd_snapshot)
