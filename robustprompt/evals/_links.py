"""Pipeline evaluation for `robustprompt migrate --link`: a pipeline's end result and one task link's own result,
per case, as the CaseResults the comparison reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

from robustprompt._errors import ConfigError, RobustPromptError
from robustprompt._pipeline import Link, Pipeline, PipelineError, PipelineRun, pipeline_run_of
from robustprompt._policy import Policy
from robustprompt._resolve import models_for
from robustprompt._run import Run
from robustprompt.evals._results import CaseResult

__all__ = ["link_case_results"]


def link_case_results(
    pipeline: Pipeline,
    link: str,
    case_id: str,
    item: PipelineRun | RobustPromptError,
    *,
    model: str,
    expected: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> tuple[CaseResult, CaseResult]:
    """(the pipeline's end result, task link `link`'s own result) for one case, both labelled `model`.

    The end result is what the app sees: ok when the pipeline produced an output (a default handed on counts: the
    output was valid), its output record, `expected`, attempts, repairs, tokens and cost summed over every task
    link, the pipeline's latency, and the link's answer text and mode. The link's result is `CaseResult.from_outcome`
    on its Run or error (no expected value: cases give only the end's).
    """
    node = pipeline.link(link)
    if not isinstance(node, Link):
        raise ConfigError(f"link {link!r} of pipeline {pipeline.name!r} is a Python step: it has no model")
    run = pipeline_run_of(item)
    created = now or dt.datetime.now(dt.timezone.utc)
    tasks = [n for n in pipeline.links if isinstance(n, Link)]
    results = {n.name: _link_result(n, case_id, run, model, created) for n in tasks}
    mine = results[link]
    costs = [r.cost for r in results.values()]
    ok = isinstance(item, PipelineRun)
    cause = item.__cause__ if isinstance(item, PipelineError) else item
    end = CaseResult(
        case_id=case_id,
        model=model,
        ok=ok,
        output=pipeline.end_task.output_record(item.output) if isinstance(item, PipelineRun) else None,
        expected=expected,
        error_kind=None if ok else type(cause).__name__,
        error=None if ok else str(item),
        first_valid=isinstance(item, PipelineRun)
        and all(t.outcome == "ok" and t.attempts <= 1 for t in item.trace.values()),
        attempts=sum(r.attempts for r in results.values()),
        repairs=sum(r.repairs for r in results.values()),
        raw=mine.raw,
        latency=run.latency if run is not None else 0.0,
        input_tokens=sum(r.input_tokens for r in results.values()),
        output_tokens=sum(r.output_tokens for r in results.values()),
        cost=None if None in costs else sum(c for c in costs if c is not None),
        mode=mine.mode,
        created=created.isoformat(),
    )
    return end, mine


def _link_result(node: Link[Any], case_id: str, run: PipelineRun | None, model: str, now: dt.datetime) -> CaseResult:
    trace = run.trace[node.name] if run is not None else None
    if trace is None or trace.outcome == "skipped":
        return _no_answer(case_id, model, "Skipped", "an earlier link stopped the pipeline", now)
    error = trace.exception if trace.outcome in ("default", "failed") else None
    if error is not None and not isinstance(error, RobustPromptError):
        return _no_answer(case_id, model, type(error).__name__, str(error), now)  # its `input=` raised
    outcome: Run[Any] | RobustPromptError | None = error or trace.run
    if outcome is None:
        return _no_answer(case_id, model, "Skipped", "the link was not called", now)
    answered = next(
        (m for m in models_for(node.model, node.effective_policy or Policy()) if m.name == trace.model), None
    )
    profile = answered.profile if answered is not None else None
    return CaseResult.from_outcome(case_id, node.task, outcome, model=model, profile=profile, now=now)


def _no_answer(case_id: str, model: str, kind: str, message: str, now: dt.datetime) -> CaseResult:
    """A case the link never answered: counted as invalid, with no attempt (so it costs no latency or tokens)."""
    return CaseResult(
        case_id=case_id,
        model=model,
        ok=False,
        output=None,
        expected=None,
        error_kind=kind,
        error=message,
        first_valid=False,
        attempts=0,
        repairs=0,
        raw=None,
        latency=0.0,
        input_tokens=0,
        output_tokens=0,
        cost=None,
        mode=None,
        created=now.isoformat(),
    )
