"""Render a Comparison (or one model's results) as a terminal table or JSON; the HTML page is `_html`.

The table rows are built once (`_rows`) and shared by the terminal and HTML renderings, so both say the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from robustprompt._text import grid
from robustprompt.evals._compare import (
    ACCURACY,
    CANNOT_JUDGE,
    REGRESSION,
    VALID,
    VALID_FIRST,
    Comparison,
    Figure,
    ModelStats,
    Rate,
    TrendPoint,
    format_p,
    format_pct,
    summarize,
)
from robustprompt.evals._results import CaseResult
from robustprompt.evals._stats import Interval

__all__ = ["render_json", "render_single_table", "render_table", "render_trend"]

_LIST_LIMIT = 20  # case ids listed inline in the terminal before "and N more"


@dataclass(frozen=True)
class _Row:
    metric: str
    a: str = ""
    b: str = ""
    diff: str = ""
    p: str = ""
    n: str = ""
    section: bool = False  # a heading row that spans the table
    flagged: bool = False  # this figure is a reason B regressed


# ------------------------------------------------------------------------------------------------ cells


def _pct_ci(rate: Rate) -> str:
    if rate.value is None or rate.ci is None:
        return "n/a"
    return f"{format_pct(rate.value)} [{100 * rate.ci.low:.1f}, {100 * rate.ci.high:.1f}]"


def _diff_ci(
    diff: float | None, ci: Interval | None, *, scale: float = 100.0, digits: int = 1, unit: str = " pts"
) -> str:
    if diff is None:
        return "n/a"
    spread = "" if ci is None else f" [{scale * ci.low:+.{digits}f}, {scale * ci.high:+.{digits}f}]"
    return f"{scale * diff:+.{digits}f}{unit}{spread}"


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _n(*counts: tuple[str, int]) -> str:
    """One n when all agree, else each labelled, so a reader never guesses which cases a figure covers."""
    values = {count for _, count in counts}
    if len(values) == 1:
        return str(values.pop())
    return " / ".join(f"{label} {count}" for label, count in counts)


# ------------------------------------------------------------------------------------------------ rows


def _model_figures(s: ModelStats) -> dict[str, tuple[str, int]]:
    """Each per-model metric -> (cell, n), in display order."""
    figures: dict[str, tuple[str, int]] = {
        "cases": (str(s.n), s.n),
        "failed": (str(len(s.failed)), s.n),
        VALID_FIRST: (_pct_ci(s.valid_first), s.valid_first.n),
        VALID: (_pct_ci(s.valid), s.valid.n),
        "mean repairs per case": (_number(s.repairs.value), s.repairs.n),
        ACCURACY: (_pct_ci(s.accuracy), s.accuracy.n),
    }
    figures.update({f"{ACCURACY} · {name}": (_pct_ci(rate), rate.n) for name, rate in s.field_accuracy.items()})
    figures.update(
        {
            "verbosity (mean chars)": _figure(s.verbosity, 1),
            "latency p50 (s)": _figure(s.latency_p50, 3),
            "latency p95 (s)": _figure(s.latency_p95, 3),
            "input tokens (total)": _figure(s.input_tokens, 0),
            "output tokens (total)": _figure(s.output_tokens, 0),
            "cost (total, USD)": ("unknown" if s.cost.value is None else f"{s.cost.value:.4f}", s.cost.n),
        }
    )
    return figures


def _figure(f: Figure, digits: int) -> tuple[str, int]:
    return _number(f.value, digits), f.n


def _rows(c: Comparison) -> list[_Row]:
    rows = [_Row(f"paired cases: B - A on the {c.paired} cases both ran", section=True)]
    rows += [
        _Row(d.metric, _pct_ci(d.a), _pct_ci(d.b), _diff_ci(d.diff, d.ci), _p(d.p_value), str(d.n), flagged=d.regressed)
        for d in c.rates
    ]
    rows += [
        _Row(d.metric + (" (gated)" if d.gated else ""), _pct_ci(d.a), _pct_ci(d.b), _diff_ci(d.diff, d.ci),
             _p(d.p_value), str(d.n), flagged=d.regressed)
        for d in c.fields
    ]  # fmt: skip
    rows += [
        _Row(m.metric, _number(m.a, 3), _number(m.b, 3), _diff_ci(m.diff, m.ci, scale=1.0, digits=3, unit=""),
             n=str(m.n), flagged=any(r.startswith(f"{m.metric} fell") for r in c.reasons))
        for m in c.field_scores
    ]  # fmt: skip
    rows.append(_Row("mismatch (answer changed)", diff=_pct_ci(c.mismatch), n=str(c.mismatch.n)))
    if c.stability is not None:
        st = c.stability
        rows.append(_Row("  changed, stable on both sides (change)", diff=str(st.changed_stable), n=str(c.mismatch.n)))
        rows.append(
            _Row("  changed, unstable on a side (instability)", diff=str(st.changed_unstable), n=str(c.mismatch.n))
        )
    rows += [_Row(f"agreement · {name}", diff=_pct_ci(rate), n=str(rate.n)) for name, rate in c.agreement.items()]
    rows += [
        _Row(m.metric, _number(m.a), _number(m.b), _diff_ci(m.diff, m.ci, scale=1.0, digits=2, unit=""), n=str(m.n))
        for m in c.means
    ]
    if c.stability is not None:
        st = c.stability
        rows.append(_Row(f"stability: {st.repeats} runs per case", section=True))
        rows.append(
            _Row(
                "stable cases (all runs agree)",
                _pct_ci(st.a_stable),
                _pct_ci(st.b_stable),
                n=_n(("A", st.a_stable.n), ("B", st.b_stable.n)),
            )
        )
        rows.append(
            _Row(
                "mean stability", _stability_mean(st.a), _stability_mean(st.b), n=_n(("A", len(st.a)), ("B", len(st.b)))
            )
        )
    rows.append(_Row("per model: each over its own cases", section=True))
    fa, fb = _model_figures(c.a), _model_figures(c.b)
    for metric in {**fa, **fb}:
        (a, na), (b, nb) = fa.get(metric, ("", 0)), fb.get(metric, ("", 0))
        rows.append(_Row(metric, a, b, n=_n(("A", na), ("B", nb))))
    return rows


def _stability_mean(per_case: dict[str, float]) -> str:
    return "n/a" if not per_case else format_pct(sum(per_case.values()) / len(per_case))


def _unstable(per_case: dict[str, float]) -> list[str]:
    """Case ids whose runs disagree, least stable first, with their stability."""
    shaky = sorted((share, case_id) for case_id, share in per_case.items() if share < 1.0)
    return [f"{case_id} ({100 * share:.0f} %)" for share, case_id in shaky]


def _settings(c: Comparison) -> list[str]:
    return [f"settings {side}: {text}" for side, text in c.settings.items()]


def _p(p: float | None) -> str:
    return format_p(p).removeprefix("p = ").removeprefix("p ")


def _verdict(c: Comparison) -> str:
    t = c.thresholds
    if c.verdict == REGRESSION:
        return f"B REGRESSES (a gated rate fell more than {100 * t.max_drop:g} pts with p < {t.alpha:g})"
    if c.verdict == CANNOT_JUDGE:
        return "CANNOT JUDGE: too few valid answers for a verdict"
    return f"no regression beyond {100 * t.max_drop:g} pts at alpha {t.alpha:g}"


def _why(c: Comparison) -> list[str]:
    """The verdict's grounds: the regressions, or why there is no verdict and the commonest failures behind it."""
    if c.verdict != CANNOT_JUDGE:
        return list(c.reasons)
    lines = list(c.undecided)
    for label, s in (("A", c.a), ("B", c.b)):
        lines += [
            f"top failure on {label}: {f.error_kind} x{f.count} of {s.n}: {f.reason} (e.g. case {f.case_ids[0]})"
            for f in s.top_failures
        ]
    return lines


