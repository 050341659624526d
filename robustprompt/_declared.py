"""Where a task is declared: its adaptation records live beside that file."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["RECORD_FILE", "declaring_file", "default_record_path"]

RECORD_FILE = "robustprompt.adapt.json"


def declaring_file() -> Path | None:
    """The source file of the first caller outside robustprompt: where the task is declared."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != "robustprompt" and not name.startswith("robustprompt."):
            path = Path(frame.f_code.co_filename)
            return path if path.is_file() else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


def default_record_path(declared_in: Path | None) -> Path:
    """`robustprompt.adapt.json` beside the declaring file (the working directory for code typed in a REPL)."""
    return (declared_in.parent if declared_in is not None else Path.cwd()) / RECORD_FILE
