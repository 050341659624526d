"""Encoded bodies: any chain decodes to the same bytes, and memory stays near the cap however it inflates."""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustprompt._decoding import BodyDecoder, BoundedBody, TooLarge, UnknownEncoding

ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # zlib-wrapped, as the RFC says
    "x-gzip": gzip.compress,
}


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # raw, as some servers send "deflate"
    return packer.compress(data) + packer.flush()


def _encode(data: bytes, chain: list[str], raw_deflate: bool) -> bytes:
    for coding in chain:
        data = _raw_deflate(data) if coding == "deflate" and raw_deflate else ENCODERS[coding](data)
    return data


@given(
    data=st.binary(max_size=5000) | st.text(max_size=3000).map(str.encode),
    chain=st.lists(st.sampled_from(sorted(ENCODERS)), max_size=3),
    raw_deflate=st.booleans(),
    cut=st.integers(1, 700),
)
def test_any_chain_decodes_to_the_original_bytes(data: bytes, chain: list[str], raw_deflate: bool, cut: int) -> None:
    encoded = _encode(data, chain, raw_deflate)
    body = BoundedBody(", ".join(chain), limit=10_000)
    for i in range(0, len(encoded), cut):
        body.take(encoded[i : i + cut])
    assert body.done() == data


@pytest.mark.parametrize("chain", [["gzip"], ["gzip", "gzip"], ["deflate", "gzip"], []])
def test_a_body_over_the_cap_at_any_layer_is_refused(chain: list[str]) -> None:
    decoder = BodyDecoder(", ".join(chain), limit=100_000)
    encoded = _encode(b"\0" * 1_000_000, chain, raw_deflate=False)
    with pytest.raises(TooLarge):
        for _ in decoder.feed(encoded):
            pass


@pytest.mark.parametrize("header", ["br", "gzip, zstd", "compress", ", ".join(["gzip"] * 5)])
def test_a_coding_not_asked_for_or_a_long_chain_is_refused(header: str) -> None:
    with pytest.raises(UnknownEncoding):
        BodyDecoder(header, limit=1000)


# Peak memory is measured in a subprocess of its own: ru_maxrss only ever grows.
_BOMB = r"""
import json, resource, sys, zlib
import robustprompt as rp
from robustprompt.testing import OpenAIServer, Reply
from tests.models import Review, classify_task

chain = sys.argv[1].split(", ")
packer = zlib.compressobj(9, wbits=zlib.MAX_WBITS | 16)
zeros = b"\0" * (1 << 20)
bomb = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MiB inflated
for _ in chain[1:]:
    bomb = zlib.compress(bomb, 9) if _ == "deflate" else __import__("gzip").compress(bomb, 9)
with OpenAIServer(api_key="sk-test-key") as server:
    server.enqueue(Reply(200, bomb, headers=(("content-encoding", ", ".join(chain)),)))
    model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="sk-test-key")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        classify_task().run(Review(text="x"), model=model, policy=rp.Policy(transport_retries=0))
        outcome = "accepted"
    except rp.ProviderError as exc:
        outcome = str(exc)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"grown_mb": grown, "outcome": outcome, "sent": len(bomb)}))
"""


@pytest.mark.parametrize("chain", ["gzip", "gzip, gzip", "gzip, deflate", "gzip, gzip, gzip"])
def test_a_compression_bomb_is_refused_within_a_small_multiple_of_the_cap(chain: str) -> None:
    done = subprocess.run([sys.executable, "-c", _BOMB, chain], capture_output=True, text=True, timeout=120, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert "max_response_bytes" in measured["outcome"]
    assert measured["grown_mb"] < 2 * 32 + 16  # the cap is 32 MiB: one copy of the body and the joined result


def test_an_async_read_lets_the_event_loop_run_between_inflation_steps() -> None:
    # Inflating a bomb up to the cap is CPU work: done in one go, it stalls every other call on the loop, whose
    # deadlines cannot fire meanwhile. The ticker's count, read at each step, must move between steps.
    import asyncio

    import robustprompt as rp
    from robustprompt import _decoding
    from robustprompt.testing import OpenAIServer, Reply
    from tests.models import Review, classify_task

    packer = zlib.compressobj(9, wbits=zlib.MAX_WBITS | 16)
    bomb = b"".join(packer.compress(b"\0" * (1 << 20)) for _ in range(64)) + packer.flush()  # 64 MiB inflated
    ticks, seen = [0], list[int]()
    steps = _decoding._Inflater._steps

    def counted(self: _decoding._Inflater, data: bytes) -> Iterator[bytes]:
        for out in steps(self, data):
            seen.append(ticks[0])
            yield out

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    async def call(model: rp.Model) -> None:
        running = asyncio.create_task(ticker())
        try:
            with pytest.raises(rp.ProviderError, match="max_response_bytes"):
                await classify_task().arun(Review(text="x"), model=model, policy=rp.Policy(transport_retries=0))
        finally:
            running.cancel()

    with OpenAIServer(api_key="k") as server, pytest.MonkeyPatch.context() as patch:
        patch.setattr(_decoding._Inflater, "_steps", counted)
        server.enqueue(Reply(200, bomb, headers=(("content-encoding", "gzip"),)))
        asyncio.run(call(rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="k")))
    assert len(seen) > 100  # 32 MiB in 256 KiB steps, and then the cap
    moved = sum(later > earlier for earlier, later in itertools.pairwise(seen))
    assert moved >= len(seen) - 5  # the loop ran between (almost) every two steps
