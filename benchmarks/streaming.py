"""Streaming: time to the first field vs a non-streamed call, and the partial reader's cost per chunk.

    python benchmarks/streaming.py [REPS]     # default 5 repetitions; about 30 s on 2 cores

Scenario 1 (latency): a long extraction (a record with a 40-item list and a long summary, ~4.5 KB of JSON) from the
loopback OpenAI server, paced as a model would generate it: 200 SSE chunks, 10 ms apart (~2 s). The non-streamed
call gets the same answer after the same 2 s. Reported: the median time to the first partial with a field in it,
to the first partial showing the list, and to the validated output, streamed and not.

Scenario 2 (CPU): the same answer unpaced, client CPU time (process_time) per streamed and per non-streamed call.

Scenario 3 (parse cost): the partial reader fed a 200 KB answer in 20-byte pieces, with a snapshot after every
piece as a stream takes it; the feed cost per chunk in the first and the last tenth of the answer (flat, not
growing with the prefix) and the snapshot cost likewise (it copies the open containers: grows with their size).

Scenario 4 (wires): the answer of scenario 1 as each provider's loopback server streams it (200 pieces, its own
framing: SSE with or without event names, NDJSON, AWS event-stream frames), decoded by that provider's pure
decoder, fed in 1 KB reads: the median decode time per answer, and per MB of wire bytes.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time

from pydantic import BaseModel

import robustprompt as rp
from robustprompt._partial import PartialJson
from robustprompt.adapters import StreamDecoder, StreamingAdapter
from robustprompt.adapters._registry import load
from robustprompt.testing import OpenAIServer, Reply
from robustprompt.testing._anthropic_server import message_stream
from robustprompt.testing._bedrock_server import converse_stream
from robustprompt.testing._cohere_server import chat_stream as cohere_stream
from robustprompt.testing._gemini_server import generate_stream
from robustprompt.testing._mistral_server import chat_stream as mistral_stream
from robustprompt.testing._ollama_server import chat_stream as ollama_stream
from robustprompt.testing._openai_server import chat_reply, chat_stream
from robustprompt.testing._responses_server import response_stream


class Item(BaseModel):
    name: str
    quantity: int
    note: str


class Record(BaseModel):
    title: str
    items: list[Item]
    summary: str


class Doc(BaseModel):
    text: str


TASK = rp.Task("extract", input=Doc, output=Record, instructions="Extract the record.")
ANSWER = json.dumps(
    {
        "title": "Quarterly inventory of the north warehouse",
        "items": [{"name": f"part {i}", "quantity": i * 3, "note": "checked, shelf " + str(i % 7)} for i in range(40)],
        "summary": "All parts were counted twice. " * 60,
    }
)
CHUNKS, PACE = 200, 0.01


def latency(reps: int) -> None:
    streamed_first, streamed_list, streamed_full, plain_full = [], [], [], []
    with OpenAIServer(api_key="sk-bench") as server:
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="sk-bench")
        for _ in range(reps):
            server.enqueue(chat_stream(ANSWER, pieces=CHUNKS, chunk_delay=PACE))
            start = time.perf_counter()
            first = listed = None
            for item in TASK.stream_output(Doc(text="..."), model=model):
                now = time.perf_counter() - start
                if isinstance(item, rp.Partial):
                    first = first if first is not None or not item.fields else now
                    listed = listed if listed is not None or not item.get("items") else now
                else:
                    streamed_full.append(now)
            streamed_first.append(first or 0.0)
            streamed_list.append(listed or 0.0)

            server.enqueue(dataclasses.replace(chat_reply(ANSWER), delay=(CHUNKS - 1) * PACE))
            start = time.perf_counter()
            TASK(Doc(text="..."), model=model)
            plain_full.append(time.perf_counter() - start)
        model.close()
    ms = lambda xs: f"{statistics.median(xs) * 1000:7.0f} ms"  # noqa: E731
    print(f"latency, {len(ANSWER)} B answer in {CHUNKS} chunks {PACE * 1000:.0f} ms apart, median of {reps}:")
    print(f"  streamed: first field {ms(streamed_first)}, list visible {ms(streamed_list)}, output {ms(streamed_full)}")
    print(f"  not streamed:                                              output {ms(plain_full)}")


def cpu(reps: int) -> None:
    streamed, plain = [], []
    with OpenAIServer(api_key="sk-bench") as server:
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="sk-bench")
        for _ in range(reps * 4):
            server.enqueue(chat_stream(ANSWER, pieces=CHUNKS), chat_reply(ANSWER))
            start = time.process_time()
            list(TASK.stream_output(Doc(text="..."), model=model))
            streamed.append(time.process_time() - start)
            start = time.process_time()
            TASK(Doc(text="..."), model=model)
            plain.append(time.process_time() - start)
        model.close()
    s, p = statistics.median(streamed) * 1000, statistics.median(plain) * 1000
    print(f"client CPU per call (server in the same process, {CHUNKS} chunks): streamed {s:.1f} ms, plain {p:.1f} ms")


def parse_cost() -> None:
    big = json.dumps({"items": [{"name": f"n{i}", "qty": i, "tags": ["a", "b"]} for i in range(4000)], "end": "x"})
    reader, feeds, snaps = PartialJson(), [], []
    for start in range(0, len(big), 20):
        t0 = time.perf_counter()
        reader.feed(big[start : start + 20])
        t1 = time.perf_counter()
        reader.snapshot()
        feeds.append(t1 - t0)
        snaps.append(time.perf_counter() - t1)
    tenth = len(feeds) // 10
    us = lambda xs: f"{statistics.median(xs) * 1e6:6.1f} µs"  # noqa: E731
    print(
        f"partial reader, {len(big) // 1000} KB in 20-byte chunks: feed first tenth {us(feeds[:tenth])}, "
        f"last tenth {us(feeds[-tenth:])}; snapshot first tenth {us(snaps[:tenth])}, last tenth {us(snaps[-tenth:])}"
    )


WIRES = {
    "openai": chat_stream,
    "openai-responses": response_stream,
    "anthropic": message_stream,
    "gemini": generate_stream,
    "mistral": mistral_stream,
    "cohere": cohere_stream,
    "bedrock": converse_stream,
    "ollama": ollama_stream,
}


def _decoder(provider: str) -> StreamDecoder:
    adapter = load(provider)
    assert isinstance(adapter, StreamingAdapter)
    decoder = adapter.stream_decoder(adapter.default_profile("m"))  # type: ignore[attr-defined]
    assert decoder is not None
    return decoder


def wires(reps: int) -> None:
    print(f"wire decoders, the {len(ANSWER)} B answer in {CHUNKS} pieces, fed in 1 KB reads, median of {reps * 20}:")
    for provider, stream in WIRES.items():
        reply: Reply = stream(ANSWER, pieces=CHUNKS)
        body = b"".join(reply.chunks)
        reads = [body[i : i + 1024] for i in range(0, len(body), 1024)]
        times = []
        for _ in range(reps * 20):
            decoder = _decoder(provider)
            start = time.perf_counter()
            text = "".join(piece for read in reads for piece in decoder.feed(read))
            decoder.finish()
            times.append(time.perf_counter() - start)
        assert text == ANSWER, provider
        median = statistics.median(times)
        mb = median / (len(body) / 1e6)
        print(f"  {provider:17} {len(body):7} B on the wire: {median * 1e6:6.0f} µs per answer, {mb * 1e3:5.1f} ms/MB")


if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    latency(reps)
    cpu(reps)
    parse_cost()
    wires(reps)
