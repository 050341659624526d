"""The provider-neutral prompt and its rendering.

Inputs travel as data (a JSON block in the user turn), never interpolated into the instructions, so user
data cannot rewrite them. Few-shot examples become user/assistant turns. How the output contract is enforced
is the adapter's business (`OutputMode`); only the prompt-enforced modes spell the schema out in the text.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "Message",
    "OutputMode",
    "OutputSpec",
    "Prompt",
    "render",
    "render_completion_text",
    "schema_text",
    "with_reask",
]

Role = Literal["user", "assistant"]

_INPUT_HEADER = "Input:"
_OUTPUT_HEADER = "Output:"


class OutputMode(str, enum.Enum):
    """How the output contract is enforced, strongest first."""

    JSON_SCHEMA = "json_schema"  # the server constrains decoding to the schema
    TOOL_CALL = "tool_call"  # a forced function call whose parameters are the schema
    GRAMMAR = "grammar"  # a local grammar compiled from the schema
    JSON_OBJECT = "json_object"  # any valid JSON; the schema is given in the prompt
    PROMPTED = "prompted"  # plain text; the schema is given in the prompt

    @property
    def schema_in_prompt(self) -> bool:
        return self in (OutputMode.JSON_OBJECT, OutputMode.PROMPTED)

    @property
    def constrained(self) -> bool:
        """The server (or the local runtime) is meant to force schema-shaped JSON."""
        return not self.schema_in_prompt


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """The output contract: a JSON Schema (object root) and a name matching `[A-Za-z0-9_-]{1,64}`."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Prompt:
    """System text, then alternating turns ending with a user turn, plus the output contract.

    `text`, when set, is the same prompt as one completion-style text (instructions, examples, the input and an open
    `Output:`): a backend that can complete raw text sends it instead of the turns.
    """

    system: str
    messages: tuple[Message, ...]
    output: OutputSpec
    mode: OutputMode = OutputMode.PROMPTED
    dropped_examples: tuple[int, ...] = field(default=())
    text: str | None = None


def schema_text(spec: OutputSpec) -> str:
    """The output contract in words, for modes (and servers) that only see it in the prompt."""
    schema = json.dumps(spec.schema, separators=(",", ":"), sort_keys=True)
    return f"Reply with only a JSON object that matches this JSON Schema, and nothing else:\n{schema}"


def _input_text(input_json: str) -> str:
    return f"{_INPUT_HEADER}\n{input_json}"


def render(
    instructions: str,
    examples: Sequence[tuple[str, str]],
    input_json: str,
    spec: OutputSpec,
    mode: OutputMode,
    *,
    dropped_examples: tuple[int, ...] = (),
) -> Prompt:
    """Build the prompt. `examples` are (input JSON, output JSON) pairs already serialised.

    This is the `turns` layout of the rendering space (`_renderings`): bump its version there when the text changes.
    """
    system = instructions.strip()
    if mode.schema_in_prompt:
        system = f"{system}\n\n{schema_text(spec)}"
    turns: list[Message] = []
    for example_in, example_out in examples:
        turns.append(Message("user", _input_text(example_in)))
        turns.append(Message("assistant", example_out))
    turns.append(Message("user", _input_text(input_json)))
    return Prompt(system, tuple(turns), spec, mode, dropped_examples)


def encodable(text: str) -> str:
    """`text` with lone surrogates (which a JSON answer can carry as `\\ud800`, and UTF-8 cannot encode) replaced
    by U+FFFD, so that it can be sent back to the model."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def with_reask(base: Prompt, answer: str, errors: Sequence[str], *, max_answer_chars: int, max_errors: int) -> Prompt:
    """The base prompt plus the last failed answer and its errors.

    Only the latest failure is kept, and both it and the error list are trimmed, so a run of re-asks cannot
    grow the conversation without bound.
    """
    shown = answer if len(answer) <= max_answer_chars else answer[:max_answer_chars] + " …[truncated]"
    shown = encodable(shown)
    listed = [f"- {encodable(e)}" for e in errors[:max_errors]]
    if len(errors) > max_errors:
        listed.append(f"- … and {len(errors) - max_errors} more")
    feedback = (
        "Your answer was not valid:\n"
        + "\n".join(listed)
        + "\nReply again with only the corrected JSON, following the instructions."
    )
    turns = (*base.messages, Message("assistant", shown), Message("user", feedback))
    text = None if base.text is None else f"{base.text} {shown}\n\n{feedback}\n\n{_OUTPUT_HEADER}"
    return replace(base, messages=turns, text=text)


def render_completion_text(prompt: Prompt) -> str:
    """Completion-style text for base models without a chat template.

    Instructions, then "Input/Output" pairs, then the new input and an open "Output:" for the model to fill.
    """
    parts = [prompt.system, ""]
    for message in prompt.messages:
        if message.role == "user":
            parts.append(message.content)
        else:
            parts.append(f"{_OUTPUT_HEADER}\n{message.content}\n")
    parts.append(_OUTPUT_HEADER)
    return "\n".join(parts)
