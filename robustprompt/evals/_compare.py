"""Compare two sets of case results (two models, or one model at two dates): figures, paired tests, a verdict.

Pure: it reads `CaseResult`s and returns a frozen tree that the reports render. Every figure carries its n. Cases are
paired by id; a case present on one side only, or failed on a side, is counted and listed, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from robustprompt.evals._results import CaseResult
from robustprompt.evals._stats import (
    Interval,
    mcnemar_exact,
    mean,
    paired_mean_diff_ci,
    paired_proportion_diff_ci,
    percentile,
    wilson,
)

__all__ = [
    "ACCURACY",
    "VALID",
    "VALID_FIRST",
    "VALID_UNSCORED",
    "ChangedCase",
    "Comparison",
    "FailedCase",
    "Figure",
    "MeanDiff",
    "ModelStats",
    "Rate",
    "RateDiff",
    "Thresholds",
    "compare",
    "format_p",
    "format_pct",
    "summarize",
]

VALID_FIRST, VALID, ACCURACY = "schema-valid, 1st attempt", "schema-valid (after re-asks)", "accuracy"
# Rates whose significant drop makes B a regression. First-attempt validity is reported but does not gate: re-asks
# exist to repair it, and the app only sees the final value.
VALID_UNSCORED = "schema-valid, cases with no expected output"
# A drop equal to max_drop is not "more than" max_drop; floats like 0.51 - 0.49 overshoot 0.02 by an ulp.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Thresholds:
    max_drop: float = 0.02  # fraction (2 points); B regresses when a rate drops by more than this AND the test agrees
    alpha: float = 0.05  # significance of the paired test; intervals are at level 1 - alpha, so the two tell one story

    @property
    def level(self) -> float:
        return 1 - self.alpha


@dataclass(frozen=True)
class Rate:
    """k of n, with its Wilson interval; value and ci are None when n == 0."""

    k: int
    n: int
    value: float | None
    ci: Interval | None

    @classmethod
    def of(cls, k: int, n: int, level: float) -> Rate:
        return cls(k, n, k / n if n else None, wilson(k, n, level))


@dataclass(frozen=True)
class Figure:
    """A mean, percentile or total, with the number of cases it was computed from."""

    value: float | None
    n: int


@dataclass(frozen=True)
class FailedCase:
    case_id: str
    error_kind: str
    error: str | None


@dataclass(frozen=True)
class ModelStats:
    model: str
    n: int
    valid_first: Rate  # schema-valid on the first attempt
    valid: Rate  # schema-valid after re-asks
    repairs: Figure  # mean parser repairs per case
    accuracy: Rate  # exact match, over the cases with an expected output
    field_accuracy: dict[str, Rate]  # per top-level field of the expected outputs
    verbosity: Figure  # mean answer length in characters (LLMDrift's definition), over cases with an answer text
    latency_p50: Figure  # seconds, over cases that reached the model
    latency_p95: Figure
    input_tokens: Figure  # totals
    output_tokens: Figure
    cost: Figure  # total; None when any case's price is unknown
    failed: list[FailedCase]


@dataclass(frozen=True)
class RateDiff:
    """B - A for one rate on the paired cases, with Newcombe's paired CI and the exact McNemar p-value."""

    metric: str
    a: Rate
    b: Rate
    diff: float | None
    ci: Interval | None
    a_only: int  # discordant pairs: a pass on A only
    b_only: int
    p_value: float | None
    n: int
    gated: bool  # this rate decides the verdict (see `compare`)
    regressed: bool  # a gated rate that fell beyond the thresholds


@dataclass(frozen=True)
class MeanDiff:
    """B - A for a per-case measure on the paired cases where both sides have it (normal CI, fine for n >= 30)."""

    metric: str
    a: float | None
    b: float | None
    diff: float | None
    ci: Interval | None
    n: int


ChangeKind = Literal["worse", "better", "changed"]


@dataclass(frozen=True)
class ChangedCase:
    """A paired case whose output differs; `kind` says whether B lost ("worse") or gained ("better") correctness."""

    case_id: str
    kind: ChangeKind
    expected: dict[str, Any] | None
    a_output: dict[str, Any] | None
    a_raw: str | None
    a_error: str | None
    b_output: dict[str, Any] | None
    b_raw: str | None
    b_error: str | None


