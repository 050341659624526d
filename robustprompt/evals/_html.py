"""A Comparison as one self-contained HTML page: verdict, charts (`_charts`), the figures of the terminal table
(`_report._rows`, so both say the same thing) and the changed cases side by side.

The page loads nothing: inline CSS, inline SVG, a few lines of inline JS, and a Content-Security-Policy that forbids
any fetch, so it opens the same offline, in CI artefacts and in mail attachments.
"""

from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from typing import Any

from robustprompt.evals._charts import agreement_chart, rate_chart, trend_chart
from robustprompt.evals._compare import (
    CANNOT_JUDGE,
    REGRESSION,
    ChangedCase,
    Comparison,
)
from robustprompt.evals._report import _rows, _settings, _unstable, _verdict, _why

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;color:#1d2433;
padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}.sub{color:#5a6478;margin:0}
.verdict{border-radius:8px;padding:.8rem 1rem;margin:1.2rem 0;border:2px solid}
.verdict.bad{background:#fdecea;border-color:#c0392b}.verdict.ok{background:#eaf7ee;border-color:#2e8b57}
.verdict.unsure{background:#fff6dd;border-color:#b8860b}
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


def render_html(c: Comparison) -> str:
    """One self-contained HTML page: verdict, charts with intervals, the figures, and the changed cases side by side."""
    title = f"{c.task}: {c.a.model} → {c.b.model}"
    body = "\n".join(
        [
            f"<h1>Model comparison: {escape(c.task)}</h1>",
            f'<p class="sub">A = <span class="a">{escape(c.a.model)}</span>, '
            f'B = <span class="b">{escape(c.b.model)}</span>; {c.paired} paired cases</p>',
            *(f'<p class="sub settings">{escape(line)}</p>' for line in _settings(c)),
            _verdict_html(c),
            '<h2>Charts</h2><div class="charts">',
            _figure_html(rate_chart(c), "Per model, over its own cases; whiskers are Wilson intervals."),
            _figure_html(agreement_chart(c), "Share of paired cases where A and B give the same value per field."),
            *(
                [_figure_html(trend_chart(c.history), "B's model on every stored date; mismatch is against A.")]
                if c.history
                else []
            ),
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
    items = "".join(f"<li>{escape(reason)}</li>" for reason in _why(c))
    notes = "".join(f"<li>{escape(note)}</li>" for note in c.notes)
    style = {REGRESSION: "bad", CANNOT_JUDGE: "unsure"}.get(c.verdict, "ok")
    return (
        f'<div class="verdict {style}" id="verdict"><strong>{escape(_verdict(c))}</strong>'
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
    if c.stability is not None:
        for label, per_case in (("A", c.stability.a), ("B", c.stability.b)):
            if shaky := _unstable(per_case):
                blocks.append(_details(f"Unstable on {label}: {len(shaky)} cases", [escape(i) for i in shaky]))
    return "".join(blocks)


def _details(summary: str, items: list[str]) -> str:
    lis = "".join(f"<li>{item}</li>" for item in items)
    return f"<details><summary>{escape(summary)}</summary><ul>{lis}</ul></details>"
