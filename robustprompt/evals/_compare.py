"""Compare two sets of case results (two models, or one model at two dates): figures, paired tests, a verdict.

Pure: it reads `CaseResult`s and returns a frozen tree that the reports render. Every figure carries its n. Cases are
paired by id; a case present on one side only, or failed on a side, is counted and listed, never dropped.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, Literal

from robustprompt._errors import ConfigError
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
    "CANNOT_JUDGE",
    "NO_REGRESSION",
    "REGRESSION",
    "VALID",
    "VALID_FIRST",
    "VALID_UNSCORED",
    "ChangedCase",
    "Comparison",
    "FailedCase",
    "FailureReason",
    "Figure",
    "MeanDiff",
    "ModelStats",
    "Rate",
    "RateDiff",
    "Scorer",
    "Stability",
    "Thresholds",
    "TrendPoint",
    "Verdict",
    "compare",
    "format_p",
    "format_pct",
    "settle",
    "summarize",
    "trend",
]

VALID_FIRST, VALID, ACCURACY = "schema-valid, 1st attempt", "schema-valid (after re-asks)", "accuracy"
# Rates whose significant drop makes B a regression. First-attempt validity is reported but does not gate: re-asks
# exist to repair it, and the app only sees the final value.
VALID_UNSCORED = "schema-valid, cases with no expected output"
NO_REGRESSION: Final = "no regression"
REGRESSION: Final = "regression"
CANNOT_JUDGE: Final = "cannot judge"
Verdict = Literal["no regression", "regression", "cannot judge"]
_TOP_FAILURES = 3  # failure reasons a report names per model
# A drop equal to max_drop is not "more than" max_drop; floats like 0.51 - 0.49 overshoot 0.02 by an ulp.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Thresholds:
    max_drop: float = 0.02  # fraction (2 points); B regresses when a rate drops by more than this AND the test agrees
    alpha: float = 0.05  # significance of the paired test; intervals are at level 1 - alpha, so the two tell one story
    # Below either, a comparison that finds no regression has not found the absence of one: "cannot judge".
    min_valid: float = 0.5  # each side's schema-valid rate (fraction)
    min_pairs: int = 10  # paired cases valid on both sides; the exact test needs 6 discordant ones for p < 0.05
    gates: dict[str, float] = field(default_factory=dict)  # output field -> its own max drop (fraction)

    @property
    def level(self) -> float:
        return 1 - self.alpha


Scorer = Callable[[Any, Any], float]  # (expected value, output value) -> a score from 0 to 1


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
class FailureReason:
    """One way cases failed on a model: the error with case-specific numbers masked, how often, and examples."""

    error_kind: str
    reason: str
    count: int
    case_ids: list[str]


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
    top_failures: list[FailureReason]  # the commonest reasons, most frequent first


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
class Stability:
    """With `--repeat N`: per side and case, the share of the N runs that gave the case's commonest answer (1.0 when
    every run agreed). A changed answer on a case unstable on either side may be sampling noise, not change."""

    repeats: int
    a: dict[str, float]
    b: dict[str, float]
    a_stable: Rate  # cases whose repeats all agree
    b_stable: Rate
    changed_stable: int  # paired cases whose answer changed, stable on both sides: change
    changed_unstable: int  # paired cases whose answer changed, unstable on a side: instability


@dataclass(frozen=True)
class TrendPoint:
    """One stored date of a model's results on the cases; `mismatch` is against the baseline's answers."""

    date: str
    n: int
    accuracy: Rate
    valid: Rate
    verbosity: Figure
    mismatch: Rate


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
    fields: list[RateDiff]  # per field of the expected outputs: B - A of the share of cases that field is right on
    field_scores: list[MeanDiff]  # per field a task scorer scores: B - A of the mean score (a failure scores 0)
    regressed: bool
    reasons: list[str]  # why B regressed: metric, drop, CI, p-value
    verdict: Verdict = NO_REGRESSION
    undecided: list[str] = field(default_factory=list)  # why the evidence cannot carry a verdict
    settings: dict[str, str] = field(default_factory=dict)  # how each side sampled, by side ("A", "B")
    stability: Stability | None = None  # with repeats
    history: list[TrendPoint] = field(default_factory=list)  # drift: B's model on every stored date, oldest first
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
    settings: dict[str, str] | None = None,
    stability: tuple[dict[str, float], dict[str, float], int] | None = None,
    scorers: Mapping[str, Scorer] | None = None,
) -> Comparison:
    """Pair A's and B's results by case id and compare them; B regresses when a gated rate drops by more than
    `thresholds.max_drop` and the exact McNemar test is significant at `thresholds.alpha`. With no regression, the
    verdict is "cannot judge" when a side's valid rate is under `thresholds.min_valid` or fewer than
    `thresholds.min_pairs` paired cases are valid on both sides: 0 % against 0 % is no evidence of anything.

    `settings` states how each side sampled; `stability` is (A's, B's per-case stability, the number of repeats),
    as `settle` gives them, for results that are each case's settled answer.

    Accuracy is exact match on the fields the expected output gives, except fields with a scorer in `scorers`
    (free text, say), which are scored instead. `thresholds.gates` gate single fields; every field whose drop is
    significant is named in the notes, gated or not."""
    scorers = dict(scorers or {})
    by_a, by_b = _by_id(a_name, a), _by_id(b_name, b)
    pairs = [(by_a[case_id], by_b[case_id]) for case_id in by_a if case_id in by_b]
    level = thresholds.level
    # Accuracy decides on the cases with an expected output: it already counts an invalid answer as wrong, so
    # gating validity there too would count that answer twice (and call a model that got far more right a
    # regression). Validity decides on the cases with no expected output, which accuracy cannot see.
    scored = [p for p in pairs if _has_expected(p)]
    unscored = [p for p in pairs if not _has_expected(p)]
    skip = frozenset(scorers)
    rates = [
        _rate_diff(VALID_FIRST, pairs, lambda r: r.first_valid, thresholds, gated=False),
        _rate_diff(VALID, pairs, lambda r: r.ok, thresholds, gated=not scored),
        _rate_diff(ACCURACY, scored, lambda r: _exact(r, skip), thresholds, gated=bool(scored)),
    ]
    if scored and unscored:
        rates.append(_rate_diff(VALID_UNSCORED, unscored, lambda r: r.ok, thresholds, gated=True))
    _check_gates(thresholds.gates, scored, skip)
    names = [name for name in _expected_fields(scored) if name not in skip]
    # One field is the whole answer: its own figure would repeat accuracy's.
    fields = [_field_diff(name, scored, thresholds) for name in names] if len(names) > 1 or thresholds.gates else []
    field_scores = [_score_diff(name, scorer, scored, level) for name, scorer in sorted(scorers.items())]
    reasons = [_reason(d, level) for d in (*rates, *fields) if d.regressed]
    reasons += [_score_reason(m, level) for m in field_scores if _score_regressed(m, thresholds)]
    only_a = [case_id for case_id in by_a if case_id not in by_b]
    only_b = [case_id for case_id in by_b if case_id not in by_a]
    sa, sb = summarize(a_name, a, level, skip), summarize(b_name, b, level, skip)
    undecided = _undecided(sa, sb, pairs, thresholds)
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
        fields=fields,
        field_scores=field_scores,
        regressed=bool(reasons),
        reasons=reasons,
        # Evidence that B is worse stands whatever the floors; only "no regression" needs evidence to stand on.
        verdict=REGRESSION if reasons else CANNOT_JUDGE if undecided else NO_REGRESSION,
        undecided=undecided,
        settings=dict(settings or {}),
        stability=None if stability is None else _stability(pairs, *stability, level),
        notes=[*_field_notes(fields, field_scores, thresholds), *_notes(rates, thresholds, sa, sb, only_a, only_b)],
    )


def summarize(
    model: str, results: Sequence[CaseResult], level: float = 0.95, skip: frozenset[str] = frozenset()
) -> ModelStats:
    """One model's figures over its own cases (all of them, failed ones included); fields in `skip` (scored by a
    scorer) are left out of exact-match accuracy."""
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
        accuracy=Rate.of(sum(_exact(r, skip) for r in scored), len(scored), level),
        field_accuracy=_field_accuracy(scored, level, skip),
        verbosity=Figure(mean(answers), len(answers)),
        latency_p50=Figure(percentile(latencies, 50), len(latencies)),
        latency_p95=Figure(percentile(latencies, 95), len(latencies)),
        input_tokens=Figure(sum(r.input_tokens for r in results), n),
        output_tokens=Figure(sum(r.output_tokens for r in results), n),
        cost=Figure(None if None in costs else sum(c for c in costs if c is not None), n),
        failed=[FailedCase(r.case_id, r.error_kind, r.error) for r in results if r.error_kind is not None],
        top_failures=_top_failures(model, results),
    )


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _top_failures(model: str, results: Sequence[CaseResult]) -> list[FailureReason]:
    """The commonest failure reasons: messages grouped once the model's name and every number are masked (a
    case's id, count or position would otherwise make each message its own reason)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in results:
        if r.error_kind is None:
            continue
        message = (r.error or "").replace(model, "MODEL")
        # "task on MODEL: " opens every engine error: the part after it is the reason.
        message = message.split("MODEL: ", 1)[-1]
        groups.setdefault((r.error_kind, _NUMBER.sub("N", message)), []).append(r.case_id)
    ranked = sorted(groups.items(), key=lambda item: -len(item[1]))[:_TOP_FAILURES]
    return [FailureReason(kind, reason, len(ids), ids[:5]) for (kind, reason), ids in ranked]


