from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from robustprompt._parse import ParseError, parse
from robustprompt.evals._compare import Comparison, Thresholds, compare, format_p, summarize
from robustprompt.evals._results import CaseResult

YES, NO = {"answer": "yes"}, {"answer": "no"}


def result(
    case_id: str,
    output: dict[str, Any] | None,
    expected: dict[str, Any] | None = None,
    *,
    model: str = "m",
    raw: str | None = "",
    first_valid: bool | None = None,
    latency: float = 1.0,
    tokens: tuple[int, int] = (10, 5),
    cost: float | None = 0.001,
    repairs: int = 0,
) -> CaseResult:
    ok = output is not None
    return CaseResult(
        case_id=case_id,
        model=model,
        ok=ok,
        output=output,
        expected=expected,
        error_kind=None if ok else "OutputError",
        error=None if ok else "no valid output after 3 attempts",
        first_valid=ok if first_valid is None else first_valid,
        attempts=1,
        repairs=repairs,
        raw=raw,
        latency=latency,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost=cost,
        mode="prompted",
        created="2025-01-01T00:00:00+00:00",
    )


def scored(n: int, wrong: set[int], failed: frozenset[int] = frozenset()) -> list[CaseResult]:
    """n yes/no cases, all expecting "yes"; `wrong` answer "no", `failed` give no valid output."""
    return [
        result(str(i), None if i in failed else NO if i in wrong else YES, YES, raw="[No]" if i in wrong else "[Yes]")
        for i in range(n)
    ]


def rate(c: Comparison, metric: str) -> Any:
    return next(d for d in c.rates if d.metric == metric)


# ------------------------------------------------------------------------------------------------ the verdict


def test_a_two_point_drop_on_50_cases_is_not_a_regression() -> None:
    a, b = scored(50, wrong=set(range(5))), scored(50, wrong=set(range(6)))
    c = compare("t", "A", a, "B", b)
    accuracy = rate(c, "accuracy")
    assert (accuracy.a.value, accuracy.b.value, accuracy.n) == (0.9, 0.88, 50)
    assert accuracy.p_value == 1.0 and not accuracy.regressed
    assert not c.regressed and c.reasons == []


def test_a_larger_drop_that_chance_explains_is_noted_not_called_a_regression() -> None:
    a, b = scored(50, wrong=set(range(5))), scored(50, wrong=set(range(8)))
    c = compare("t", "A", a, "B", b)
    assert rate(c, "accuracy").p_value == 0.25 and not c.regressed
    assert "accuracy fell 6.0 pts (n=50) but the change is not significant (p = 0.2500 >= 0.05)" in c.notes[0]


def test_a_real_drop_is_a_regression_with_its_reason() -> None:
    a, b = scored(50, wrong=set(range(5))), scored(50, wrong=set(range(20)))
    c = compare("t", "A", a, "B", b)
    accuracy = rate(c, "accuracy")
    assert accuracy.diff == pytest.approx(-0.30)
    assert (accuracy.a_only, accuracy.b_only) == (15, 0)
    assert accuracy.p_value == 2 / 2**15
    assert accuracy.ci is not None and accuracy.ci.high < 0
    assert c.regressed
    [reason] = c.reasons
    assert reason.startswith("accuracy fell 30.0 pts (90.0 % -> 60.0 %, n=50 paired)")
    assert "McNemar p < 0.0001" in reason and "15 cases passed on A only, 0 on B only" in reason


def test_a_drop_of_exactly_max_drop_is_not_more_than_it() -> None:
    a = scored(1000, wrong=set())
    at_limit, beyond = scored(1000, wrong=set(range(20))), scored(1000, wrong=set(range(21)))
    assert not compare("t", "A", a, "B", at_limit).regressed
    assert compare("t", "A", a, "B", beyond).regressed


def test_a_significant_improvement_is_not_a_regression() -> None:
    c = compare("t", "A", scored(50, wrong=set(range(20))), "B", scored(50, wrong=set()))
    assert not c.regressed and rate(c, "accuracy").p_value < 0.05


