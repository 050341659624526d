"""Case files: JSONL and YAML, line numbers in every problem, bad cases never stopping the rest."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import robustprompt as rp
from robustprompt.evals._cases import CaseSet, load_cases
from tests.models import classify_task

YES_NO: rp.Task[str, str] = rp.Task("yes_no", input=str, output=Literal["yes", "no"], instructions="Answer yes or no.")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*rows: object) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def test_jsonl_ids_default_to_the_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, "c.jsonl", jsonl({"input": {"text": "a"}}, "", {"id": "x", "input": {"text": "b"}}))
    cases = load_cases(path, classify_task())
    assert [(c.id, c.line) for c in cases.cases] == [("1", 1), ("x", 3)]
    assert cases.problems == ()


def test_a_malformed_line_is_a_problem_with_its_line_and_the_rest_load(tmp_path: Path) -> None:
    text = jsonl({"id": 1, "input": {"text": "a"}}, '{"id": 2, "input": ', {"id": 3, "input": {"text": "c"}})
    cases = load_cases(write(tmp_path, "c.jsonl", text), classify_task())
    assert [c.id for c in cases.cases] == ["1", "3"]
    [problem] = cases.problems
    assert problem.line == 2 and "not valid JSON" in problem.reason
    assert str(problem).startswith(f"{tmp_path / 'c.jsonl'}:2: ")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ([1, 2], "a case is an object with 'input', got list"),
        ({"id": "a"}, "the case has no 'input'"),
        ({"id": "", "input": "x"}, "'id' must be a non-empty string or an integer"),
        ({"id": True, "input": "x"}, "'id' must be a non-empty string or an integer"),
        ({"id": [1], "input": "x"}, "'id' must be a non-empty string or an integer"),
    ],
)
def test_unreadable_cases_are_problems(tmp_path: Path, row: object, reason: str) -> None:
    text = jsonl({"id": "ok", "input": "fine"}, row)
    cases = load_cases(write(tmp_path, "c.jsonl", text), YES_NO)
    assert [c.id for c in cases.cases] == ["ok"]
    [problem] = cases.problems
    assert problem.line == 2 and reason in problem.reason


def test_unknown_keys_are_reported_but_the_case_runs(tmp_path: Path) -> None:
    cases = load_cases(write(tmp_path, "c.jsonl", jsonl({"id": "a", "input": "x", "expect": "yes"})), YES_NO)
    assert [c.id for c in cases.cases] == ["a"]
    assert "unknown key(s) 'expect' ignored" in cases.problems[0].reason
    assert cases.problems[0].case_id == "a"


def test_a_duplicate_id_is_a_problem_naming_the_first_line(tmp_path: Path) -> None:
    text = jsonl({"id": "a", "input": "x"}, {"id": "b", "input": "y"}, {"id": "a", "input": "z"})
    cases = load_cases(write(tmp_path, "c.jsonl", text), YES_NO)
    assert [c.input for c in cases.cases] == ["x", "y"]
    assert cases.problems[0].line == 3 and "first on line 1" in cases.problems[0].reason


def test_expected_is_stored_as_the_output_record(tmp_path: Path) -> None:
    text = jsonl({"id": "a", "input": "x", "expected": "yes"}, {"id": "b", "input": "y", "expected": {"answer": "no"}})
    cases = load_cases(write(tmp_path, "c.jsonl", text), YES_NO)
    assert [c.expected for c in cases.cases] == [{"answer": "yes"}, {"answer": "no"}]
    assert cases.problems == ()


def test_a_model_output_is_written_as_its_fields(tmp_path: Path) -> None:
    text = jsonl({"input": {"text": "great"}, "expected": {"label": "positive"}})
    [case] = load_cases(write(tmp_path, "c.jsonl", text), classify_task()).cases
    assert case.expected == {"label": "positive"}


def test_an_invalid_expected_output_is_a_problem_and_the_case_still_runs(tmp_path: Path) -> None:
    text = jsonl({"id": "a", "input": {"text": "meh"}, "expected": {"label": "happy"}})
    cases = load_cases(write(tmp_path, "c.jsonl", text), classify_task())
    [case] = cases.cases
    assert case.id == "a" and case.expected is None
    [problem] = cases.problems
    assert problem.case_id == "a" and problem.line == 1
    assert "expected output is invalid" in problem.reason and "happy" in problem.reason
    assert "left out of accuracy" in problem.reason


def test_expected_must_pass_the_task_checks_too(tmp_path: Path) -> None:
    def not_no(value: str) -> bool:
        return value != "no"

    task: rp.Task[str, str] = rp.Task(
        "checked", input=str, output=Literal["yes", "no"], instructions="Answer.", checks=[not_no]
    )
    cases = load_cases(write(tmp_path, "c.jsonl", jsonl({"input": "x", "expected": "no"})), task)
    assert cases.cases[0].expected is None
    assert "check not_no failed" in cases.problems[0].reason


def test_yaml_cases_keep_their_line_numbers(tmp_path: Path) -> None:
    text = "- id: a\n  input: x\n  expected: yes_\n- input: y\n  expected: 'no'\n- just a string\n"
    cases = load_cases(write(tmp_path, "c.yaml", text), YES_NO)
    assert [(c.id, c.line, c.expected) for c in cases.cases] == [("a", 1, None), ("2", 4, {"answer": "no"})]
    assert [(p.line, p.case_id) for p in cases.problems] == [(1, "a"), (6, None)]


def test_yaml_may_hold_the_cases_under_a_key(tmp_path: Path) -> None:
    text = "cases:\n  - input: x\n  - input: y\n"
    cases = load_cases(write(tmp_path, "c.yml", text), YES_NO)
    assert [(c.id, c.line) for c in cases.cases] == [("1", 2), ("2", 3)]


def test_broken_yaml_is_a_problem_at_its_line(tmp_path: Path) -> None:
    cases = load_cases(write(tmp_path, "c.yaml", "- input: x\n- input: [unclosed\n"), YES_NO)
    assert cases.cases == ()
    assert cases.problems[0].line >= 2 and "not valid YAML" in cases.problems[0].reason


def test_yaml_that_is_not_a_list_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(rp.ConfigError, match="a list of cases"):
        load_cases(write(tmp_path, "c.yaml", "input: x\n"), YES_NO)


def test_yaml_without_pyyaml_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(rp.ConfigError, match="pip install pyyaml"):
        load_cases(write(tmp_path, "c.yaml", "- input: x\n"), YES_NO)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(rp.ConfigError, match="no case file"):
        load_cases(tmp_path / "nope.jsonl", YES_NO)


def test_limited_keeps_the_first_cases_and_their_problems(tmp_path: Path) -> None:
    text = jsonl({"input": "a"}, "oops", {"input": "b"}, "oops", {"input": "c"})
    cases = load_cases(write(tmp_path, "c.jsonl", text), YES_NO)
    first = cases.limited(2)
    assert [c.id for c in first.cases] == ["1", "3"]
    assert [p.line for p in first.problems] == [2]
    assert cases.limited(None) is cases and cases.limited(10) is cases
    assert CaseSet((), ()).limited(1).cases == ()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.one_of(
            st.text(st.characters(codec="utf-8", exclude_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")).map(
                lambda s: ("bad", s)
            ),
            st.text(max_size=20).map(lambda s: ("good", s)),
        ),
        max_size=20,
    )
)
def test_every_line_is_a_case_or_a_problem(tmp_path: Path, rows: list[tuple[str, str]]) -> None:
    lines = [json.dumps({"input": value}) if kind == "good" else "#" + value for kind, value in rows]
    path = write(tmp_path, "c.jsonl", "\n".join(lines) + "\n")
    cases = load_cases(path, YES_NO)
    good = [number for number, (kind, _) in enumerate(rows, 1) if kind == "good"]
    bad = [number for number, (kind, _) in enumerate(rows, 1) if kind == "bad"]
    assert [c.line for c in cases.cases] == good
    assert [c.input for c in cases.cases] == [value for kind, value in rows if kind == "good"]
    assert [p.line for p in cases.problems] == bad