def trend(
    dates: Sequence[tuple[str, Sequence[CaseResult]]], baseline: Sequence[CaseResult], level: float = 0.95
) -> list[TrendPoint]:
    """Each date's figures, and its mismatch against `baseline` on the cases both hold."""
    by_id = {r.case_id: r for r in baseline}
    points = []
    for date, results in dates:
        s = summarize("", results, level)
        pairs = [(by_id[r.case_id], r) for r in results if r.case_id in by_id]
        changed = sum(a.output != b.output for a, b in pairs)
        points.append(TrendPoint(date, s.n, s.accuracy, s.valid, s.verbosity, Rate.of(changed, len(pairs), level)))
    return points


def _exact(result: CaseResult, skip: frozenset[str]) -> bool:
    """Right on every field the expected output gives, except those a scorer scores."""
    if result.expected is None or not result.ok:
        return False
    return all(_field(result.output, k) == v for k, v in result.expected.items() if k not in skip)


def _expected_fields(pairs: Sequence[Pair]) -> list[str]:
    return sorted({key for ra, _ in pairs if ra.expected is not None for key in ra.expected})


def _check_gates(gates: Mapping[str, float], scored: Sequence[Pair], skip: frozenset[str]) -> None:
    known = set(_expected_fields(scored)) | skip
    unknown = sorted(set(gates) - known)
    if unknown and scored:
        listing = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            f"gate on field(s) {', '.join(map(repr, unknown))}, which no expected output gives (its fields: {listing})"
        )


