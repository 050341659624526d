"""Render a Comparison (or one model's results) as a terminal table, JSON, or one self-contained HTML page.

The table rows are built once (`_rows`) and shared by the terminal and HTML renderings, so both say the same thing.
The HTML page loads nothing: inline CSS, inline SVG drawn here, a few lines of inline JS, and a Content-Security-Policy
that forbids any fetch, so it opens the same offline, in CI artefacts and in mail attachments.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from robustprompt._text import grid
from robustprompt.evals._compare import (
    ACCURACY,
    VALID,
    VALID_FIRST,
    ChangedCase,
    Comparison,
    Figure,
    ModelStats,
    Rate,
    format_p,
    format_pct,
    summarize,
)
from robustprompt.evals._results import CaseResult
from robustprompt.evals._stats import Interval

__all__ = ["render_html", "render_json", "render_single_table", "render_table"]

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
    rows.append(_Row("mismatch (answer changed)", diff=_pct_ci(c.mismatch), n=str(c.mismatch.n)))
    rows += [_Row(f"agreement · {name}", diff=_pct_ci(rate), n=str(rate.n)) for name, rate in c.agreement.items()]
    rows += [
        _Row(m.metric, _number(m.a), _number(m.b), _diff_ci(m.diff, m.ci, scale=1.0, digits=2, unit=""), n=str(m.n))
        for m in c.means
    ]
    rows.append(_Row("per model: each over its own cases", section=True))
    fa, fb = _model_figures(c.a), _model_figures(c.b)
    for metric in {**fa, **fb}:
        (a, na), (b, nb) = fa.get(metric, ("", 0)), fb.get(metric, ("", 0))
        rows.append(_Row(metric, a, b, n=_n(("A", na), ("B", nb))))
    return rows


def _p(p: float | None) -> str:
    return format_p(p).removeprefix("p = ").removeprefix("p ")


def _verdict(c: Comparison) -> str:
    t = c.thresholds
    if c.regressed:
        return f"B REGRESSES (a gated rate fell more than {100 * t.max_drop:g} pts with p < {t.alpha:g})"
    return f"no regression beyond {100 * t.max_drop:g} pts at alpha {t.alpha:g}"


# ------------------------------------------------------------------------------------------------ terminal


def render_table(c: Comparison) -> str:
    """A plain-text report for a terminal: verdict, figures with CIs, p-values and n, and what was left out."""
    level = f"{c.thresholds.level:.0%} CI"
    lines = [
        f"task {c.task}: A = {c.a.model}, B = {c.b.model}",
        f"verdict: {_verdict(c)}",
        *(f"  - {reason}" for reason in c.reasons),
        "",
        grid(["metric", "A", "B", f"B - A [{level}]", "p", "n"], [_cells(r) for r in _rows(c)]),
    ]
    lines += [f"note: {note}" for note in c.notes]
    lines += _case_lists(c)
    return "\n".join(lines) + "\n"


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
    if c.mismatch.k:
        lines.append(f"changed answers: {c.mismatch.k} (first {len(c.changed)} in the JSON and HTML reports)")
    return lines


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_LIST_LIMIT])
    return shown if len(ids) <= _LIST_LIMIT else f"{shown}, and {len(ids) - _LIST_LIMIT} more"


def render_single_table(model: str, results: Sequence[CaseResult]) -> str:
    """One model's figures (for `robustprompt run`), with the failed cases listed."""
    s = summarize(model, results)
    rows = [[metric, cell, str(n)] for metric, (cell, n) in _model_figures(s).items()]
    lines = [f"model {model}", "", grid(["metric", "value [95% CI]", "n"], rows)]
    if s.failed:
        lines.append(f"failed: {_ids([f'{f.case_id} ({f.error_kind}: {f.error})' for f in s.failed])}")
    return "\n".join(lines) + "\n"


