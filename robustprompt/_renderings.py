"""The renderings: a small, named, versioned space of ways to show one task to a model.

A configuration picks one point on four axes: the layout (where the instructions, examples and input go), the input
format (how the input's data reads), the example choice (which of the examples, in which order) and, optionally, the
output mode. Every layout and format is a pure function of its arguments, and each has a version: the versions of
the whole space are part of every task fingerprint (`SPACE_VERSION`), so changing how any member renders makes old
records, caches and snapshots stale instead of silently wrong.

Whatever the layout, the input never enters the system text: the instructions read the same for every input, and
`layouts` only ever add the input after them, in the user turn or at the end of the completion text.

Layouts:
- `turns` (today's rendering): examples as user/assistant turns, the input in the last user turn.
- `listed`: the examples listed in the system text after the instructions, the input alone in the user turn.
- `completion`: one text, the instructions, then `Input:` / `Output:` pairs and the new input with an open
  `Output:`. A backend that can complete raw text (the embedded runtime) sends `Prompt.text` as it is; a chat API
  gets the instructions as the system text and the rest as one user turn.

Input formats: `json` (the JSON data block, today's) and `text` (a single string field as bare text, several fields
as `name: value` lines, nested data as JSON).

Example choices: `all` (declared order), `reversed`, `none`, `similar` (for each input, the k most similar
examples by word overlap, the most similar last, nearest the input) and `nearest` (the same, ranked by the cosine of
embeddings: the answering model's own when its backend embeds text, as the embedded runtime's does, or those of the
model the configuration names as its `embedder`, so that a model with weak embeddings, or none, can be shown the
examples another model finds nearest).

Copied spans (`spans=True`, `_spans`) narrow the schema the answer is decoded by, for the fields every example copies
from its input, to what the new input offers. Only a mode that spells the schema out in the prompt shows it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from robustprompt._errors import ConfigError
from robustprompt._prompt import Message, OutputMode, OutputSpec, Prompt, render, schema_text
from robustprompt._spans import SPANS_VERSION

__all__ = [
    "EXAMPLE_CHOICES",
    "INPUT_FORMATS",
    "LAYOUTS",
    "SPACE_VERSION",
    "Configuration",
    "choose_examples",
    "format_input",
    "ranked_texts",
    "render_configured",
]

Pair = tuple[str, str]  # (input JSON, output JSON)
Formatter = Callable[[str], str]
Embed = Callable[[Sequence[str]], Sequence[Sequence[float]]]  # texts -> one vector each

_DEFAULT_K = 4
_WORD = re.compile(r"\w+", re.UNICODE)


def _json_block(input_json: str) -> str:
    return input_json


def _scalar(value: Any) -> str:
    # A string that reads the same bare (one line, no edge spaces, not empty) goes bare; anything else as JSON, so
    # the value's boundaries and type stay clear among the other lines.
    if isinstance(value, str) and value and "\n" not in value and value == value.strip():
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _plain_text(input_json: str) -> str:
    value = json.loads(input_json)
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value:
        if len(value) == 1 and isinstance(only := next(iter(value.values())), str):
            return only
        return "\n".join(f"{name}: {_scalar(item)}" for name, item in value.items())
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# name -> (version, formatter). Bump a version whenever what it renders changes.
INPUT_FORMATS: dict[str, tuple[int, Formatter]] = {"json": (1, _json_block), "text": (1, _plain_text)}


def format_input(name: str, input_json: str) -> str:
    """The input as format `name` shows it."""
    return INPUT_FORMATS[name][1](input_json)


def _labelled(label: str, text: str) -> str:
    return f"{label}:\n{text}" if "\n" in text else f"{label}: {text}"


def _system(instructions: str, spec: OutputSpec, mode: OutputMode) -> str:
    system = instructions.strip()
    return f"{system}\n\n{schema_text(spec)}" if mode.schema_in_prompt else system


def _turns(
    instructions: str, examples: Sequence[Pair], input_json: str, spec: OutputSpec, mode: OutputMode, fmt: Formatter
) -> Prompt:
    shown = [(fmt(i), o) for i, o in examples]
    return render(instructions, shown, fmt(input_json), spec, mode)


def _pairs_text(examples: Sequence[Pair], fmt: Formatter) -> str:
    return "\n\n".join(f"{_labelled('Input', fmt(i))}\nOutput: {o}" for i, o in examples)


def _listed(
    instructions: str, examples: Sequence[Pair], input_json: str, spec: OutputSpec, mode: OutputMode, fmt: Formatter
) -> Prompt:
    system = _system(instructions, spec, mode)
    if examples:
        system = f"{system}\n\nExamples:\n\n{_pairs_text(examples, fmt)}"
    return Prompt(system, (Message("user", _labelled("Input", fmt(input_json))),), spec, mode)


def _completion(
    instructions: str, examples: Sequence[Pair], input_json: str, spec: OutputSpec, mode: OutputMode, fmt: Formatter
) -> Prompt:
    system = _system(instructions, spec, mode)
    shots = f"{_pairs_text(examples, fmt)}\n\n" if examples else ""
    body = f"{shots}{_labelled('Input', fmt(input_json))}\nOutput:"
    return Prompt(system, (Message("user", body),), spec, mode, text=f"{system}\n\n{body}")


Layout = Callable[[str, Sequence[Pair], str, OutputSpec, OutputMode, Formatter], Prompt]

# name -> (version, layout). Bump a version whenever what it renders changes.
LAYOUTS: dict[str, tuple[int, Layout]] = {"turns": (1, _turns), "listed": (1, _listed), "completion": (1, _completion)}

# name -> version. `similar` and `nearest` depend on their similarity measures: bump one when its measure changes.
EXAMPLE_CHOICES: dict[str, int] = {"all": 1, "reversed": 1, "none": 1, "similar": 1, "nearest": 1}
_RANKED = ("similar", "nearest")  # the choices that rank the examples against the input and keep k

SPACE_VERSION = ";".join(
    ",".join(f"{name}@{version}" for name, version in sorted(axis.items()))
    for axis in (
        {name: v for name, (v, _) in LAYOUTS.items()},
        {name: v for name, (v, _) in INPUT_FORMATS.items()},
        EXAMPLE_CHOICES,
    )
)


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _similarity(a: set[str], b: set[str]) -> float:
    """Cosine similarity of two word sets: shared words over the geometric mean of the sizes."""
    if not a or not b:
        return 0.0
    return len(a & b) / math.sqrt(len(a) * len(b))


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


def ranked_texts(pool: Sequence[Pair], input_json: str) -> list[str]:
    """What `similar` and `nearest` compare: the input's text first, then each example's."""
    return [_plain_text(input_json), *(_plain_text(i) for i, _ in pool)]


def _similarities(choice: str, pool: Sequence[Pair], input_json: str, embed: Embed | None) -> list[float]:
    texts = ranked_texts(pool, input_json)
    if choice == "similar":
        target, *others = (_words(t) for t in texts)
        return [_similarity(target, words) for words in others]
    if embed is None:
        raise ConfigError(
            "the example choice 'nearest' ranks examples by embeddings, and this model gives none (the embedded "
            "runtime does): name a model that embeds as the configuration's embedder (embedder='local:smollm2'), "
            "or use 'similar', which ranks them by shared words"
        )
    vector, *others_v = embed(texts)
    return [_cosine(vector, other) for other in others_v]


def choose_examples(
    choice: str, k: int, pool: Sequence[Pair], input_json: str, embed: Embed | None = None
) -> list[int]:
    """The indices into `pool` that `choice` shows for this input, in the order they are shown. `embed` is the
    model's embedding function, which `nearest` needs."""
    if choice == "all":
        return list(range(len(pool)))
    if choice == "reversed":
        return list(range(len(pool)))[::-1]
    if choice == "none" or not pool:
        return []
    scored = [(similarity, index) for index, similarity in enumerate(_similarities(choice, pool, input_json, embed))]
    # Most similar first (ties: declared order), keep k, then show them least similar first: the nearest example
    # sits next to the input.
    best = sorted(scored, key=lambda s: (-s[0], s[1]))[:k]
    return [index for _, index in reversed(best)]