# ------------------------------------------------------------------------------------------------ terminal


def render_table(c: Comparison) -> str:
    """A plain-text report for a terminal: verdict, figures with CIs, p-values and n, and what was left out."""
    level = f"{c.thresholds.level:.0%} CI"
    lines = [
        f"task {c.task}: A = {c.a.model}, B = {c.b.model}",
        *_settings(c),
        f"verdict: {_verdict(c)}",
        *(f"  - {reason}" for reason in _why(c)),
        "",
        grid(["metric", "A", "B", f"B - A [{level}]", "p", "n"], [_cells(r) for r in _rows(c)]),
    ]
    lines += [f"note: {note}" for note in c.notes]
    lines += _case_lists(c)
    if c.history:
        lines += ["", _trend_grid(c.history)]
    return "\n".join(lines) + "\n"


def _trend_grid(points: Sequence[TrendPoint]) -> str:
    rows = [
        [p.date, str(p.n), _pct_ci(p.accuracy), _pct_ci(p.valid), _number(p.verbosity.value, 1), _pct_ci(p.mismatch)]
        for p in points
    ]
    header = ["date", "cases", "accuracy", "schema-valid", "verbosity (chars)", "mismatch vs baseline"]
    return "trend over every stored date:\n" + grid(header, rows)


def render_trend(model: str, points: Sequence[TrendPoint]) -> str:
    """`drift` with no baseline: the model's figures on every stored date (mismatch against the first)."""
    if not points:
        return f"model {model}: no stored results\n"
    table = _trend_grid(points).replace("mismatch vs baseline", f"mismatch vs {points[0].date}")
    return f"model {model}\n{table}\n"