def render_json(c: Comparison) -> str:
    return json.dumps(c.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------------------------ HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;color:#1d2433;
padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}.sub{color:#5a6478;margin:0}
.verdict{border-radius:8px;padding:.8rem 1rem;margin:1.2rem 0;border:2px solid}
.verdict.bad{background:#fdecea;border-color:#c0392b}.verdict.ok{background:#eaf7ee;border-color:#2e8b57}
.verdict strong{font-size:1.1rem}.verdict ul{margin:.4rem 0 0}.notes{color:#5a6478}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.charts figure{margin:0}figcaption{color:#5a6478;font-size:.9rem}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e3e6ee;padding:.3rem .5rem;text-align:left;
vertical-align:top}th{background:#f4f6fa}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
tr.section td{background:#eef1f7;font-weight:600}tr.flagged td{background:#fdecea}
.a{color:#3b56c4}.b{color:#b5651d}pre,code{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;
word-break:break-word}pre{max-height:16rem;overflow:auto;background:#f7f8fb;padding:.4rem;margin:.3rem 0}
.kind{font-weight:600}.worse{color:#c0392b}.better{color:#2e8b57}.error{color:#c0392b}
.filters{margin:.5rem 0;display:flex;gap:.75rem;align-items:center}
"""

_JS = """
(function () {
  var text = document.getElementById("case-filter");
  var kind = document.getElementById("kind-filter");
  var count = document.getElementById("case-count");
  if (!text || !kind || !count) { return; }
  function apply() {
    var needle = text.value.toLowerCase();
    var shown = 0;
    document.querySelectorAll("#changed tbody tr").forEach(function (row) {
      var visible = (kind.value === "all" || row.dataset.kind === kind.value) &&
        row.textContent.toLowerCase().indexOf(needle) !== -1;
      row.hidden = !visible;
      if (visible) { shown += 1; }
    });
    count.textContent = String(shown);
  }
  text.addEventListener("input", apply);
  kind.addEventListener("change", apply);
  apply();
})();
"""

# No fetch of any kind, and no script but ours (pinned by its hash), even if a model's answer smuggled markup
# past escaping.
_JS_HASH = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_JS_HASH}'; form-action 'none'; base-uri 'none'"
)
_A_COLOUR, _B_COLOUR = "#5b73d6", "#e0893a"


def render_html(c: Comparison) -> str:
    """One self-contained HTML page: verdict, charts with intervals, the figures, and the changed cases side by side."""
    title = f"{c.task}: {c.a.model} → {c.b.model}"
    body = "\n".join(
        [
            f"<h1>Model comparison: {escape(c.task)}</h1>",
            f'<p class="sub">A = <span class="a">{escape(c.a.model)}</span>, '
            f'B = <span class="b">{escape(c.b.model)}</span>; {c.paired} paired cases</p>',
            _verdict_html(c),
            '<h2>Charts</h2><div class="charts">',
            _figure_html(_rate_chart(c), "Per model, over its own cases; whiskers are Wilson intervals."),
            _figure_html(_agreement_chart(c), "Share of paired cases where A and B give the same value per field."),
            "</div>",
            "<h2>Figures</h2>",
            _metrics_html(c),
            _changed_html(c),
            _lists_html(c),
        ]
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n<script>{_JS}</script>\n"
        "</body></html>\n"
    )


def _verdict_html(c: Comparison) -> str:
    items = "".join(f"<li>{escape(reason)}</li>" for reason in c.reasons)
    notes = "".join(f"<li>{escape(note)}</li>" for note in c.notes)
    return (
        f'<div class="verdict {"bad" if c.regressed else "ok"}" id="verdict"><strong>{escape(_verdict(c))}</strong>'
        f"{f'<ul>{items}</ul>' if items else ''}{f'<ul class=notes>{notes}</ul>' if notes else ''}</div>"
    )


def _figure_html(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _metrics_html(c: Comparison) -> str:
    head = "".join(
        f"<th>{escape(h)}</th>" for h in ("metric", "A", "B", f"B − A [{c.thresholds.level:.0%} CI]", "p", "n")
    )
    rows = []
    for r in _rows(c):
        if r.section:
            rows.append(f'<tr class="section"><td colspan="6">{escape(r.metric)}</td></tr>')
            continue
        cells = "".join(f'<td class="num">{escape(v)}</td>' for v in (r.a, r.b, r.diff, r.p, r.n))
        rows.append(f"<tr{' class=flagged' if r.flagged else ''}><td>{escape(r.metric)}</td>{cells}</tr>")
    return f'<table id="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _changed_html(c: Comparison) -> str:
    if not c.changed:
        return "<h2>Changed answers</h2><p>No paired case changed its answer.</p>"
    options = "".join(f'<option value="{k}">{k}</option>' for k in ("all", "worse", "better", "changed"))
    rows = "".join(_changed_row(case) for case in c.changed)
    return (
        f"<h2>Changed answers</h2><p>{c.mismatch.k} of {c.mismatch.n} paired cases changed; "
        f"the first {len(c.changed)} are listed, B's losses first.</p>"
        '<div class="filters"><label>filter <input id="case-filter" type="search"></label>'
        f'<label>kind <select id="kind-filter">{options}</select></label>'
        f'<span>showing <span id="case-count">{len(c.changed)}</span></span></div>'
        '<table id="changed"><thead><tr><th>case</th><th>kind</th><th>expected</th>'
        f"<th>A: {escape(c.a.model)}</th><th>B: {escape(c.b.model)}</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _changed_row(case: ChangedCase) -> str:
    return (
        f'<tr data-kind="{case.kind}"><td><code>{escape(case.case_id)}</code></td>'
        f'<td class="kind {case.kind}">{case.kind}</td><td>{_json_html(case.expected)}</td>'
        f"<td>{_answer_html(case.a_output, case.a_raw, case.a_error)}</td>"
        f"<td>{_answer_html(case.b_output, case.b_raw, case.b_error)}</td></tr>"
    )


def _answer_html(output: dict[str, Any] | None, raw: str | None, error: str | None) -> str:
    parts = [_json_html(output) if output is not None else f'<span class="error">failed: {escape(error or "")}</span>']
    if raw is not None:
        parts.append(f"<details><summary>raw answer ({len(raw)} chars)</summary><pre>{escape(raw)}</pre></details>")
    return "".join(parts)


def _json_html(value: dict[str, Any] | None) -> str:
    return "—" if value is None else f"<code>{escape(json.dumps(value, ensure_ascii=False))}</code>"


def _lists_html(c: Comparison) -> str:
    blocks = []
    for label, ids in ((f"Only on A ({c.a.model})", c.only_a), (f"Only on B ({c.b.model})", c.only_b)):
        if ids:
            blocks.append(_details(f"{label}: {len(ids)} cases", [escape(i) for i in ids]))
    for s in (c.a, c.b):
        if s.failed:
            items = [
                f"<code>{escape(f.case_id)}</code> {escape(f.error_kind)}: {escape(f.error or '')}" for f in s.failed
            ]
            blocks.append(_details(f"Failed on {s.model}: {len(s.failed)} of {s.n} cases", items))
    return "".join(blocks)


def _details(summary: str, items: list[str]) -> str:
    lis = "".join(f"<li>{item}</li>" for item in items)
    return f"<details><summary>{escape(summary)}</summary><ul>{lis}</ul></details>"


# ------------------------------------------------------------------------------------------------ SVG charts

_W, _H, _TOP, _BOTTOM, _LEFT = 520, 270, 36, 44, 44  # chart size and margins, in px


def _rate_chart(c: Comparison) -> str:
    """Grouped bars: per metric, A and B with their Wilson whiskers, on a 0-100 % axis."""
    groups = [
        ("valid, 1st attempt", c.a.valid_first, c.b.valid_first),
        ("valid after re-asks", c.a.valid, c.b.valid),
        ("accuracy", c.a.accuracy, c.b.accuracy),
    ]
    groups = [g for g in groups if g[1].n or g[2].n]
    plot_h = _H - _TOP - _BOTTOM
    slot = (_W - _LEFT - 10) / max(1, len(groups))
    bar = min(48.0, slot / 3)
    parts = [_svg_open("rate-chart", _W, _H, "Validity and accuracy per model"), _y_axis(plot_h)]
    for i, (label, ra, rb) in enumerate(groups):
        x0 = _LEFT + i * slot + (slot - 2 * bar) / 2
        for j, (rate, colour, side) in enumerate(((ra, _A_COLOUR, "A"), (rb, _B_COLOUR, "B"))):
            parts.append(_vbar(x0 + j * bar, bar - 4, rate, colour, f"{side} {label}", plot_h))
        parts.append(_text(x0 + bar, _H - _BOTTOM + 16, label, "middle"))
    parts.append(_legend(_W - 120, 12, c))
    return "".join(parts) + "</svg>"


def _vbar(x: float, width: float, rate: Rate, colour: str, label: str, plot_h: float) -> str:
    value = rate.value or 0.0
    top = _TOP + plot_h * (1 - value)
    tip = f"{label}: {_pct_ci(rate)}, n={rate.n}"
    out = (
        f'<rect class="bar" x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{plot_h * value:.1f}" '
        f'fill="{colour}"><title>{escape(tip)}</title></rect>'
    )
    if rate.ci is not None:
        mid, low, high = x + width / 2, _TOP + plot_h * (1 - rate.ci.low), _TOP + plot_h * (1 - rate.ci.high)
        out += (
            f'<path class="whisker" d="M{mid:.1f} {low:.1f}V{high:.1f}M{mid - 5:.1f} {low:.1f}h10M{mid - 5:.1f} '
            f'{high:.1f}h10" stroke="#1d2433" stroke-width="1.5" fill="none"/>'
        )
    label_y = top if rate.ci is None else min(top, _TOP + plot_h * (1 - rate.ci.high))
    return out + _text(x + width / 2, label_y - 4, "n/a" if rate.value is None else f"{100 * value:.1f}%", "middle")


def _y_axis(plot_h: float) -> str:
    ticks = []
    for pct in (0, 25, 50, 75, 100):
        y = _TOP + plot_h * (1 - pct / 100)
        ticks.append(f'<line x1="{_LEFT}" x2="{_W - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ee"/>')
        ticks.append(_text(_LEFT - 6, y + 4, f"{pct}%", "end"))
    return "".join(ticks)


def _legend(x: float, y: float, c: Comparison) -> str:
    items = []
    for i, (colour, side, name) in enumerate(((_A_COLOUR, "A", c.a.model), (_B_COLOUR, "B", c.b.model))):
        items.append(
            f'<rect x="{x + i * 60}" y="{y - 10}" width="12" height="12" fill="{colour}"><title>{escape(name)}</title>'
            f"</rect>{_text(x + i * 60 + 16, y, side, 'start')}"
        )
    return "".join(items)


def _agreement_chart(c: Comparison) -> str:
    """One horizontal bar per output field: the share of paired cases where A and B agree, with its whisker."""
    fields = list(c.agreement.items())
    row, left, width = 28, 140, _W - 140 - 60
    height = _TOP + row * max(1, len(fields)) + 20
    parts = [_svg_open("agreement-chart", _W, height, "Per-field agreement between A and B")]
    if not fields:
        parts.append(_text(_W / 2, _TOP + 14, "no paired outputs to compare", "middle"))
    for i, (name, rate) in enumerate(fields):
        y, value = _TOP + i * row, rate.value or 0.0
        parts.append(_text(left - 8, y + 15, name, "end"))
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{width}" height="{row - 8}" fill="#eef1f7"/>')
        parts.append(
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{width * value:.1f}" height="{row - 8}" fill="#4f9d8b">'
            f"<title>{escape(f'{name}: {_pct_ci(rate)}, n={rate.n}')}</title></rect>"
        )
        if rate.ci is not None:
            x_low, x_high, mid = left + width * rate.ci.low, left + width * rate.ci.high, y + row / 2 - 1
            parts.append(
                f'<path class="whisker" d="M{x_low:.1f} {mid:.1f}H{x_high:.1f}M{x_low:.1f} {mid - 5:.1f}v10'
                f'M{x_high:.1f} {mid - 5:.1f}v10" stroke="#1d2433" stroke-width="1.5" fill="none"/>'
            )
        parts.append(_text(left + width + 6, y + 15, "n/a" if rate.value is None else f"{100 * value:.1f}%", "start"))
    return "".join(parts) + "</svg>"


def _svg_open(ident: str, width: float, height: float, title: str) -> str:
    return (
        f'<svg id="{ident}" class="chart" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" role="img" font-size="12" font-family="system-ui,sans-serif">'
        f"<title>{escape(title)}</title>"
    )


def _text(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="#1d2433">{escape(text)}</text>'