@dataclass(frozen=True)
class Comparison:
    task: str
    a: ModelStats
    b: ModelStats
    thresholds: Thresholds
    paired: int
    only_a: list[str]
    only_b: list[str]
    rates: list[RateDiff]  # schema-valid first and after re-asks, accuracy
    means: list[MeanDiff]  # verbosity, latency, tokens
    mismatch: Rate  # paired cases whose output changed (a failure differs from any answer; two failures do not)
    agreement: dict[str, Rate]  # per top-level output field, on the paired cases
    changed: list[ChangedCase]  # the first few, regressions first
    regressed: bool
    reasons: list[str]  # why B regressed: metric, drop, CI, p-value
    notes: list[str] = field(default_factory=list)  # what a reader should know that is not a regression

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    task: str,
    a_name: str,
    a: Sequence[CaseResult],
    b_name: str,
    b: Sequence[CaseResult],
    thresholds: Thresholds = Thresholds(),
    *,
    max_changed: int = 50,
) -> Comparison:
    """Pair A's and B's results by case id and compare them; B regresses when a gated rate drops by more than
    `thresholds.max_drop` and the exact McNemar test is significant at `thresholds.alpha`."""
    by_a, by_b = _by_id(a_name, a), _by_id(b_name, b)
    pairs = [(by_a[case_id], by_b[case_id]) for case_id in by_a if case_id in by_b]
    level = thresholds.level
    # Accuracy decides on the cases with an expected output: it already counts an invalid answer as wrong, so
    # gating validity there too would count that answer twice (and call a model that got far more right a
    # regression). Validity decides on the cases with no expected output, which accuracy cannot see.
    scored = [p for p in pairs if _has_expected(p)]
    unscored = [p for p in pairs if not _has_expected(p)]
    rates = [
        _rate_diff(VALID_FIRST, pairs, lambda r: r.first_valid, thresholds, gated=False),
        _rate_diff(VALID, pairs, lambda r: r.ok, thresholds, gated=not scored),
        _rate_diff(ACCURACY, scored, lambda r: r.correct is True, thresholds, gated=bool(scored)),
    ]
    if scored and unscored:
        rates.append(_rate_diff(VALID_UNSCORED, unscored, lambda r: r.ok, thresholds, gated=True))
    reasons = [_reason(d, level) for d in rates if d.regressed]
    only_a = [case_id for case_id in by_a if case_id not in by_b]
    only_b = [case_id for case_id in by_b if case_id not in by_a]
    sa, sb = summarize(a_name, a, level), summarize(b_name, b, level)
    return Comparison(
        task=task,
        a=sa,
        b=sb,
        thresholds=thresholds,
        paired=len(pairs),
        only_a=only_a,
        only_b=only_b,
        rates=rates,
        means=_mean_diffs(pairs, level),
        mismatch=Rate.of(sum(ra.output != rb.output for ra, rb in pairs), len(pairs), level),
        agreement=_agreement(pairs, level),
        changed=_changed(pairs, max_changed),
        regressed=bool(reasons),
        reasons=reasons,
        notes=_notes(rates, thresholds, sa, sb, only_a, only_b),
    )


def summarize(model: str, results: Sequence[CaseResult], level: float = 0.95) -> ModelStats:
    """One model's figures over its own cases (all of them, failed ones included)."""
    n = len(results)
    scored = [r for r in results if r.expected is not None]
    reached = [r for r in results if r.attempts > 0]
    latencies = [r.latency for r in reached]
    answers = [len(r.raw) for r in results if r.raw is not None]
    costs = [r.cost for r in results]
    return ModelStats(
        model=model,
        n=n,
        valid_first=Rate.of(sum(r.first_valid for r in results), n, level),
        valid=Rate.of(sum(r.ok for r in results), n, level),
        repairs=Figure(mean([r.repairs for r in results]), n),
        accuracy=Rate.of(sum(r.correct is True for r in scored), len(scored), level),
        field_accuracy=_field_accuracy(scored, level),
        verbosity=Figure(mean(answers), len(answers)),
        latency_p50=Figure(percentile(latencies, 50), len(latencies)),
        latency_p95=Figure(percentile(latencies, 95), len(latencies)),
        input_tokens=Figure(sum(r.input_tokens for r in results), n),
        output_tokens=Figure(sum(r.output_tokens for r in results), n),
        cost=Figure(None if None in costs else sum(c for c in costs if c is not None), n),
        failed=[FailedCase(r.case_id, r.error_kind, r.error) for r in results if r.error_kind is not None],
    )


