"""A provider that misbehaves on a seeded schedule, for tests and benchmarks (loopback only, bounded).

    plan = FaultPlan(rate=0.3, seed=7)
    with FaultServer("openai", plan, answer=lambda received: '{"label": "positive"}') as server:  # or "anthropic"
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="k", timeout=0.5)
        ...
    server.counts          # how many of each fault were served
    server.early_retries   # retries that came before the Retry-After the server asked for (should be 0)

Whether request i is faulted, and how, depends only on (seed, i): a run is reproducible.
"""

from __future__ import annotations

import enum
import functools
import gzip
import hashlib
import json
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from robustprompt.testing import _anthropic_server as anthropic_wire
from robustprompt.testing import _openai_server as openai_wire
from robustprompt.testing._server import LoopbackServer, Received, Reply, Wire

__all__ = ["HOSTILE", "TRANSIENT", "Fault", "FaultPlan", "FaultServer", "answer_from"]


class Fault(str, enum.Enum):
    RATE_LIMIT = "rate_limit"  # 429 with retry-after (seconds)
    RATE_LIMIT_MS = "rate_limit_ms"  # 429 with retry-after-ms
    SERVER_ERROR = "server_error"  # 500
    BAD_GATEWAY = "bad_gateway"  # 502
    UNAVAILABLE = "unavailable"  # 503
    OVERLOADED = "overloaded"  # 529 where the API has it, else 503
    HANG = "hang"  # no answer until past the client's timeout
    RESET = "reset"  # the connection drops unanswered
    TRUNCATED = "truncated"  # the body stops short of its content-length
    MALFORMED_JSON = "malformed_json"  # 200 with a body that is not JSON
    SCHEMA_INVALID = "schema_invalid"  # 200, but the answer does not fit the schema
    REFUSAL = "refusal"  # the model refuses
    LENGTH = "length"  # the answer is cut off at the token limit
    MODEL_NOT_FOUND = "model_not_found"  # 404: the model is gone
    TRICKLE_HEADERS = "trickle_headers"  # the headers come a byte per `trickle` seconds: no read ever times out
    TRICKLE_BODY = "trickle_body"  # headers at once, then the body a byte at a time
    GZIP_BOMB = "gzip_bomb"  # 200 whose `Content-Encoding: gzip, gzip` body inflates to 512 MiB
    ABSURD_USAGE = "absurd_usage"  # a good answer reporting 10^12 output tokens
    LONE_SURROGATE = "lone_surrogate"  # an answer holding "\ud800": invalid, so re-asked with it quoted


# Permanent faults end a call (or, for a missing model, a model's life in the process): opt in to them, as to the
# hostile ones, which cost a client its timeout or its memory when it does not defend itself.
HOSTILE = (Fault.TRICKLE_HEADERS, Fault.TRICKLE_BODY, Fault.GZIP_BOMB, Fault.ABSURD_USAGE, Fault.LONE_SURROGATE)
TRANSIENT = tuple(f for f in Fault if f not in (Fault.REFUSAL, Fault.MODEL_NOT_FOUND, *HOSTILE))


@dataclass(frozen=True)
class FaultPlan:
    rate: float = 0.3  # share of requests faulted
    kinds: tuple[Fault, ...] = TRANSIENT  # drawn uniformly
    seed: int = 0
    retry_after: float = 0.05  # seconds asked for by 429s
    hang: float = 2.0  # seconds a HANG holds the answer: set it above the client's timeout
    trickle: float = 0.2  # seconds between two bytes of a TRICKLE
    script: tuple[Fault | None, ...] = ()  # the first requests' fates, in order; the draw decides the rest

    def fault(self, index: int) -> Fault | None:
        if index < len(self.script):
            return self.script[index]
        rng = random.Random(f"{self.seed}:{index}")
        return rng.choice(self.kinds) if rng.random() < self.rate else None


class _Shapes:
    """Reply builders of one API for each fault (the OpenAI Chat Completions shapes)."""

    wire: Wire = openai_wire.OpenAIWire()

    def ok(self, content: str, finish: str = "stop", output_tokens: float = 5) -> Reply:
        return openai_wire.chat_reply(content, finish_reason=finish, completion_tokens=output_tokens)  # type: ignore[arg-type]

    def refusal(self) -> Reply:
        return openai_wire.chat_reply(None, refusal="I'm sorry, I can't help with that.")

    def rate_limited(self, seconds: float, in_ms: bool) -> Reply:
        if in_ms:
            return openai_wire.rate_limited(retry_after_ms=round(seconds * 1000))
        return openai_wire.rate_limited(retry_after=seconds)

    def status(self, status: int) -> Reply:
        return openai_wire.server_error(503 if status == 529 else status)

    def model_not_found(self, model: str) -> Reply:
        return openai_wire.model_not_found(model)


class _AnthropicShapes(_Shapes):
    """The Anthropic Messages shapes: 529 for overload, and no retry-after-ms (seconds, fractional)."""

    wire: Wire = anthropic_wire.AnthropicWire()

    def ok(self, content: str, finish: str = "stop", output_tokens: float = 5) -> Reply:
        stop = "max_tokens" if finish == "length" else "end_turn"
        return anthropic_wire.message_reply(content, stop_reason=stop, output_tokens=output_tokens)  # type: ignore[arg-type]

    def refusal(self) -> Reply:
        return anthropic_wire.refusal_reply("I can't help with that.")

    def rate_limited(self, seconds: float, in_ms: bool) -> Reply:
        return anthropic_wire.rate_limited(retry_after=seconds)

    def status(self, status: int) -> Reply:
        if status == 529:
            return anthropic_wire.overloaded()
        if status in (500, 504):
            return anthropic_wire.server_error(status)
        return anthropic_wire.error_reply(status, "api_error", "Internal server error")

    def model_not_found(self, model: str) -> Reply:
        return anthropic_wire.model_not_found(model)


