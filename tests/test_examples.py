"""The scripts in examples/ run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.local_model
def test_quickstart_runs_on_the_embedded_model() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Sentiment(label='positive')"), done.stdout
    assert lines[1].startswith("Sentiment(label='negative')"), done.stdout


@pytest.mark.local_model
def test_swap_demo_shows_the_examples_closing_the_gap(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "swap_demo.py"), str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    zero_shot, with_examples = done.stdout.strip().splitlines()[-2:]
    assert zero_shot.startswith("zero-shot")
    assert "B better" in with_examples, done.stdout
    reports = sorted(tmp_path.glob("*.html"))
    assert len(reports) == 2
    assert all("<svg" in report.read_text() for report in reports)