@dataclass(frozen=True, slots=True)
class Configuration:
    """One point of the rendering space: how a task is shown to a model.

    `layout`, `input_format` and `examples` name members of the space (see the module's doc); `k` is how many
    examples `similar` and `nearest` show. `mode` asks for one output mode first (None: the profile's order).
    `pool`, when set, replaces the task's examples with these (input JSON, output JSON) pairs: adapt's selection
    from labelled cases. `embedder` names the model whose embeddings rank the examples for `nearest` (None: the
    answering model's own). `spans` limits each field the examples copy from their input to what the input offers
    (`_spans`), in the schema the answer is decoded by.
    """

    layout: str = "turns"
    input_format: str = "json"
    examples: str = "all"
    k: int = _DEFAULT_K
    mode: OutputMode | None = None
    pool: tuple[Pair, ...] | None = None
    embedder: str | None = None
    spans: bool = False

    def __post_init__(self) -> None:
        for axis, value, known in (
            ("layout", self.layout, LAYOUTS),
            ("input_format", self.input_format, INPUT_FORMATS),
            ("examples", self.examples, EXAMPLE_CHOICES),
        ):
            if value not in known:
                raise ConfigError(
                    f"unknown {axis} {value!r} in a rendering configuration: use one of {', '.join(known)}"
                )
        if self.k < 1:
            raise ConfigError(f"Configuration.k must be >= 1, got {self.k}")
        if self.examples not in _RANKED:  # k means nothing then: equal configurations compare equal
            object.__setattr__(self, "k", _DEFAULT_K)
        if self.embedder is not None and (not isinstance(self.embedder, str) or not self.embedder):
            raise ConfigError(f"a configuration's embedder is a model name, got {self.embedder!r}")
        if self.embedder is not None and self.examples != "nearest":
            raise ConfigError(
                f"an embedder ranks the examples only for the example choice 'nearest', not {self.examples!r}: "
                "drop embedder= or choose examples='nearest'"
            )
        if not isinstance(self.spans, bool):
            raise ConfigError(f"a configuration's spans is True or False, got {self.spans!r}")

    @classmethod
    def parse(cls, rendering: str) -> Configuration:
        """`layout/input_format`, the form a catalog profile gives its default in ("completion/text")."""
        layout, sep, input_format = rendering.partition("/")
        if not sep:
            raise ConfigError(f"a rendering is written layout/input_format, e.g. 'completion/text', got {rendering!r}")
        return cls(layout, input_format)

    @property
    def label(self) -> str:
        """A short human name: `completion/text, examples all, mode grammar`."""
        examples = f"{self.examples}-{self.k}" if self.examples in _RANKED else self.examples
        if self.embedder is not None:
            examples += f" by {self.embedder}"
        parts = [f"{self.layout}/{self.input_format}", f"examples {examples}"]
        if self.pool is not None:
            parts.append(f"{len(self.pool)} selected example(s)")
        if self.mode is not None:
            parts.append(f"mode {self.mode.value}")
        if self.spans:
            parts.append("spans copied from the input")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "layout": self.layout,
            "layout_version": LAYOUTS[self.layout][0],
            "input_format": self.input_format,
            "input_format_version": INPUT_FORMATS[self.input_format][0],
            "examples": self.examples,
            "examples_version": EXAMPLE_CHOICES[self.examples],
            "mode": None if self.mode is None else self.mode.value,
        }
        if self.examples in _RANKED:
            data["k"] = self.k
        if self.embedder is not None:  # absent otherwise, so a record from before embedders reads the same
            data["embedder"] = self.embedder
        if self.spans:  # likewise
            data["spans"] = True
            data["spans_version"] = SPANS_VERSION
        if self.pool is not None:
            data["pool"] = [{"input": json.loads(i), "output": json.loads(o)} for i, o in self.pool]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Configuration:
        """The configuration `to_json` wrote; ConfigError when a member is unknown or its version has changed."""
        try:
            config = cls(
                data["layout"],
                data["input_format"],
                data["examples"],
                int(data.get("k", _DEFAULT_K)),
                None if data.get("mode") is None else OutputMode(data["mode"]),
                None
                if data.get("pool") is None
                else tuple((_compact(p["input"]), _compact(p["output"])) for p in data["pool"]),
                data.get("embedder"),
                data.get("spans", False),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a rendering configuration ({type(exc).__name__}: {exc}): {data!r}") from exc
        for axis, known in (("layout", LAYOUTS), ("input_format", INPUT_FORMATS)):
            version = known[data[axis]][0]
            if data.get(f"{axis}_version") != version:
                raise ConfigError(
                    f"{axis} {data[axis]!r} was version {data.get(f'{axis}_version')}, it is now {version}: adapt again"
                )
        if data.get("examples_version") != EXAMPLE_CHOICES[config.examples]:
            raise ConfigError(f"example choice {config.examples!r} has a new version: adapt again")
        if config.spans and data.get("spans_version") != SPANS_VERSION:
            raise ConfigError("copied spans have a new version: adapt again")
        return config

    @property
    def key(self) -> str:
        """A stable hash of everything that shapes the prompt: part of the cache key."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render_configured(
    config: Configuration,
    instructions: str,
    examples: Sequence[Pair],
    input_json: str,
    spec: OutputSpec,
    mode: OutputMode,
) -> Prompt:
    """The prompt `config`'s layout and input format make of these (already chosen) examples and this input."""
    return LAYOUTS[config.layout][1](
        instructions, examples, input_json, spec, mode, INPUT_FORMATS[config.input_format][1]
    )