_SHAPES: dict[str, _Shapes] = {"openai": _Shapes(), "anthropic": _AnthropicShapes()}


def _body_key(received: Received) -> str:
    return hashlib.sha256(json.dumps(received.body, sort_keys=True).encode()).hexdigest()


@dataclass
class _Ledger:
    counts: Counter[str] = field(default_factory=Counter)
    retry_not_before: dict[str, float] = field(default_factory=dict)
    early_retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultServer(LoopbackServer):
    """A loopback provider (`api`: "openai" or "anthropic") answering `answer(request)` except where the plan
    faults it."""

    def __init__(
        self,
        api: str,
        plan: FaultPlan,
        answer: Callable[[Received], str],
        *,
        api_key: str | None = None,
    ) -> None:
        self.shapes = _SHAPES[api]
        self.plan = plan
        self.answer = answer
        self._ledger = _Ledger()
        self._index = 0
        if Fault.GZIP_BOMB in plan.kinds:
            # Built now, not by the first requests that draw it: each would compress 512 MiB while the client runs
            # in the same process, and the client's timings would measure the server's work.
            _bomb_bytes()
        super().__init__(self.shapes.wire, api_key=api_key, responder=self._respond)

    @property
    def counts(self) -> Mapping[str, int]:
        return dict(self._ledger.counts)

    @property
    def early_retries(self) -> int:
        return self._ledger.early_retries

    def _respond(self, received: Received) -> Reply:
        key, now = _body_key(received), time.monotonic()
        with self._ledger.lock:
            index, self._index = self._index, self._index + 1
            if now < self._ledger.retry_not_before.pop(key, 0.0):
                self._ledger.early_retries += 1
        fault = self.plan.fault(index)
        reply = self._reply(fault, received)
        with self._ledger.lock:
            self._ledger.counts[fault.value if fault else "ok"] += 1
            if fault in (Fault.RATE_LIMIT, Fault.RATE_LIMIT_MS):
                self._ledger.retry_not_before[key] = now + self.plan.retry_after
        return reply

    def _reply(self, fault: Fault | None, received: Received) -> Reply:
        shapes, content = self.shapes, self.answer(received)
        model = str(received.body.get("model", "")) if isinstance(received.body, dict) else ""
        replies: dict[Fault | None, Callable[[], Reply]] = {
            None: lambda: shapes.ok(content),
            Fault.RATE_LIMIT: lambda: shapes.rate_limited(self.plan.retry_after, in_ms=False),
            Fault.RATE_LIMIT_MS: lambda: shapes.rate_limited(self.plan.retry_after, in_ms=True),
            Fault.SERVER_ERROR: lambda: shapes.status(500),
            Fault.BAD_GATEWAY: lambda: shapes.status(502),
            Fault.UNAVAILABLE: lambda: shapes.status(503),
            Fault.OVERLOADED: lambda: shapes.status(529),
            Fault.HANG: lambda: replace(shapes.ok(content), delay=self.plan.hang),
            Fault.RESET: lambda: replace(shapes.ok(content), fault="reset"),
            Fault.TRUNCATED: lambda: replace(shapes.ok(content), fault="truncate"),
            Fault.MALFORMED_JSON: lambda: Reply(200, b'{"id": "cmpl-1", "choices": [{"index": 0, "mess'),
            Fault.SCHEMA_INVALID: lambda: shapes.ok('{"unexpected": true}'),
            Fault.REFUSAL: shapes.refusal,
            Fault.LENGTH: lambda: shapes.ok(content[: max(len(content) // 2, 1)], finish="length"),
            Fault.MODEL_NOT_FOUND: lambda: shapes.model_not_found(model),
            Fault.TRICKLE_HEADERS: lambda: replace(
                shapes.ok(content), fault="trickle_headers", interval=self.plan.trickle
            ),
            Fault.TRICKLE_BODY: lambda: replace(shapes.ok(content), fault="trickle_body", interval=self.plan.trickle),
            Fault.GZIP_BOMB: _gzip_bomb,
            Fault.ABSURD_USAGE: lambda: shapes.ok(content, output_tokens=1e12),
            Fault.LONE_SURROGATE: lambda: shapes.ok('{"label": "\ud800"}'),
        }
        return replies[fault]()


@functools.lru_cache(maxsize=1)
def _bomb_bytes() -> bytes:
    packer = zlib.compressobj(9, wbits=zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    inner = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MiB of zeros, ~500 KB
    return gzip.compress(inner, 9)  # a few KB on the wire


def _gzip_bomb() -> Reply:
    return Reply(200, _bomb_bytes(), headers=(("content-encoding", "gzip, gzip"),))


def answer_from(fn: Callable[[Any], Any]) -> Callable[[Received], str]:
    """An `answer` for FaultServer from a function of the task input, read back from the request's last
    `Input:` turn (the input data block, past any re-ask feedback), returning the output to send as JSON."""

    def answer(received: Received) -> str:
        messages = received.body.get("messages", []) if isinstance(received.body, dict) else []
        inputs = [m["content"] for m in messages if m.get("role") == "user" and m["content"].startswith("Input:")]
        value = json.loads(inputs[-1].split("\n", 1)[1]) if inputs else None
        return json.dumps(fn(value))

    return answer