def _field_diff(name: str, scored: Sequence[Pair], thresholds: Thresholds) -> RateDiff:
    def right(r: CaseResult) -> bool:
        return r.ok and r.expected is not None and name in r.expected and _field(r.output, name) == r.expected[name]

    # Over the cases whose expected output gives this field: one that leaves it out says nothing about it.
    covering = [p for p in scored if p[0].expected is not None and name in p[0].expected]
    gated = name in thresholds.gates
    own = replace(thresholds, max_drop=thresholds.gates.get(name, thresholds.max_drop))
    return _rate_diff(f"field {name}", covering, right, own, gated=gated)


def _score_diff(name: str, scorer: Scorer, scored: Sequence[Pair], level: float) -> MeanDiff:
    def score(r: CaseResult) -> float | None:
        if r.expected is None or name not in r.expected:
            return None
        if not r.ok or r.output is None or name not in r.output:
            return 0.0
        return float(scorer(r.expected[name], r.output[name]))

    return _mean_diff(f"score {name}", scored, score, level)


def _score_regressed(m: MeanDiff, thresholds: Thresholds) -> bool:
    name = m.metric.removeprefix("score ")
    if name not in thresholds.gates or m.diff is None or m.ci is None:
        return False
    return -m.diff > thresholds.gates[name] + _EPSILON and m.ci.high < 0