def _by_id(model: str, results: Sequence[CaseResult]) -> dict[str, CaseResult]:
    by_id: dict[str, CaseResult] = {}
    for result in results:
        if result.case_id in by_id:
            # Keeping either one would silently drop the other; the caller must give each case one result per side.
            raise ValueError(f"{model}: case id {result.case_id!r} appears more than once")
        by_id[result.case_id] = result
    return by_id


Pair = tuple[CaseResult, CaseResult]


def _has_expected(pair: Pair) -> bool:
    return pair[0].expected is not None and pair[1].expected is not None


def _rate_diff(
    metric: str,
    pairs: Sequence[Pair],
    passed: Callable[[CaseResult], bool],
    thresholds: Thresholds,
    *,
    gated: bool,
) -> RateDiff:
    outcomes = [(passed(ra), passed(rb)) for ra, rb in pairs]
    both = sum(pa and pb for pa, pb in outcomes)
    a_only = sum(pa and not pb for pa, pb in outcomes)
    b_only = sum(pb and not pa for pa, pb in outcomes)
    n, level = len(outcomes), thresholds.level
    diff = (b_only - a_only) / n if n else None
    p_value = mcnemar_exact(a_only, b_only) if n else None
    return RateDiff(
        metric=metric,
        a=Rate.of(both + a_only, n, level),
        b=Rate.of(both + b_only, n, level),
        diff=diff,
        # Newcombe's interval is for first - second: B comes first so the interval reads as B - A.
        ci=paired_proportion_diff_ci(both, b_only, a_only, n - both - a_only - b_only, level),
        a_only=a_only,
        b_only=b_only,
        p_value=p_value,
        n=n,
        gated=gated,
        regressed=gated and _dropped(diff, thresholds) and p_value is not None and p_value < thresholds.alpha,
    )


def _dropped(diff: float | None, thresholds: Thresholds) -> bool:
    return diff is not None and -diff > thresholds.max_drop + _EPSILON


def _reason(d: RateDiff, level: float) -> str:
    return (
        f"{d.metric} fell {_points(d.diff)} ({format_pct(d.a.value)} -> {format_pct(d.b.value)}, n={d.n} paired); "
        f"{level:.0%} CI of B - A {_points_ci(d.ci)}; exact McNemar {format_p(d.p_value)} "
        f"({d.a_only} cases passed on A only, {d.b_only} on B only)"
    )


def _notes(
    rates: Sequence[RateDiff],
    thresholds: Thresholds,
    a: ModelStats,
    b: ModelStats,
    only_a: Sequence[str],
    only_b: Sequence[str],
) -> list[str]:
    notes = [
        f"{d.metric} fell {_points(d.diff)} (n={d.n}) but the change is not significant ({format_p(d.p_value)} >= "
        f"{thresholds.alpha:g}): not called a regression"
        for d in rates
        if d.gated and _dropped(d.diff, thresholds) and not d.regressed
    ]
    notes += [
        f"{d.metric} fell {_points(d.diff)} (n={d.n}, {format_p(d.p_value)}); accuracy, which counts an invalid "
        "answer as wrong, decides the verdict"
        for d in rates
        if d.metric == VALID and not d.gated and _dropped(d.diff, thresholds)
    ]
    if next(d for d in rates if d.metric == ACCURACY).n == 0:
        notes.append("no paired case has an expected output: accuracy is not compared")
    for name, cases in ((a.model, only_a), (b.model, only_b)):
        if cases:
            notes.append(f"{len(cases)} case(s) ran on {name} only and are left out of the paired figures")
    for stats in (a, b):
        if stats.failed:
            notes.append(f"{len(stats.failed)} of {stats.n} case(s) failed on {stats.model} (counted as invalid)")
    return notes