def test_thresholds_are_configurable() -> None:
    a, b = scored(50, wrong=set()), scored(50, wrong=set(range(6)))
    assert compare("t", "A", a, "B", b).regressed  # 12 pts, p = 2/64 < 0.05
    assert not compare("t", "A", a, "B", b, Thresholds(max_drop=0.15)).regressed
    assert not compare("t", "A", a, "B", b, Thresholds(alpha=0.01)).regressed


def test_accuracy_gates_when_cases_are_scored_and_first_attempt_validity_never_does() -> None:
    a = scored(60, wrong=set())
    failing = scored(60, wrong=set(), failed=frozenset(range(10)))
    c = compare("t", "A", a, "B", failing)
    assert [d.metric for d in c.rates if d.regressed] == ["accuracy"]  # the failures count once, as wrong
    assert any("decides the verdict" in note for note in c.notes)

    unscored = [result(str(i), YES, None) for i in range(60)]
    unscored_failing = [result(str(i), None if i < 10 else YES, None) for i in range(60)]
    c = compare("t", "A", unscored, "B", unscored_failing)
    assert [d.metric for d in c.rates if d.regressed] == ["schema-valid (after re-asks)"]  # nothing else to go on

    reasked = [result(str(i), YES, YES, first_valid=i >= 30) for i in range(60)]
    c = compare("t", "A", a, "B", reasked)
    first = rate(c, "schema-valid, 1st attempt")
    assert first.diff == pytest.approx(-0.5) and first.p_value < 0.05
    assert not first.regressed and not c.regressed


def test_validity_regression_is_found_without_expected_outputs() -> None:
    a = [result(str(i), YES) for i in range(40)]
    b = [result(str(i), YES if i >= 12 else None) for i in range(40)]
    c = compare("t", "A", a, "B", b)
    assert c.regressed and c.reasons[0].startswith("schema-valid (after re-asks) fell 30.0 pts")
    assert rate(c, "accuracy").n == 0 and rate(c, "accuracy").diff is None
    assert "no paired case has an expected output: accuracy is not compared" in c.notes


# ------------------------------------------------------------------------------------------------ pairing and failures


def test_cases_on_one_side_only_are_counted_and_listed_not_paired() -> None:
    a = [result(i, YES) for i in ("1", "2", "3")]
    b = [result(i, YES) for i in ("2", "3", "4", "5")]
    c = compare("t", "A", a, "B", b)
    assert (c.paired, c.only_a, c.only_b) == (2, ["1"], ["4", "5"])
    assert (c.a.n, c.b.n) == (3, 4)
    assert "1 case(s) ran on A only and are left out of the paired figures" in c.notes
    assert "2 case(s) ran on B only and are left out of the paired figures" in c.notes


def test_a_duplicated_case_id_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(ValueError, match="B: case id '1' appears more than once"):
        compare("t", "A", [result("1", YES)], "B", [result("1", YES), result("1", NO)])


def test_failed_cases_are_counted_listed_and_differ_from_answers() -> None:
    a = [result("1", YES), result("2", YES), result("3", None)]
    b = [result("1", YES), result("2", None), result("3", None)]
    c = compare("t", "A", a, "B", b)
    assert [f.case_id for f in c.b.failed] == ["2", "3"]
    assert c.b.failed[0].error_kind == "OutputError"
    assert (c.b.valid.k, c.b.valid.n) == (1, 3)
    # "2" lost its answer: changed. "3" failed on both sides: no answer changed.
    assert (c.mismatch.k, c.mismatch.n) == (1, 3)
    assert c.changed[0].case_id == "2" and c.changed[0].kind == "worse" and c.changed[0].b_error
    assert "2 of 3 case(s) failed on B (counted as invalid)" in c.notes