def _cells(row: _Row) -> list[str]:
    if row.section:
        return [f"-- {row.metric}"]
    return [("! " if row.flagged else "") + row.metric, row.a, row.b, row.diff, row.p, row.n]


def _case_lists(c: Comparison) -> list[str]:
    lines = []
    for label, ids in ((f"only on A ({c.a.model})", c.only_a), (f"only on B ({c.b.model})", c.only_b)):
        if ids:
            lines.append(f"{label}: {_ids(ids)}")
    for stats in (c.a, c.b):
        if stats.failed:
            lines.append(f"failed on {stats.model}: {_ids([f'{f.case_id} ({f.error_kind})' for f in stats.failed])}")
    if c.stability is not None:
        for label, per_case in (("A", c.stability.a), ("B", c.stability.b)):
            if shaky := _unstable(per_case):
                lines.append(f"unstable on {label} (share of runs giving the commonest answer): {_ids(shaky)}")
    if c.mismatch.k:
        lines.append(f"changed answers: {c.mismatch.k} (first {len(c.changed)} in the JSON and HTML reports)")
    return lines


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_LIST_LIMIT])
    return shown if len(ids) <= _LIST_LIMIT else f"{shown}, and {len(ids) - _LIST_LIMIT} more"


def render_single_table(
    model: str, results: Sequence[CaseResult], *, settings: str | None = None, stability: dict[str, float] | None = None
) -> str:
    """One model's figures (for `robustprompt run`), with the failed cases (and unstable ones) listed."""
    s = summarize(model, results)
    rows = [[metric, cell, str(n)] for metric, (cell, n) in _model_figures(s).items()]
    if stability:
        stable = sum(share >= 1.0 for share in stability.values())
        rows.append(["stable cases (all runs agree)", f"{stable} of {len(stability)}", str(len(stability))])
        rows.append(["mean stability", _stability_mean(stability), str(len(stability))])
    header = [f"model {model}", *([f"settings: {settings}"] if settings else [])]
    lines = [*header, "", grid(["metric", "value [95% CI]", "n"], rows)]
    if stability and (shaky := _unstable(stability)):
        lines.append(f"unstable: {_ids(shaky)}")
    if s.failed:
        lines.append(f"failed: {_ids([f'{f.case_id} ({f.error_kind}: {f.error})' for f in s.failed])}")
    return "\n".join(lines) + "\n"


def render_json(c: Comparison) -> str:
    return json.dumps(c.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
