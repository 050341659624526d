"""Location: where in an answer the JSON is (the whole text, a fenced block, or a bracketed span in prose)."""

from __future__ import annotations

import json
import re
from typing import Any

from robustprompt._parse._repair import Repairer
from robustprompt._parse._strict import decode_at, nesting_end

__all__ = ["Found", "Locator"]

# Each failed candidate may scan to the end of the text, so their number must be bounded to stay linear.
_MAX_ATTEMPTS = 16
_OPENER = re.compile(r"[\[{]")
_OBJECT_OPENER = re.compile(r"\{")
_NON_SPACE = re.compile(r"\S")
# Only at the start of a line, so that ``` inside a JSON string is not taken for a fence.
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)", re.M)

Found = tuple[Any, list[str]]


class Locator:
    """Finds the JSON in an answer: the whole text, a fenced block, or a bracketed span within prose."""

    __slots__ = ("_max_depth", "_shallow", "_text", "error")

    def __init__(self, text: str, max_depth: int) -> None:
        self._text = text
        self._max_depth = max_depth
        # Too few brackets to nest too deep, anywhere in the text: no candidate needs the depth scan.
        self._shallow = text.count("[") + text.count("{") <= max_depth
        self.error: json.JSONDecodeError | None = None  # the first syntax error met, for the re-ask

    def whole(self, stripped: str) -> Found | None:
        try:
            value, end = decode_at(stripped, 0, self._max_depth, shallow=self._shallow)
        except json.JSONDecodeError:
            return None
        return (value, []) if end == len(stripped) else None

    def fenced(self) -> Found | None:
        text = self._text
        if "```" not in text:
            return None
        pos = 0
        for _ in range(_MAX_ATTEMPTS):
            fence = _FENCE.search(text, pos)
            if fence is None:
                return None
            body_end = text.find("```", fence.end())
            body_end = len(text) if body_end < 0 else body_end
            found = self._fence_body(fence.end(), body_end)
            if found is not None:
                return found[0], [f"extracted JSON from a ```{fence.group(1)} fence", *found[1]]
            pos = body_end + 3
        return None

    def in_prose(self, *, objects_only: bool) -> Found | None:
        text = self._text
        opener = _OBJECT_OPENER if objects_only else _OPENER
        pos = 0
        for _ in range(_MAX_ATTEMPTS):
            match = opener.search(text, pos)
            if match is None:
                return None
            start = match.start()
            found = self._candidate(start)
            if found is not None:
                value, end, repairs = found
                if _NON_SPACE.search(text, 0, start) or _NON_SPACE.search(text, end):
                    repairs.insert(0, "extracted JSON from surrounding text")
                return value, repairs
            # Skip the whole failed span: a fragment nested in broken JSON is not the answer.
            span_end = nesting_end(text, start, self._max_depth)
            pos = start + 1 if span_end is None else span_end
        return None

    def _fence_body(self, start: int, end: int) -> Found | None:
        body = self._text[start:end].strip()
        if not body:
            return None
        found = self.whole(body)
        if found is not None:
            return found
        # The JSON may run past the closing fence when a string in it holds ```: parse on in the full text.
        opener = _OPENER.search(self._text, start, end)
        candidate = None if opener is None else self._candidate(opener.start())
        return None if candidate is None else (candidate[0], candidate[2])

    def _candidate(self, start: int) -> tuple[Any, int, list[str]] | None:
        try:
            value, end = decode_at(self._text, start, self._max_depth, shallow=self._shallow)
        except json.JSONDecodeError as exc:
            self.error = self.error or exc
        else:
            return value, end, []
        repaired = Repairer(self._max_depth).run(self._text, start)
        if repaired is None:
            return None
        json_text, end, repairs = repaired
        try:
            value, _ = decode_at(json_text, 0, self._max_depth, shallow=True)  # the repairer bounds depth
        except json.JSONDecodeError:
            return None
        return value, end, repairs
