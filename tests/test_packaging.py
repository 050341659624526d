"""The built wheel: adapters land inside robustprompt, data files ship, nothing else goes top-level."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contents(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("robustprompt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"robustprompt", next(t for t in tops if t.endswith(".dist-info"))}
    for expected in (
        "robustprompt/adapters/__init__.py",
        "robustprompt/adapters/openai.py",
        "robustprompt/catalog/openai.json",
        "robustprompt/py.typed",
        "robustprompt/testing/__init__.py",
        "robustprompt/pytest_plugin.py",
    ):
        assert expected in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]\nrobustprompt = robustprompt.pytest_plugin" in text
    assert "[console_scripts]\nrobustprompt = robustprompt.cli:main" in text
