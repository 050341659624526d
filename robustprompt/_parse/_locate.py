"""Location: where in an answer the JSON is (the whole text, a JSON fence, or a bracketed span in prose).

Every top-level value is collected, in order, so that the caller can tell one answer from several. Fences of
other languages (```python) hold code, not the answer, and a fragment nested in a broken value is never
collected: both used to win over the real answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from robustprompt._parse._repair import Repairer
from robustprompt._parse._strict import decode_at, nesting_end

__all__ = ["Candidate", "Locator"]

# Each failed candidate may scan to the end of the text, so their number must be bounded to stay linear.
_MAX_ATTEMPTS = 16
_OPENER = re.compile(r"[\[{]")
_BRACKET = re.compile(r"[\[\]{}]")
_NON_SPACE = re.compile(r"\S")
# Only at the start of a line, so that ``` inside a JSON string is not taken for a fence.
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)", re.M)
_JSON_FENCES = frozenset({"", "json", "jsonc", "json5"})
# Models label JSON ```javascript at times: such a fence holds the answer only if it is nothing but a value.
_SCRIPT_FENCES = frozenset({"javascript", "js"})


@dataclass(slots=True)
class Candidate:
    """One JSON value found in the answer, where it ends, and the repairs it needed."""

    value: Any
    end: int
    repairs: list[str]


def _naive_end(text: str, start: int) -> int | None:
    """Where the brackets opened at `start` balance, counting brackets inside strings too.

    A broken value often has a stray quote (`"Buyer of 27" monitors"`) that turns the quote-aware count inside
    out; the two counts together bound the broken span from both sides.
    """
    depth = 0
    for match in _BRACKET.finditer(text, start):
        depth += 1 if match.group() in "[{" else -1
        if depth == 0:
            return match.end()
    return None


class Locator:
    """Finds the JSON values in an answer."""

    __slots__ = ("_max_depth", "_shallow", "_text", "cut", "error")

    def __init__(self, text: str, max_depth: int) -> None:
        self._text = text
        self._max_depth = max_depth
        # Too few brackets to nest too deep, anywhere in the text: no candidate needs the depth scan.
        self._shallow = text.count("[") + text.count("{") <= max_depth
        self.error: json.JSONDecodeError | None = None  # the first syntax error met, for the re-ask
        self.cut: str | None = None  # the start of a value the text ends inside

    def whole(self, stripped: str) -> Candidate | None:
        try:
            value, end = decode_at(stripped, 0, self._max_depth, shallow=self._shallow)
        except json.JSONDecodeError:
            return None
        return Candidate(value, end, []) if end == len(stripped) else None

    def candidates(self) -> list[Candidate]:
        """Every top-level JSON value, in order: in JSON fences and in prose, none from a fence of code."""
        text = self._text
        found: list[Candidate] = []
        fence = _FENCE.search(text) if "```" in text else None
        pos = 0
        for _ in range(_MAX_ATTEMPTS):
            while fence is not None and fence.start() < pos:  # a fence inside a value found already
                fence = _FENCE.search(text, pos)
            opener = _OPENER.search(text, pos)
            if fence is not None and (opener is None or fence.start() <= opener.start()):
                pos = self._fence(fence, found)
                fence = _FENCE.search(text, pos)
                continue
            if opener is None:
                break
            pos = self._prose(opener.start(), found)
        return found

    def _fence(self, fence: re.Match[str], found: list[Candidate]) -> int:
        text = self._text
        closing = text.find("```", fence.end())
        body_end = len(text) if closing < 0 else closing
        after = len(text) if closing < 0 else closing + 3
        language = fence.group(1).lower()
        body = text[fence.end() : body_end].strip()
        if language not in _JSON_FENCES and not (language in _SCRIPT_FENCES and body[:1] in ("{", "[")):
            return after  # code: a dict in a ```python block is not the answer
        note = f"extracted JSON from a ```{fence.group(1)} fence"
        whole = self.whole(body) if body else None
        if whole is not None:
            found.append(Candidate(whole.value, after, [note]))
            return after
        # The JSON may run past the closing fence when a string in it holds ```: parse on in the full text.
        opener = _OPENER.search(text, fence.end(), body_end)
        if opener is None:
            return after
        candidate = self._candidate(opener.start())
        if candidate is None:
            return max(after, self._skip(opener.start()))
        candidate.repairs.insert(0, note)
        found.append(candidate)
        return max(after, candidate.end)

    def _prose(self, start: int, found: list[Candidate]) -> int:
        candidate = self._candidate(start)
        if candidate is None:
            return self._skip(start)
        text = self._text
        if _NON_SPACE.search(text, 0, start) or _NON_SPACE.search(text, candidate.end):
            candidate.repairs.insert(0, "extracted JSON from surrounding text")
        found.append(candidate)
        return candidate.end

    def _skip(self, start: int) -> int:
        """Past the whole failed span: a fragment nested in broken JSON is not the answer."""
        text = self._text
        aware, naive = nesting_end(text, start, self._max_depth), _naive_end(text, start)
        if aware is None or naive is None:
            return len(text)  # it never closes: whatever follows may be inside it
        return max(aware, naive)

    def _candidate(self, start: int) -> Candidate | None:
        try:
            value, end = decode_at(self._text, start, self._max_depth, shallow=self._shallow)
        except json.JSONDecodeError as exc:
            self.error = self.error or exc
        else:
            return Candidate(value, end, [])
        repairer = Repairer(self._max_depth)
        repaired = repairer.run(self._text, start)
        if repaired is None:
            if repairer.cut and self.cut is None:
                self.cut = self._text[start : start + 60]
            return None
        json_text, end, repairs = repaired
        try:
            value, _ = decode_at(json_text, 0, self._max_depth, shallow=True)  # the repairer bounds depth
        except json.JSONDecodeError:
            return None
        return Candidate(value, end, repairs)
