"""The wire decoders, pure: any split of the same bytes gives the same text pieces, the same completion and a
monotone sequence of partials; each provider's mid-stream errors are the typed errors of a non-streamed call."""

from __future__ import annotations

import itertools
import json
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustprompt._errors import (
    BadRequestError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from robustprompt._partial import PartialJson
from robustprompt.adapters import StreamDecoder
from robustprompt.adapters._sse import Lines, SseDecoder, SseEvent
from robustprompt.adapters.anthropic import AnthropicAdapter
from robustprompt.adapters.bedrock import BedrockAdapter
from robustprompt.adapters.cohere import CohereAdapter
from robustprompt.adapters.gemini import GeminiAdapter
from robustprompt.adapters.mistral import MistralAdapter
from robustprompt.adapters.ollama import OllamaAdapter
from robustprompt.adapters.openai import OpenAIChatAdapter
from robustprompt.adapters.openai_responses import OpenAIResponsesAdapter
from robustprompt.testing._anthropic_server import message_stream
from robustprompt.testing._bedrock_server import converse_stream, event_frame
from robustprompt.testing._cohere_server import chat_stream as cohere_stream
from robustprompt.testing._gemini_server import generate_stream
from robustprompt.testing._mistral_server import chat_stream as mistral_stream
from robustprompt.testing._ollama_server import chat_stream as ollama_stream
from robustprompt.testing._openai_server import chat_stream, stream_error
from robustprompt.testing._responses_server import response_stream
from robustprompt.testing._server import text_pieces
from tests.test_partial import consistent

VALUE = {"name": "Zoë 😀", "tags": ["a\nb", "ü"], "age": 36}
ANSWER = json.dumps(VALUE, ensure_ascii=False)

WIRES: dict[str, Any] = {
    "openai": (OpenAIChatAdapter, lambda **kw: chat_stream(ANSWER, **kw)),
    "openai-tool": (OpenAIChatAdapter, lambda **kw: chat_stream(ANSWER, tool=True, **kw)),
    "responses": (OpenAIResponsesAdapter, lambda **kw: response_stream(ANSWER, **kw)),
    "responses-function": (OpenAIResponsesAdapter, lambda **kw: response_stream(ANSWER, function=True, **kw)),
    "anthropic": (AnthropicAdapter, lambda **kw: message_stream(ANSWER, **kw)),
    "anthropic-tool": (AnthropicAdapter, lambda **kw: message_stream(ANSWER, tool=True, **kw)),
    "gemini": (GeminiAdapter, lambda **kw: generate_stream(ANSWER, thought="Let me see.", **kw)),
    "gemini-crlf": (GeminiAdapter, lambda **kw: generate_stream(ANSWER, crlf=True, **kw)),
    "gemini-function": (GeminiAdapter, lambda **kw: generate_stream("", function_args=VALUE, **kw)),
    "mistral": (MistralAdapter, lambda **kw: mistral_stream(ANSWER, thinking="Hmm.", **kw)),
    "mistral-tool": (MistralAdapter, lambda **kw: mistral_stream(ANSWER, tool=True, **kw)),
    "cohere": (CohereAdapter, lambda **kw: cohere_stream(ANSWER, thinking="Hmm.", **kw)),
    "bedrock": (BedrockAdapter, lambda **kw: converse_stream(ANSWER, **kw)),
    "bedrock-tool": (BedrockAdapter, lambda **kw: converse_stream(ANSWER, tool=True, **kw)),
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
def test_any_chunking_gives_the_same_pieces_completion_and_monotone_partials(name: str, cuts: list[int]) -> None:
    body = b"".join(WIRES[name][1]().chunks)
    whole, parts = decoder(name), decoder(name)
    expected = "".join(whole.feed(body))
    reader, previous, got = PartialJson(), None, []
    for chunk in split(body, cuts):
        for piece in parts.feed(chunk):
            got.append(piece)
            reader.feed(piece)
            snapshot = reader.snapshot()
            if previous is not None:
                assert consistent(previous, snapshot), (previous, snapshot)  # nothing shown is taken back
            previous = snapshot
    assert "".join(got) == expected == ANSWER
    assert reader.snapshot() == VALUE
    assert whole.finish() == parts.finish()
    assert parts.finish().text == ANSWER


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


# ---------------------------------------------------------------- each provider's errors inside a 200 stream


def fed(name: str, body: bytes) -> Any:
    dec = decoder(name)
    dec.feed(body)
    return dec.finish()


def body_of(reply: Any) -> bytes:
    return b"".join(reply.chunks)


@pytest.mark.parametrize("shape", ["flat", "nested"])
def test_responses_error_events_in_either_shape_are_the_typed_error(shape: str) -> None:
    with pytest.raises(RateLimitError, match="Too Many Requests"):
        fed("responses", body_of(response_stream(ANSWER, error=shape)))  # type: ignore[arg-type]


def test_responses_terminal_events_give_the_status_and_the_usage() -> None:
    done = fed("responses", body_of(response_stream(ANSWER, pieces=4)))
    assert done.finish_reason == "stop" and done.usage is not None
    assert done.usage.output_tokens == len(text_pieces(ANSWER, 4))
    assert fed("responses", body_of(response_stream(ANSWER, status="incomplete"))).finish_reason == "length"
    with pytest.raises(ServerError, match="The model failed"):
        fed("responses", body_of(response_stream(ANSWER, status="failed")))
    after = body_of(response_stream(ANSWER)) + b'event: error\ndata: {"type":"error","message":"late"}\n\n'
    assert fed("responses", after).text == ANSWER  # nothing after the terminal event is read


@pytest.mark.parametrize("where", ["data", "raw"])
def test_gemini_errors_as_data_or_as_raw_json_are_the_typed_error(where: str) -> None:
    with pytest.raises(RateLimitError, match="Resource has been exhausted"):
        fed("gemini", body_of(generate_stream(ANSWER, error=where)))  # type: ignore[arg-type]


def test_gemini_usage_is_the_last_cumulative_count_and_a_blocked_prompt_is_a_refusal() -> None:
    done = fed("gemini", body_of(generate_stream(ANSWER, split=[1, 2, 3, 4, 5])))  # six parts
    assert done.usage is not None and (done.usage.input_tokens, done.usage.output_tokens) == (10, 6)
    blocked = b'data: {"promptFeedback": {"blockReason": "SAFETY"},"usageMetadata": {"promptTokenCount": 4}}\n\n'
    assert fed("gemini", blocked).finish_reason == "refusal"
    stopped = fed("gemini", body_of(generate_stream(ANSWER, finish_reason="SAFETY")))
    assert stopped.finish_reason == "refusal" and stopped.refusal and "SAFETY" in stopped.refusal


def test_mistral_error_finish_is_a_server_error_and_model_length_is_truncation() -> None:
    with pytest.raises(ServerError, match="finish_reason 'error'"):
        fed("mistral", body_of(mistral_stream(ANSWER, error=True)))
    assert fed("mistral", body_of(mistral_stream(ANSWER, finish_reason="model_length"))).finish_reason == "length"
    done = fed("mistral", body_of(mistral_stream(ANSWER)))
    assert done.usage is not None and done.usage.input_tokens == 10  # from the last content chunk


def test_cohere_error_end_is_a_server_error_and_usage_is_billed() -> None:
    with pytest.raises(ServerError, match="internal failure"):
        fed("cohere", body_of(cohere_stream(ANSWER, error="internal failure")))
    done = fed("cohere", body_of(cohere_stream(ANSWER, finish_reason="MAX_TOKENS")))
    assert done.finish_reason == "length" and done.usage is not None and done.usage.input_tokens == 10


# ---------------------------------------------------------------- Bedrock's binary frames

# PROVIDERS.md §11.9: a contentBlockDelta frame of 159 bytes, its CRCs checked with botocore's EventStreamBuffer.
_HEADERS = {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"}
_PAYLOAD = b'{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}'


def test_the_fake_frames_are_byte_accurate_and_the_decoder_reads_them() -> None:
    frame = event_frame(_HEADERS, _PAYLOAD)
    assert len(frame) == 159 and frame[:12].hex() == "0000009f00000057c37babff" and frame[-4:].hex() == "f2ace5ff"
    assert decoder("bedrock").feed(frame) == ["Hi"]


def test_botocore_reads_the_fake_stream_as_aws_frames() -> None:
    eventstream = pytest.importorskip("botocore.eventstream")
    buffer = eventstream.EventStreamBuffer()
    buffer.add_data(body_of(converse_stream(ANSWER, pieces=3)))
    kinds = [message.headers[":event-type"] for message in buffer]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_corrupted_byte_is_a_connection_error_never_another_answer(data: st.DataObject) -> None:
    body = bytearray(body_of(converse_stream(ANSWER, pieces=3)))
    at = data.draw(st.integers(0, len(body) - 1))
    body[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ProviderConnectionError):
        fed("bedrock", bytes(body))


def test_a_truncated_frame_or_an_impossible_length_is_a_connection_error() -> None:
    frame = event_frame(_HEADERS, _PAYLOAD)
    with pytest.raises(ProviderConnectionError, match="inside a frame"):
        fed("bedrock", frame[:100])
    tiny = (8).to_bytes(4, "big") + (0).to_bytes(4, "big")
    with pytest.raises(ProviderConnectionError, match="cannot hold"):
        fed("bedrock", tiny + zlib.crc32(tiny).to_bytes(4, "big"))


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        ("throttlingException", RateLimitError),
        ("internalServerException", ServerError),
        ("modelStreamErrorException", ServerError),
        ("serviceUnavailableException", OverloadedError),
        ("validationException", BadRequestError),
    ],
)
def test_bedrock_exception_frames_are_the_typed_errors(exception: str, kind: type[ProviderError]) -> None:
    with pytest.raises(kind, match=f"{exception} in the stream") as caught:
        fed("bedrock", body_of(converse_stream(ANSWER, exception=exception)))
    assert type(caught.value) is kind


def test_bedrock_usage_comes_from_metadata_after_the_stop() -> None:
    done = fed("bedrock", body_of(converse_stream(ANSWER, pieces=4)))
    assert done.finish_reason == "stop" and done.usage is not None
    assert done.usage.output_tokens == len(text_pieces(ANSWER, 4))
    unknown = event_frame({**_HEADERS, ":event-type": "somethingNew"}, b'{"p":"x"}')
    assert decoder("bedrock").feed(unknown) == []  # unknown events are dropped, as botocore drops them