def test_a_model_that_fails_every_call_keeps_every_case() -> None:
    a = scored(30, wrong=set())
    b = scored(30, wrong=set(), failed=frozenset(range(30)))
    c = compare("t", "A", a, "B", b)
    assert c.paired == 30 and len(c.b.failed) == 30
    assert c.b.valid.value == 0.0 and c.b.accuracy.value == 0.0 and c.b.accuracy.n == 30
    assert c.regressed


# ------------------------------------------------------------------------------------------------ per-model figures


def test_summary_figures_carry_their_n() -> None:
    results = [
        result("1", YES, YES, raw="ab", latency=1.0, tokens=(100, 10), cost=0.5, repairs=2),
        result("2", NO, YES, raw="abcd", latency=2.0, tokens=(100, 20), cost=0.25),
        result("3", YES, None, raw=None, latency=3.0, tokens=(100, 30), cost=0.25),
        result("4", None, NO, raw="abcdef", latency=4.0, tokens=(50, 0), cost=0.0),
    ]
    s = summarize("m", results)
    assert (s.n, s.valid.k, s.valid.n) == (4, 3, 4)
    assert (s.accuracy.k, s.accuracy.n) == (1, 3)  # case 3 has no expected output
    assert s.repairs.value == 0.5
    assert (s.verbosity.value, s.verbosity.n) == (4.0, 3)  # mean len(raw) over the answers that have one
    assert (s.latency_p50.value, s.latency_p95.value, s.latency_p50.n) == (2.5, pytest.approx(3.85), 4)
    assert (s.input_tokens.value, s.output_tokens.value) == (350, 60)
    assert s.cost.value == 1.0
    assert s.accuracy.ci is not None and s.accuracy.ci.low < 1 / 3 < s.accuracy.ci.high


def test_cost_is_unknown_when_any_price_is_unknown() -> None:
    assert summarize("m", [result("1", YES, cost=0.1), result("2", YES, cost=None)]).cost.value is None


def test_empty_results_have_no_rates() -> None:
    s = summarize("m", [])
    assert s.n == 0 and s.valid.value is None and s.valid.ci is None and s.latency_p50.value is None


def test_field_accuracy_and_agreement_per_top_level_field() -> None:
    expected = {"label": "pos", "score": 1}
    a = [
        result("1", {"label": "pos", "score": 1}, expected),
        result("2", {"label": "pos", "score": 2}, expected),
        result("3", {"label": "neg", "score": 1}, expected),
        result("4", {"label": "pos", "score": None}, expected),
    ]
    b = [
        result("1", {"label": "pos", "score": 1}, expected),
        result("2", {"label": "neg", "score": 2}, expected),
        result("3", {"label": "neg", "score": 3}, expected),
        result("4", None, expected),
    ]
    c = compare("t", "A", a, "B", b)
    assert {k: v.k for k, v in c.a.field_accuracy.items()} == {"label": 3, "score": 2}
    assert {k: v.k for k, v in c.b.field_accuracy.items()} == {"label": 1, "score": 1}
    # A failure shares no field with an answer, not even a null one (case 4's score).
    assert {k: (v.k, v.n) for k, v in c.agreement.items()} == {"label": (2, 4), "score": (2, 4)}
    assert (c.a.accuracy.k, c.b.accuracy.k) == (1, 1)


def test_mean_differences_are_paired_b_minus_a() -> None:
    a = [result(str(i), YES, raw="x" * 10, latency=2.0, tokens=(100, 50)) for i in range(40)]
    b = [result(str(i), YES, raw="x" * (4 + i % 2), latency=1.0, tokens=(100, 2)) for i in range(40)]
    c = compare("t", "A", a, "B", b)
    means = {m.metric: m for m in c.means}
    verbosity = means["verbosity (chars)"]
    assert (verbosity.a, verbosity.b, verbosity.diff, verbosity.n) == (10.0, 4.5, -5.5, 40)
    assert verbosity.ci is not None and verbosity.ci.low < -5.5 < verbosity.ci.high
    assert means["latency (s)"].diff == -1.0 and means["output tokens"].diff == -48.0


