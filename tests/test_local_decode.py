"""The embedded runtime's request to llama-cpp, with a stand-in for the loaded model: what each path sends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from robustprompt._completion import Completion
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Message, OutputMode, OutputSpec, Prompt
from robustprompt.adapters import local
from robustprompt.adapters.local import LocalBackend

# `nickname` is optional and declared first: the grammar must still let the model write it.
SCHEMA = {
    "type": "object",
    "properties": {"nickname": {"type": "string"}, "name": {"type": "string"}},
    "required": ["name"],
}
REACHABLE = {"anyOf": [{"type": "string"}, {"type": "null"}]}


class Recorder:
    """Stands in for a loaded llama: records each call's keyword arguments and answers `{}`."""

    n_tokens = 3

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_chat_completion(self, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        self.calls.append(("chat", {"messages": messages, **kwargs}))
        if kwargs.get("stream"):
            return (chunk for chunk in [{"choices": [{"delta": {"content": "{}"}, "finish_reason": "stop"}]}])
        return {"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}], "usage": {}}

    def create_completion(self, text: str, **kwargs: Any) -> Any:
        self.calls.append(("text", {"text": text, **kwargs}))
        return {"choices": [{"text": "{}", "finish_reason": "stop"}], "usage": {}}


def backend(style: str = "chat") -> LocalBackend:
    profile = ModelProfile("local", "stand-in", modes=(OutputMode.GRAMMAR,), prompt_style=style)  # type: ignore[arg-type]
    return LocalBackend(Path("stand-in.gguf"), profile, Settings(temperature=0, max_output_tokens=8))


def prompt(mode: OutputMode = OutputMode.GRAMMAR, text: str | None = None) -> Prompt:
    return Prompt("Extract.", (Message("user", "Input: Ann"),), OutputSpec("person", SCHEMA), mode, text=text)


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_and_a_stream_send_the_same_chat_request(stream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    llama, found = Recorder(), backend()
    monkeypatch.setattr(found, "_model", lambda: (llama, threading.Lock()))
    if stream:
        *pieces, completion = found.stream(prompt())
        assert pieces == ["{}"] and isinstance(completion, Completion) and completion.text == "{}"
    else:
        assert found.complete(prompt()).text == "{}"
    kind, sent = llama.calls[0]
    assert kind == "chat" and sent["temperature"] == 0 and sent["max_tokens"] == 8
    assert sent["response_format"]["schema"]["properties"]["nickname"] == REACHABLE
    assert sent["response_format"]["schema"]["required"] == ["nickname", "name"]
    assert sent["messages"][0] == {"role": "system", "content": "Extract."}
    assert sent.get("stream", False) is stream


def test_a_mode_without_grammar_sends_no_schema() -> None:
    llama = Recorder()
    backend()._decode(llama, prompt(OutputMode.PROMPTED))
    assert llama.calls[0][1]["response_format"] is None


def test_completion_text_goes_as_text_with_the_stop_sequences() -> None:
    llama = Recorder()
    backend()._decode(llama, prompt(OutputMode.PROMPTED, text="Extract.\n\nInput: Ann\nOutput:"))
    kind, sent = llama.calls[0]
    assert kind == "text" and sent["text"].endswith("Output:") and sent["grammar"] is None and sent["stop"]


def test_compiled_grammars_are_bounded_and_the_latest_used_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    monkeypatch.setattr(local, "_GRAMMARS_KEPT", 2)
    found = backend("completion")
    schemas = [{"type": "object", "properties": {name: {"type": "string"}}} for name in ("a", "b", "c")]
    first = found._grammar(schemas[0])
    found._grammar(schemas[1])
    assert found._grammar(schemas[0]) is first  # used again: now the latest
    found._grammar(schemas[2])  # the oldest, b, goes
    assert len(found._grammars) == 2 and found._grammar(schemas[0]) is first
