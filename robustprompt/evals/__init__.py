"""Evaluating a task across models and time: case files, per-case results, the comparison and its reports.

The `robustprompt` command (`run`, `migrate`, `drift`, `snapshot`, `models`) is built from these; use them directly
to script your own migrations.

    cases = load_cases("cases.jsonl", task)
    a = [CaseResult.from_outcome(c.id, task, run, model="A", expected=c.expected) for c, run in ...]
    comparison = compare(task.name, "A", a, "B", b, Thresholds(max_drop=0.02))
    Path("report.html").write_text(render_html(comparison))
"""

from robustprompt.evals._cases import Case, CaseProblem, CaseSet, load_cases
from robustprompt.evals._compare import Comparison, Thresholds, compare, format_p, format_pct
from robustprompt.evals._html import render_html
from robustprompt.evals._links import link_case_results
from robustprompt.evals._report import render_json, render_single_table, render_table
from robustprompt.evals._results import CaseResult
from robustprompt.evals._store import Store

__all__ = [
    "Case",
    "CaseProblem",
    "CaseResult",
    "CaseSet",
    "Comparison",
    "Store",
    "Thresholds",
    "compare",
    "format_p",
    "format_pct",
    "link_case_results",
    "load_cases",
    "render_html",
    "render_json",
    "render_single_table",
    "render_table",
]
