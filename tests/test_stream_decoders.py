"""The wire decoders, pure: any split of the same bytes gives the same text pieces and the same completion."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustprompt._errors import ProviderConnectionError, RateLimitError, ServerError
from robustprompt.adapters import StreamDecoder
from robustprompt.adapters._sse import Lines, SseDecoder, SseEvent
from robustprompt.adapters.anthropic import AnthropicAdapter
from robustprompt.adapters.ollama import OllamaAdapter
from robustprompt.adapters.openai import OpenAIChatAdapter
from robustprompt.testing._anthropic_server import message_stream
from robustprompt.testing._ollama_server import chat_stream as ollama_stream
from robustprompt.testing._openai_server import chat_stream, stream_error

ANSWER = json.dumps({"name": "Zoë 😀", "tags": ["a\nb", "ü"]}, ensure_ascii=False)

WIRES: dict[str, Any] = {
    "openai": (OpenAIChatAdapter, lambda **kw: chat_stream(ANSWER, **kw)),
    "openai-tool": (OpenAIChatAdapter, lambda **kw: chat_stream(ANSWER, tool=True, **kw)),
    "anthropic": (AnthropicAdapter, lambda **kw: message_stream(ANSWER, **kw)),
    "anthropic-tool": (AnthropicAdapter, lambda **kw: message_stream(ANSWER, tool=True, **kw)),
    "ollama": (OllamaAdapter, lambda **kw: ollama_stream(ANSWER, **kw)),
}


def decoder(name: str) -> StreamDecoder:
    adapter = WIRES[name][0]()
    found = adapter.stream_decoder(adapter.default_profile("m"))
    assert found is not None
    return found


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("name", sorted(WIRES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 10_000), max_size=40))
def test_any_chunking_gives_the_same_pieces_and_completion(name: str, cuts: list[int]) -> None:
    body = b"".join(WIRES[name][1]().chunks)
    whole, parts = decoder(name), decoder(name)
    expected = "".join(whole.feed(body))
    got = "".join(piece for chunk in split(body, cuts) for piece in parts.feed(chunk))
    assert got == expected == ANSWER
    assert whole.finish() == parts.finish()


@pytest.mark.parametrize("name", sorted(WIRES))
def test_a_stream_cut_short_is_a_retryable_connection_error(name: str) -> None:
    body = b"".join(WIRES[name][1]().chunks)
    dec = decoder(name)
    dec.feed(body[: len(body) * 2 // 3])
    with pytest.raises(ProviderConnectionError) as caught:
        dec.finish()
    assert caught.value.retryable


def test_openai_mid_stream_errors_are_the_typed_errors_of_a_non_streamed_call() -> None:
    for error, kind in ((stream_error(), ServerError), (stream_error("slow", type="requests"), RateLimitError)):
        with pytest.raises(kind):
            decoder("openai").feed(b"".join(chat_stream(ANSWER, error=error).chunks))


def test_openai_usage_chunk_with_no_choices_is_read_and_done_ends_the_stream() -> None:
    dec = decoder("openai")
    dec.feed(b"".join(chat_stream(ANSWER).chunks) + b'data: {"error": {"message": "after the end"}}\n\n')
    completion = dec.finish()
    assert completion.usage is not None and completion.usage.input_tokens == 10 and completion.text == ANSWER


def test_sse_follows_the_whatwg_rules() -> None:
    sse = SseDecoder()
    events = sse.feed(b": keep-alive\r\nevent: a\r\ndata:x\r\ndata: y\r")
    events += sse.feed(b"\n\r\ndata: z\n\nunknown: w\ndata: open")
    assert events == [SseEvent("a", "x\ny"), SseEvent("message", "z")]
    assert sse.pending() == "open"  # unterminated: not an event


@given(st.text(max_size=30), st.lists(st.integers(0, 200), max_size=10), st.sampled_from(["\n", "\r", "\r\n"]))
def test_lines_split_anywhere_decode_the_same(text: str, cuts: list[int], end: str) -> None:
    lines = [text.replace("\r", "").replace("\n", ""), "second"]
    data = end.join(lines).encode() + end.encode()
    reader = Lines()
    got = [line for chunk in split(data, cuts) for line in reader.feed(chunk)]
    assert got == lines
