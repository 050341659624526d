"""The benchmark's fixed workload, stdlib only (the server and the orchestrator import it without pydantic).

One typed extraction: a short text about a person in, a `Person` object out. The fake server answers every
chat completion with the same JSON object, either as the message content (structured-output / JSON-schema
mode) or, under `/tool/<name>/...`, as a forced tool call named `<name>` (the peers' tool-calling modes).
"""

from __future__ import annotations

import json

MODEL_ID = "gpt-4.1-mini"
API_KEY = "bench"
INSTRUCTIONS = "Extract the person described in the text: name, age, email, city and the languages they speak."

PERSON = {
    "name": "Ada Lovelace",
    "age": 36,
    "email": "ada@example.com",
    "city": "London",
    "languages": ["English", "French", "Italian"],
}
PERSON_JSON = json.dumps(PERSON, separators=(",", ":"))


def text(i: int) -> str:
    """The i-th input text (each call sends a different one)."""
    return (
        f"Ref {i}: Ada Lovelace, 36, lives in London and can be reached at ada@example.com. "
        "She reads and writes English, French and Italian, and is looking for a new project."
    )


def completion(tool: str | None = None) -> bytes:
    """A Chat Completions response body carrying PERSON, as content or as a call of the tool `tool`."""
    if tool is None:
        message = {"role": "assistant", "content": PERSON_JSON, "refusal": None, "annotations": []}
        finish = "stop"
    else:
        call = {"id": "call_bench_1", "type": "function", "function": {"name": tool, "arguments": PERSON_JSON}}
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call], "annotations": []}
        finish = "tool_calls"
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_760_000_000,
        "model": "gpt-4.1-mini-2025-04-14",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 112,
            "completion_tokens": 31,
            "total_tokens": 143,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }
    return json.dumps(body, separators=(",", ":")).encode()