def _score_reason(m: MeanDiff, level: float) -> str:
    assert m.ci is not None and m.diff is not None  # only called on a regression, which has both
    return (
        f"{m.metric} fell {abs(m.diff):.3f} (mean {m.a:.3f} -> {m.b:.3f}, n={m.n} paired); {level:.0%} CI of B - A "
        f"[{m.ci.low:+.3f}, {m.ci.high:+.3f}]"
    )


def _field_notes(fields: Sequence[RateDiff], scores: Sequence[MeanDiff], thresholds: Thresholds) -> list[str]:
    """Every field that fell significantly, gated or not: a field can sink while exact-match accuracy rises."""
    notes = []
    for d in fields:
        if d.diff is not None and d.diff < 0 and d.p_value is not None and d.p_value < thresholds.alpha:
            name = d.metric.removeprefix("field ")
            gate = (
                f"gated at {_points(thresholds.gates[name])}"
                if d.gated
                else f"not gated: --gate field={name}:max-drop=5pts gates it"
            )
            notes.append(
                f"{d.metric} fell significantly: {_points(d.diff)} ({format_pct(d.a.value)} -> "
                f"{format_pct(d.b.value)}, n={d.n}, {format_p(d.p_value)}; {gate})"
            )
    notes += [
        f"{m.metric} fell significantly: {abs(m.diff):.3f} (n={m.n}; CI of B - A [{m.ci.low:+.3f}, {m.ci.high:+.3f}])"
        for m in scores
        if m.diff is not None and m.ci is not None and m.ci.high < 0
    ]
    return notes


def _answer(result: CaseResult) -> str:
    """What two runs of a case must share to agree: the output, or for a failure, how it failed."""
    if result.ok:
        return json.dumps(result.output, sort_keys=True, default=str)
    return f"failed: {result.error_kind}"


def settle(runs: Sequence[CaseResult]) -> tuple[CaseResult, float]:
    """(the run giving the commonest answer among a case's repeats, the share of runs that gave it). A tie goes
    to the answer seen first."""
    if not runs:
        raise ValueError("settle() needs at least one run")
    counts = Counter(_answer(r) for r in runs)
    top = max(counts.values())
    chosen = next(r for r in runs if counts[_answer(r)] == top)
    return chosen, top / len(runs)


def _stability(
    pairs: Sequence[Pair], a: dict[str, float], b: dict[str, float], repeats: int, level: float
) -> Stability:
    changed = [(ra.case_id, ra.output != rb.output) for ra, rb in pairs]

    def stable(side: dict[str, float], case_id: str) -> bool:
        return side.get(case_id, 1.0) >= 1.0 - _EPSILON

    return Stability(
        repeats=repeats,
        a=dict(a),
        b=dict(b),
        a_stable=Rate.of(sum(stable(a, i) for i in a), len(a), level),
        b_stable=Rate.of(sum(stable(b, i) for i in b), len(b), level),
        changed_stable=sum(c and stable(a, i) and stable(b, i) for i, c in changed),
        changed_unstable=sum(c and not (stable(a, i) and stable(b, i)) for i, c in changed),
    )


def _undecided(a: ModelStats, b: ModelStats, pairs: Sequence[Pair], thresholds: Thresholds) -> list[str]:
    reasons = [
        f"{label} ({s.model}) is schema-valid on {format_pct(s.valid.value)} of {s.n} case(s), under the "
        f"{format_pct(thresholds.min_valid)} floor"
        for label, s in (("A", a), ("B", b))
        if s.valid.value is None or s.valid.value < thresholds.min_valid - _EPSILON
    ]
    valid_pairs = sum(ra.ok and rb.ok for ra, rb in pairs)
    if valid_pairs < thresholds.min_pairs:
        reasons.append(
            f"{valid_pairs} paired case(s) are valid on both sides, fewer than the {thresholds.min_pairs} needed"
        )
    return reasons


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


def _field_accuracy(scored: Sequence[CaseResult], level: float, skip: frozenset[str]) -> dict[str, Rate]:
    fields = sorted({key for r in scored if r.expected is not None for key in r.expected} - skip)
    rates = {}
    for name in fields:
        covering = [r for r in scored if r.expected is not None and name in r.expected]
        right = sum(_field(r.output, name) == _field(r.expected, name) for r in covering)
        rates[name] = Rate.of(right, len(covering), level)
    return rates


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
