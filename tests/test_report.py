from __future__ import annotations

import json
import re
from html import escape
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from robustprompt.evals._compare import Comparison, Thresholds, compare
from robustprompt.evals._html import render_html
from robustprompt.evals._report import render_json, render_single_table, render_table
from tests.test_compare import NO, YES, result, scored

HOSTILE = '<script>alert("x")</script><img src="https://evil.example/x.png" onerror="alert(1)">'


def regressed() -> Comparison:
    a = [*scored(50, wrong=set(range(5))), result("a-only", YES, YES)]
    b = [*scored(50, wrong=set(range(20)), failed=frozenset({45, 46})), result("b-only", YES, YES)]
    return compare("pkg.tasks:classify", "local:smollm2", a, "local:gemma3-270m", b)


def safe() -> Comparison:
    return compare("t", "A", scored(50, wrong=set(range(5))), "B", scored(50, wrong=set(range(6))))


class Tags(HTMLParser):
    """Every start tag with its attributes, and a check that elements close in order."""

    VOID = frozenset({"meta", "input", "br", "img", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def tags_of(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    parser.close()
    assert parser.open == [], f"unclosed: {parser.open}"
    return parser


# ------------------------------------------------------------------------------------------------ terminal


def test_table_says_verdict_figures_and_n() -> None:
    text = render_table(regressed())
    assert "task pkg.tasks:classify: A = local:smollm2, B = local:gemma3-270m" in text
    assert "verdict: B REGRESSES" in text
    assert "accuracy fell 34.0 pts" in text  # 15 wrong answers and 2 failures on B
    header = next(line for line in text.splitlines() if line.startswith("metric"))
    assert re.split(r"\s{2,}", header) == ["metric", "A", "B", "B - A [95% CI]", "p", "n"]
    accuracy = next(line for line in text.splitlines() if line.startswith("! accuracy"))
    assert "90.0 % [" in accuracy and "56.0 % [" in accuracy and "-34.0 pts [" in accuracy and "< 0.0001" in accuracy
    assert re.search(r"^cases\s+51\s+51\s+51$", text, re.M)
    assert "only on A (local:smollm2): a-only" in text and "only on B (local:gemma3-270m): b-only" in text
    assert "failed on local:gemma3-270m: 45 (OutputError), 46 (OutputError)" in text
    assert "mismatch (answer changed)" in text and "agreement · answer" in text


def test_table_of_a_safe_comparison() -> None:
    text = render_table(safe())
    assert "verdict: no regression beyond 2 pts at alpha 0.05" in text
    assert "! " not in text


def test_table_labels_each_n_when_the_sides_differ() -> None:
    c = compare("t", "A", [result("1", YES), result("2", YES)], "B", [result("1", YES)])
    assert re.search(r"^cases\s+2\s+1\s+A 2 / B 1$", render_table(c), re.M)


def test_long_case_lists_are_cut() -> None:
    c = compare("t", "A", [result(str(i), YES) for i in range(30)], "B", [])
    assert "only on A (A): 0, 1, 2" in render_table(c) and "and 10 more" in render_table(c)


def test_single_table_for_one_model() -> None:
    text = render_single_table("local:smollm2", scored(20, wrong={1, 2}, failed=frozenset({3})))
    assert text.startswith("model local:smollm2\n")
    assert re.search(r"^accuracy\s+85\.0 % \[\d+\.\d, \d+\.\d\]\s+20$", text, re.M)
    assert re.search(r"^failed\s+1\s+20$", text, re.M)
    assert "failed: 3 (OutputError: no valid output after 3 attempts)" in text


def test_json_is_the_comparison() -> None:
    c = regressed()
    data = json.loads(render_json(c))
    assert data == json.loads(json.dumps(c.to_json()))
    assert data["regressed"] is True and data["reasons"] == c.reasons


# ------------------------------------------------------------------------------------------------ HTML


def test_html_is_one_well_formed_self_contained_page() -> None:
    page = render_html(regressed())
    tags = tags_of(page)
    names = [tag for tag, _ in tags.tags]
    assert names.count("svg") == 2 and names.count("script") == 1 and names.count("style") == 1
    assert "<title>pkg.tasks:classify: local:smollm2 → local:gemma3-270m</title>" in page
    assert 'class="verdict bad"' in page and "B REGRESSES" in page


def test_html_references_no_external_resource() -> None:
    page = render_html(regressed())
    for _, attrs in tags_of(page).tags:
        for name in ("src", "href", "action", "xlink:href"):
            assert attrs.get(name) is None, f"{name}={attrs.get(name)}"
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "default-src 'none'" in page  # even injected markup could not fetch anything


def test_html_draws_bars_with_whiskers_for_each_rate_and_field() -> None:
    page = render_html(regressed())
    rates = page.split('id="rate-chart"')[1].split("</svg>")[0]
    assert rates.count('class="bar"') == 6 and rates.count('class="whisker"') == 6
    assert "A accuracy: 90.2 % [" in rates and "n=51" in rates  # per model, over its own 51 cases
    agreement = page.split('id="agreement-chart"')[1].split("</svg>")[0]
    assert agreement.count('class="bar"') == 1 and "answer" in agreement


def test_html_lists_changed_cases_side_by_side() -> None:
    page = render_html(regressed())
    changed = page.split('id="changed"')[1]
    assert changed.count('data-kind="worse"') == 17  # 15 wrong answers + 2 failures, all correct on A
    assert '<td class="kind worse">worse</td>' in changed
    assert "failed: no valid output after 3 attempts" in changed
    assert "raw answer (5 chars)" in changed and "<pre>[Yes]</pre>" in changed


def test_html_escapes_everything_a_model_or_a_user_wrote() -> None:
    a = [result(HOSTILE, YES, YES, raw=HOSTILE, model=HOSTILE)]
    b = [result(HOSTILE, {"answer": HOSTILE}, YES, raw=HOSTILE)]
    page = render_html(compare(HOSTILE, HOSTILE, a, HOSTILE, b))
    assert "<script>alert" not in page and "<img" not in page
    assert escape(HOSTILE) in page
    assert [tag for tag, _ in tags_of(page).tags].count("script") == 1


@given(st.text(max_size=60))
def test_no_text_can_open_a_tag(text: str) -> None:
    page = render_html(compare(text, text, [result(text, YES, raw=text)], text, [result(text, NO, raw=text)]))
    assert [tag for tag, _ in tags_of(page).tags].count("script") == 1


def test_html_of_a_safe_comparison_without_expected_outputs() -> None:
    c = compare("t", "A", [result("1", YES)], "B", [result("1", YES)], Thresholds(min_pairs=1))
    page = render_html(c)
    tags_of(page)
    assert 'class="verdict ok"' in page and "No paired case changed its answer." in page
    assert page.split('id="rate-chart"')[1].split("</svg>")[0].count('class="bar"') == 4  # no accuracy group


def test_html_of_nothing_at_all() -> None:
    page = render_html(compare("t", "A", [], "B", []))
    tags_of(page)
    assert "no paired outputs to compare" in page
