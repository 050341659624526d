"""Drift in hosted models, from recorded answers: LLMDrift's "is N prime?" on GPT-4 and GPT-3.5, March vs June 2023.

Chen, Zaharia and Zou ("How is ChatGPT's behavior changing over time?", arXiv 2307.09009) asked four model
snapshots the same 1,000 questions "Is N a prime number? Think step by step and then answer "[Yes]" or "[No]"."
Their recorded answers replay here as models, so the comparison costs no call:

    python examples/llmdrift_prime.py                    # writes prime_cases.jsonl, prints the commands below
    CSV=../shared/data/llmdrift/PRIME_FULL_EVAL.csv
    robustprompt migrate examples/llmdrift_prime.py:task --cases prime_cases.jsonl \\
        --from "replay:$CSV#model=openaichat/gpt-4-0314" --to "replay:$CSV#model=openaichat/gpt-4-0613" \\
        --report gpt4.html                               # exit 1: accuracy 84.0 % -> 51.1 %, mismatch 62.6 %
    robustprompt migrate examples/llmdrift_prime.py:task --cases prime_cases.jsonl \\
        --from "replay:$CSV#model=openaichat/gpt-3.5-turbo-0301" \\
        --to "replay:$CSV#model=openaichat/gpt-3.5-turbo-0613"

The task below is all the code there is: the answers are read by the generic parser (a marked "[Yes]" / "[No]",
the last one when the model corrects itself), with nothing written for this data set. It reproduces the paper's
figures for gpt-4-0314 (84.0 %), gpt-4-0613 (51.1 %), gpt-3.5-turbo-0613 (76.1 % against 76.2 %) and the GPT-4
mismatch (62.6 %), but reads 52.9 % for gpt-3.5-turbo-0301 where the paper reports 49.6 %. The paper's scorer
takes the answer to be "yes" whenever the word "yes" appears anywhere, before looking for "no": in 107 answers
that begin with "[No]" it reads the "yes" of "If yes, then it is not a prime number" (or "Yes, it is divisible
by 2") instead. Those answers are "[No]"; the 3.3 points are the scorer's, not the model's.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Literal

import robustprompt as rp

task: rp.Task[int, str] = rp.Task(
    "is_prime",
    input=int,
    output=Literal["yes", "no"],
    instructions='Is the number a prime number? Think step by step and then answer "[Yes]" or "[No]".',
)

_QUESTION = re.compile(r"Is (\d+) a prime number\?")


def recording_path() -> Path:
    """The recorded answers: $ROBUSTPROMPT_SHARED/data/llmdrift/, else ../shared beside the repository."""
    shared = os.environ.get("ROBUSTPROMPT_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared"
    return root / "data" / "llmdrift" / "PRIME_FULL_EVAL.csv"


def write_cases(recording: Path, out: Path) -> int:
    """One case per question (id, the number, the reference answer), from any model's rows; the count."""
    cases: dict[str, dict[str, object]] = {}
    with recording.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            match = _QUESTION.search(row["query"])
            if match is None:
                raise ValueError(f"question {row['id']} is not of the form 'Is N a prime number?': {row['query']!r}")
            cases.setdefault(
                row["id"], {"id": row["id"], "input": int(match.group(1)), "expected": row["ref_answer"].lower()}
            )
    out.write_text("".join(json.dumps(case) + "\n" for case in cases.values()), encoding="utf-8")
    return len(cases)


def main() -> None:
    recording = Path(sys.argv[1]) if len(sys.argv) > 1 else recording_path()
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("prime_cases.jsonl")
    count = write_cases(recording, out)
    print(f"wrote {count} cases to {out}")
    here = os.path.relpath(Path(__file__).resolve())  # runnable from wherever this script was run
    for old, new in (("gpt-4-0314", "gpt-4-0613"), ("gpt-3.5-turbo-0301", "gpt-3.5-turbo-0613")):
        print(
            f"robustprompt migrate {here}:task --cases {out} "
            f'--from "replay:{recording}#model=openaichat/{old}" --to "replay:{recording}#model=openaichat/{new}"'
        )


if __name__ == "__main__":
    main()
