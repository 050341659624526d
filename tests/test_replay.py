"""Replay: recorded answers stand in for a model, read exactly as a live answer would be."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import robustprompt as rp
from robustprompt.evals._cases import Case
from robustprompt.evals._replay import ReplaySource, is_replay
from robustprompt.evals._results import CaseResult
from robustprompt.testing import FunctionModel

YES_NO: rp.Task[int, str] = rp.Task(
    "yes_no", input=int, output=Literal["yes", "no"], instructions="Is it prime? Answer [Yes] or [No]."
)
FIELDS = ["model", "id", "answer", "latency", "cost", "answer_token"]


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "runs.csv",
        [
            {"model": "old", "id": 1, "answer": "Let me see... [Yes]", "latency": 2.5, "cost": 0.01, "answer_token": 7},
            {"model": "new", "id": 1, "answer": "[No]", "latency": 0.5, "cost": 0.002, "answer_token": 2},
            {"model": "old", "id": 2, "answer": "I cannot tell.", "latency": 1, "cost": "", "answer_token": ""},
            {"model": "new", "id": 2, "answer": '{"answer": "no"}', "latency": "", "cost": "", "answer_token": ""},
        ],
    )


def case(case_id: str, expected: str | None = None) -> Case:
    return Case(case_id, 7, {"answer": expected} if expected else None, 1)


def test_a_filter_picks_one_models_rows(recording: Path) -> None:
    source = ReplaySource.open(f"replay:{recording}#model=old")
    assert source.name == f"replay:{recording}#model=old"
    assert sorted(source.recordings) == ["1", "2"]


def test_a_recorded_answer_runs_through_the_parser_with_its_measurements(recording: Path) -> None:
    source = ReplaySource.open(f"replay:{recording}#model=old")
    result = source.result(YES_NO, case("1", "yes"))
    assert result.ok and result.output == {"answer": "yes"} and result.correct is True
    assert (result.latency, result.cost, result.output_tokens) == (2.5, 0.01, 7)
    assert result.model == source.name and result.raw == "Let me see... [Yes]"
    assert result.repairs == 1  # read from prose, as a live answer would be


def test_an_unreadable_answer_fails_after_one_attempt(recording: Path) -> None:
    result = ReplaySource.open(f"replay:{recording}#model=old").result(YES_NO, case("2", "no"))
    assert not result.ok and result.error_kind == "OutputError" and result.attempts == 1
    assert result.correct is False
    assert result.cost is None and result.latency == 1.0


def test_a_case_without_a_recording_is_a_failed_case(recording: Path) -> None:
    source = ReplaySource.open(f"replay:{recording}#model=new")
    results = source.results(YES_NO, [case("1"), case("3", "yes")])
    assert [r.case_id for r in results] == ["1", "3"]
    missing = results[1]
    assert not missing.ok and missing.error_kind == "ConfigError"
    assert missing.error == f"no recorded answer for case '3' in replay:{recording}#model=new"
    assert missing.expected == {"answer": "yes"}


def test_jsonl_recordings_with_renamed_columns(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    rows = [{"qid": 1, "text": "[yes]", "input_tokens": 11, "output_tokens": 3}, {"qid": "b", "text": "no"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    source = ReplaySource.open(f"replay:{path}#id_column=qid&answer_column=text")
    assert source.name == f"replay:{path}#id_column=qid&answer_column=text"
    first, second = source.results(YES_NO, [case("1"), case("b")])
    assert first.output == {"answer": "yes"} and (first.input_tokens, first.output_tokens) == (11, 3)
    assert second.output == {"answer": "no"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("runs.csv", "starts with 'replay:'"),
        ("replay:", "no recording file"),
        ("replay:{dir}/missing.csv", "no recording file"),
        ("replay:{path}", "case '1' is recorded more than once; add a filter"),
        ("replay:{path}#model=nobody", "no row matches 'model=nobody'"),
        ("replay:{path}#model", "give key=value pairs"),
        ("replay:{path}#model=old&answer_column=text", "no column 'text' (columns: answer, answer_token"),
    ],
)
def test_bad_specs_say_what_is_wrong(recording: Path, spec: str, message: str) -> None:
    with pytest.raises(rp.ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        ReplaySource.open(spec.format(path=recording, dir=recording.parent))


def test_a_recording_line_that_is_not_an_object_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"id": 1, "answer": "x"}\n[1]\n')
    with pytest.raises(rp.ConfigError, match=r"runs\.jsonl:2: a recording line is a JSON object"):
        ReplaySource.open(f"replay:{path}")


def test_unreadable_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(rp.ConfigError, match="cannot read the recording"):
        ReplaySource.open(f"replay:{path}")


def test_is_replay() -> None:
    assert is_replay("replay:x.csv") and not is_replay("openai:gpt-4.1")


def live(text: str, expected: dict[str, str] | None) -> CaseResult:
    outcome: rp.Run[str] | rp.RobustPromptError
    try:
        outcome = YES_NO.run(7, model=FunctionModel(lambda _: text), policy=rp.Policy(reasks=0))
    except rp.RobustPromptError as exc:
        outcome = exc
    return CaseResult.from_outcome("1", YES_NO, outcome, model="live", expected=expected)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.sampled_from(["[Yes]", "[No] ... the answer is [Yes]", '{"answer": "No"}', "yes and no", "```\n{}\n```"]),
    )
)
def test_replay_reads_exactly_as_a_live_call(tmp_path: Path, text: str) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"id": "1", "answer": text}) + "\n")
    replayed = ReplaySource.open(f"replay:{path}").result(YES_NO, case("1", "yes"))
    expected = live(text, {"answer": "yes"})
    same = ("ok", "output", "error_kind", "first_valid", "attempts", "repairs", "raw", "correct")
    assert {k: getattr(replayed, k) for k in same} == {k: getattr(expected, k) for k in same}