# ------------------------------------------------------------------------------------------------ changed cases


def test_changed_cases_put_b_losses_first_and_are_limited() -> None:
    a = [result("gain", NO, YES), result("same", YES, YES), result("other", NO), result("loss", YES, YES)]
    b = [result("gain", YES, YES), result("same", YES, YES), result("other", YES), result("loss", NO, YES)]
    c = compare("t", "A", a, "B", b)
    assert [(x.case_id, x.kind) for x in c.changed] == [("loss", "worse"), ("gain", "better"), ("other", "changed")]
    assert c.changed[0].a_output == YES and c.changed[0].b_output == NO and c.changed[0].expected == YES
    limited = compare("t", "A", a, "B", b, max_changed=1)
    assert [x.case_id for x in limited.changed] == ["loss"] and limited.mismatch.k == 3


def test_to_json_is_plain_json() -> None:
    c = compare("t", "A", scored(10, wrong={1}), "B", scored(10, wrong={2}, failed=frozenset({3})))
    data = json.loads(json.dumps(c.to_json(), allow_nan=False))
    assert data["regressed"] is False and data["paired"] == 10
    assert data["rates"][2]["metric"] == "accuracy" and "ci" in data["rates"][2]
    assert data["thresholds"] == {"max_drop": 0.02, "alpha": 0.05, "min_valid": 0.5, "min_pairs": 10, "gates": {}}


def test_p_value_wording() -> None:
    assert format_p(None) == "p n/a"
    assert format_p(0.00001) == "p < 0.0001"
    assert format_p(0.052478) == "p = 0.0525"


# ------------------------------------------------------------------------------------------------ real data

LLMDRIFT = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmdrift" / "PRIME_FULL_EVAL.csv"
YES_NO = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"], "type": "string"}}, "required": ["answer"]}


def replayed(model: str) -> list[CaseResult]:
    """LLMDrift's recorded answers read with the generic parser, as a replay source would (no code for this data)."""
    out = []
    with LLMDRIFT.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["model"] != f"openaichat/{model}":
                continue
            try:
                answer = parse(row["answer"], YES_NO).value
            except ParseError:
                answer = None
            valid = isinstance(answer, dict) and answer.get("answer") in ("yes", "no")
            expected = {"answer": row["ref_answer"].lower()}
            out.append(result(row["id"], answer if valid else None, expected, model=model, raw=row["answer"]))
    return out


@pytest.mark.skipif(not LLMDRIFT.exists(), reason="shared/data/llmdrift is not beside this checkout")
def test_llmdrift_gpt4_figures_match_the_paper() -> None:
    # Chen, Zaharia & Zou (2023), "How is ChatGPT's behavior changing over time?": accuracy 84.0 % -> 51.1 %,
    # mismatch 62.6 %, verbosity 638 -> 4 characters.
    c = compare("prime", "gpt-4-0314", replayed("gpt-4-0314"), "gpt-4-0613", replayed("gpt-4-0613"))
    assert c.paired == 1000
    assert c.a.accuracy.value == pytest.approx(0.840, abs=0.01)
    assert c.b.accuracy.value == pytest.approx(0.511, abs=0.01)
    assert c.mismatch.value == pytest.approx(0.626, abs=0.01)
    assert (round(c.a.verbosity.value or 0), round(c.b.verbosity.value or 0)) == (638, 4)
    assert c.regressed and rate(c, "accuracy").p_value < 1e-6


def test_a_validity_collapse_on_the_cases_without_expected_outputs_is_still_a_regression() -> None:
    a = [result(str(i), YES, YES if i < 3 else None) for i in range(40)]
    b = [result(str(i), YES if i < 3 else None, YES if i < 3 else None) for i in range(40)]
    c = compare("t", "A", a, "B", b)
    assert c.regressed
    assert [d.metric for d in c.rates if d.regressed] == ["schema-valid, cases with no expected output"]