def _mean_diffs(pairs: Sequence[Pair], level: float) -> list[MeanDiff]:
    def answer_length(r: CaseResult) -> float | None:
        return None if r.raw is None else len(r.raw)

    def reached(measure: Callable[[CaseResult], float]) -> Callable[[CaseResult], float | None]:
        return lambda r: measure(r) if r.attempts > 0 else None

    measures: list[tuple[str, Callable[[CaseResult], float | None]]] = [
        ("verbosity (chars)", answer_length),
        ("latency (s)", reached(lambda r: r.latency)),
        ("input tokens", reached(lambda r: r.input_tokens)),
        ("output tokens", reached(lambda r: r.output_tokens)),
    ]
    return [_mean_diff(name, pairs, measure, level) for name, measure in measures]


def _mean_diff(
    metric: str, pairs: Sequence[Pair], measure: Callable[[CaseResult], float | None], level: float
) -> MeanDiff:
    both = [(x, y) for x, y in ((measure(ra), measure(rb)) for ra, rb in pairs) if x is not None and y is not None]
    diffs = [y - x for x, y in both]
    return MeanDiff(
        metric=metric,
        a=mean([x for x, _ in both]),
        b=mean([y for _, y in both]),
        diff=mean(diffs),
        ci=paired_mean_diff_ci(diffs, level),
        n=len(both),
    )


def _field_accuracy(scored: Sequence[CaseResult], level: float) -> dict[str, Rate]:
    fields = sorted({key for r in scored if r.expected is not None for key in r.expected})
    return {
        name: Rate.of(sum(_field(r.output, name) == _field(r.expected, name) for r in scored), len(scored), level)
        for name in fields
    }


def _agreement(pairs: Sequence[Pair], level: float) -> dict[str, Rate]:
    fields = sorted({key for pair in pairs for r in pair if r.output is not None for key in r.output})
    return {
        name: Rate.of(sum(_field(ra.output, name) == _field(rb.output, name) for ra, rb in pairs), len(pairs), level)
        for name in fields
    }


_MISSING = object()  # a failed case has no field at all, which must not equal a field whose value is null


def _field(record: dict[str, Any] | None, name: str) -> object:
    return _MISSING if record is None else record.get(name, _MISSING)


def _changed(pairs: Sequence[Pair], limit: int) -> list[ChangedCase]:
    changed = [_changed_case(ra, rb) for ra, rb in pairs if ra.output != rb.output]
    order: dict[ChangeKind, int] = {"worse": 0, "better": 1, "changed": 2}
    return sorted(changed, key=lambda c: order[c.kind])[:limit]


def _changed_case(a: CaseResult, b: CaseResult) -> ChangedCase:
    return ChangedCase(
        case_id=a.case_id,
        kind=_change_kind(a, b),
        expected=a.expected,
        a_output=a.output,
        a_raw=a.raw,
        a_error=a.error,
        b_output=b.output,
        b_raw=b.raw,
        b_error=b.error,
    )


def _change_kind(a: CaseResult, b: CaseResult) -> ChangeKind:
    # Correctness where both sides can be scored, otherwise validity: a case that stopped parsing got worse too.
    a_pass, b_pass = (a.correct, b.correct) if a.correct is not None and b.correct is not None else (a.ok, b.ok)
    if a_pass == b_pass:
        return "changed"
    return "worse" if a_pass else "better"


# ------------------------------------------------------------------------------------------------ wording
# Shared by the verdict sentences above and the reports, so a figure reads the same everywhere.


def format_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def format_p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.4f}"


def _points(diff: float | None) -> str:
    return "n/a" if diff is None else f"{abs(100 * diff):.1f} pts"


def _points_ci(ci: Interval | None) -> str:
    return "n/a" if ci is None else f"[{100 * ci.low:+.1f}, {100 * ci.high:+.1f}] pts"
