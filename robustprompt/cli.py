"""The `robustprompt` command: run a task's cases, compare two models or two dates, gate CI on the verdict.

    robustprompt run TASK --cases FILE --model M
    robustprompt migrate TASK --cases FILE --from A --to B [--max-drop 2pts] [--report out.html] [--json out.json]
    robustprompt migrate PIPELINE --link NAME --cases FILE --from A --to B [...]
    robustprompt snapshot NAME TASK --cases FILE --model M
    robustprompt drift TASK --cases FILE --model M --baseline NAME
    robustprompt models

TASK is `module:attribute` or `path/to/file.py:attribute`. A model is a catalog name (`openai:gpt-4.1-mini`) or
recorded answers (`replay:answers.csv#model=...`). Exit status: 0 no regression, 1 B regresses beyond the
thresholds, 2 a usage or configuration error, 3 cannot judge (a side's valid rate is under --min-valid, or fewer
than --min-pairs paired cases are valid on both sides: no regression found, but no evidence either).

With `--link`, migrate tries model B on one task link of an rp.Pipeline, every other link fixed: the cases hold
the pipeline's input and, optionally, its expected end output. The verdict compares the pipeline's end outputs
(what the app sees); how often the link's own answer changed, and its fallbacks and defaults on each side, are
notes of the report.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import traceback
from collections.abc import Callable, Sequence

from robustprompt._catalog import all_profiles
from robustprompt._errors import ConfigError, RobustPromptError
from robustprompt._profile import ModelProfile
from robustprompt.evals._commands import EXIT_OK, add_commands

__all__ = ["main"]

EXIT_USAGE = 2


def _cmd_models(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    print(render_models(all_profiles(), dt.date.today()), end="")
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    from robustprompt._doctor import diagnose, render

    findings = diagnose()
    print(render(findings))
    return EXIT_USAGE if any(f.status == "fail" for f in findings) else EXIT_OK


def render_models(profiles: Sequence[ModelProfile], on: dt.date) -> str:
    """The catalog as a table: upcoming retirements first (soonest first), then retired ones, then the rest."""

    def order(p: ModelProfile) -> tuple[int, dt.date, str]:
        end = p.retired or p.deprecated
        group = 2 if end is None else (1 if end <= on else 0)
        return group, end or dt.date.max, p.name

    header = ["model", "modes", "context", "$/M in", "$/M out", "deprecated", "retires", "replacement"]
    rows = [header] + [
        [
            p.name,
            ",".join(m.value for m in p.modes),
            f"{p.context_window:,}",
            _price(p.input_price),
            _price(p.output_price),
            str(p.deprecated or ""),
            (f"{p.retired} (retired)" if p.retired <= on else str(p.retired)) if p.retired else "",
            p.replacement or "",
        ]
        for p in sorted(profiles, key=order)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows)


def _price(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


# ------------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustprompt",
        description="Run a typed task's cases on models, compare two models or two dates, gate CI on the result.",
        epilog="Exit status: 0 no regression, 1 B regresses beyond the thresholds, 2 usage or configuration error, "
        "3 cannot judge (too few valid answers on a side, see --min-valid and --min-pairs).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_commands(commands)
    models = commands.add_parser("models", help="the model catalog, upcoming retirements first")
    models.set_defaults(handler=_cmd_models)

    doctor = commands.add_parser(
        "doctor",
        help="check this environment: local runtime (in a child process), model and tokenizer files, "
        "provider keys (never printed), proxies, versions; exit 2 if something needs fixing",
    )
    doctor.set_defaults(handler=_cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, contextlib.ExitStack], int] = args.handler
    try:
        with contextlib.ExitStack() as stack:
            return handler(args, stack)
    except ConfigError as exc:
        print(f"robustprompt: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RobustPromptError as exc:  # raised outside any case (cases keep theirs): still the setup's fault
        print(f"robustprompt: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("robustprompt: interrupted; results so far are stored", file=sys.stderr)
        return 130
    except Exception as exc:  # a crash must never read as a verdict: 1 means "B regresses"
        print(f"robustprompt: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return EXIT_USAGE
