"""The default async transport (aiohttp under httpx's client): real round trips, failures typed as httpx's own."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import json
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest

import robustprompt as rp
from robustprompt._transport import AiohttpTransport, _httpx_error, default_async_client
from robustprompt.testing import OpenAIServer, Reply
from robustprompt.testing._openai_server import chat_reply
from tests.models import Review, Sentiment, classify_task

KEY = "sk-transport-test"
NO_RETRY = rp.Policy(transport_retries=0, reasks=0)


def arun(model: rp.Model, policy: rp.Policy = NO_RETRY) -> rp.Run[Sentiment]:
    return asyncio.run(classify_task().arun(Review(text="fine"), model=model, policy=policy))


def model_at(base_url: str, **kw: object) -> rp.Model:
    return rp.model("openai:gpt-4.1-mini", base_url=base_url, api_key=KEY, **kw)  # type: ignore[arg-type]


def test_the_default_async_client_runs_on_aiohttp() -> None:
    client = default_async_client()
    assert isinstance(client._transport, AiohttpTransport)


def test_a_typed_call_round_trips_and_the_session_closes_with_its_loop() -> None:
    transports: list[AiohttpTransport] = []
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(chat_reply('{"label": "positive"}'))
        model = model_at(server.base_url)

        async def call() -> rp.Run[Sentiment]:
            run = await classify_task().arun(Review(text="fine"), model=model, policy=NO_RETRY)
            transport = model.backend._async_client()._transport  # type: ignore[attr-defined]
            transports.append(transport)
            return run

        run = asyncio.run(call())
    assert run.output == Sentiment(label="positive")
    received = server.requests[0]
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.headers["content-type"] == "application/json"
    assert received.body["model"] == "gpt-4.1-mini"
    assert transports[0]._session is None  # closed when asyncio.run shut the loop down
    gc.collect()  # an unclosed aiohttp session would warn here, and warnings are errors in this suite


def test_explicit_aclose_closes_the_session() -> None:
    with OpenAIServer() as server:
        server.enqueue(Reply(404, b"{}"))

        async def main() -> aiohttp.ClientSession | None:
            client = default_async_client()
            await client.get(f"{server.base_url}/models")
            transport = client._transport
            assert isinstance(transport, AiohttpTransport)
            session = transport._session
            await client.aclose()
            return session

        session = asyncio.run(main())
    assert session is not None and session.closed


def test_a_gzipped_body_is_decoded_by_httpx() -> None:
    reply = chat_reply('{"label": "negative"}')
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(Reply(200, gzip.compress(reply.body), (("content-encoding", "gzip"),)))
        assert arun(model_at(server.base_url)).output == Sentiment(label="negative")


def test_an_encoded_path_reaches_the_wire_as_is() -> None:
    # Signed requests (SigV4) cover the encoded path: %3A must not come out as ':'.
    with OpenAIServer() as server:
        server.enqueue(Reply(404, b"{}"))

        async def main() -> int:
            async with default_async_client() as client:
                return (await client.post(f"{server.base_url}/model/a.b-v1%3A0/converse", content=b"{}")).status_code

        assert asyncio.run(main()) == 404
    assert server.requests[0].path == "/v1/model/a.b-v1%3A0/converse"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_refused_is_a_connection_error_without_the_key() -> None:
    with pytest.raises(rp.ProviderConnectionError, match="ConnectError") as caught:
        arun(model_at(f"http://127.0.0.1:{_closed_port()}/v1"))
    assert KEY not in repr(caught.value) and KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("reply", "error", "kind"),
    [
        (Reply(delay=1.0), rp.ProviderTimeout, "ReadTimeout"),
        (Reply(fault="reset"), rp.ProviderConnectionError, "RemoteProtocolError"),
        (Reply(body=b'{"id": "x", "choices": []}', fault="truncate"), rp.ProviderConnectionError, "RemoteProtocol"),
    ],
)
def test_wire_failures_are_typed(reply: Reply, error: type[rp.ProviderError], kind: str) -> None:
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(reply)
        with pytest.raises(error, match=kind):
            arun(model_at(server.base_url, timeout=0.2))


def test_a_deadline_bounds_a_request_in_flight() -> None:
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(Reply(delay=5.0))
        with pytest.raises(rp.ProviderTimeout):
            arun(model_at(server.base_url), rp.Policy(deadline=0.3, transport_retries=0))


def test_a_body_over_the_cap_is_refused() -> None:
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(Reply(200, json.dumps({"pad": "x" * 4096}).encode()))
        model = model_at(server.base_url)
        object.__setattr__(model.backend, "settings", rp.Settings(max_response_bytes=1024))
        with pytest.raises(rp.ProviderError, match="max_response_bytes"):
            arun(model)


def test_a_compressed_body_is_bounded_by_its_inflated_size() -> None:
    bomb = gzip.compress(json.dumps({"pad": "x" * 200_000}).encode())  # ~0.2 MB inflated from a few hundred bytes
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(Reply(200, bomb, (("content-encoding", "gzip"),)))
        model = model_at(server.base_url)
        object.__setattr__(model.backend, "settings", rp.Settings(max_response_bytes=len(bomb) * 10))
        with pytest.raises(rp.ProviderError, match="max_response_bytes"):
            arun(model)


def test_the_environment_proxy_carries_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIServer(api_key=KEY) as proxy:
        proxy.enqueue(chat_reply('{"label": "positive"}'))
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        # .invalid never resolves: only the proxy can have answered
        assert arun(model_at("http://api.example.invalid/v1")).output == Sentiment(label="positive")
    assert proxy.requests[0].path == "/v1/chat/completions"


def test_no_proxy_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(chat_reply('{"label": "positive"}'))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert arun(model_at(server.base_url)).output == Sentiment(label="positive")


def test_a_socks_proxy_is_a_config_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(rp.ConfigError, match=r"socks5:// .* async_http_client=httpx.AsyncClient\(proxy=\.\.\.\)"):
        arun(model_at("http://api.example.invalid/v1"))


def test_a_users_async_client_is_used_instead() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=chat_reply('{"label": "neutral"}').body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    model = model_at("http://mock.invalid/v1", async_http_client=client)
    assert arun(model).output == Sentiment(label="neutral")
    assert seen == ["http://mock.invalid/v1/chat/completions"]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (asyncio.TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut short"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.InvalidURL("nowhere"), httpx.UnsupportedProtocol),
        (aiohttp.ClientError("other"), httpx.TransportError),
    ],
)
def test_every_aiohttp_failure_maps_to_httpx(failure: Exception, expected: type[httpx.TransportError]) -> None:
    mapped = _httpx_error(failure)
    assert type(mapped) is expected
    assert str(mapped)


def test_a_hand_closed_loop_is_clean_after_model_aclose() -> None:
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(chat_reply('{"label": "positive"}'))
        model = model_at(server.base_url)
        loop = asyncio.new_event_loop()
        try:
            run = loop.run_until_complete(classify_task().arun(Review(text="x"), model=model, policy=NO_RETRY))
            transport = model.backend._async_clients[loop]._transport  # type: ignore[attr-defined]
            loop.run_until_complete(model.aclose())
        finally:
            loop.close()
    assert run.output == Sentiment(label="positive")
    assert transport._session is None
    del loop
    gc.collect()  # no unclosed-session warning (warnings are errors here)


def test_model_close_closes_only_the_pool_it_opened() -> None:
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(chat_reply('{"label": "positive"}'), chat_reply('{"label": "negative"}'))
        own = model_at(server.base_url)
        classify_task().run(Review(text="x"), model=own, policy=NO_RETRY)
        opened = own.backend._client  # type: ignore[attr-defined]
        own.close()
        assert opened.is_closed
        with httpx.Client() as client:
            given = model_at(server.base_url, http_client=client)
            classify_task().run(Review(text="x"), model=given, policy=NO_RETRY)
            given.close()
            assert not client.is_closed


def test_import_and_a_blocking_call_load_no_aiohttp() -> None:
    code = (
        "import sys, robustprompt as rp\n"
        "from robustprompt.testing import FunctionModel\n"
        "from tests.models import Review, classify_task\n"
        "heavy = ('aiohttp', 'tiktoken', 'jsonschema', 'llama_cpp', 'sqlite3', 'robustprompt.evals._report', 'ray')\n"
        "assert not [m for m in heavy if m in sys.modules], sorted(m for m in heavy if m in sys.modules)\n"
        "classify_task().run(Review(text='x'), model=FunctionModel(lambda p: '{\"label\": \"positive\"}'))\n"
        "assert not [m for m in heavy if m in sys.modules], sorted(m for m in heavy if m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_a_model_used_across_many_event_loops_keeps_no_client_per_loop() -> None:
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(*[chat_reply('{"label": "positive"}') for _ in range(8)])
        model = model_at(server.base_url)
        for _ in range(5):
            arun(model)
        classify_task().map([Review(text="a"), Review(text="b"), Review(text="c")], model=model, policy=NO_RETRY)
    gc.collect()
    assert len(model.backend._async_clients) == 0  # type: ignore[attr-defined]


def test_a_proxy_without_a_scheme_is_read_as_http(monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIServer(api_key=KEY) as proxy:
        proxy.enqueue(chat_reply('{"label": "positive"}'))
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removeprefix("http://").removesuffix("/v1"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert arun(model_at("http://api.example.invalid/v1")).output == Sentiment(label="positive")


def test_no_proxy_may_name_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIServer(api_key=KEY) as server:
        server.enqueue(chat_reply('{"label": "positive"}'))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
        monkeypatch.setenv("NO_PROXY", server.base_url.removeprefix("http://").removesuffix("/v1"))
        assert arun(model_at(server.base_url)).output == Sentiment(label="positive")


def test_a_streamed_request_body_goes_out_whole_with_its_length() -> None:
    with OpenAIServer() as server:
        server.enqueue(Reply(404, b"{}"))

        async def body() -> AsyncIterator[bytes]:
            yield b'{"a":'
            yield b" 1}"

        async def main() -> None:
            async with default_async_client() as client:
                await client.post(f"{server.base_url}/x", content=body())

        asyncio.run(main())
    received = server.requests[0]
    assert "transfer-encoding" not in received.headers
    assert received.headers["content-length"] == "8" and received.body == {"a": 1}


def test_a_header_the_wire_refuses_is_a_typed_error_without_its_value() -> None:
    with OpenAIServer() as server:

        async def main() -> None:
            async with default_async_client() as client:
                await client.get(f"{server.base_url}/models", headers={"x-secret": "abc\n"})

        with pytest.raises(httpx.LocalProtocolError) as caught:
            asyncio.run(main())
    assert "abc" not in str(caught.value)


def _lying_server(body_bytes: int) -> tuple[socket.socket, threading.Thread]:
    """Answers once with both Content-Length: 10 and Transfer-Encoding: chunked, then `body_bytes` of chunks."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            # Read the request body too: closing with it unread would reset the connection under the client.
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n"
            conn.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 65536
            with contextlib.suppress(OSError):  # the client hangs up once over its cap
                for _ in range(body_bytes // len(chunk)):
                    conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_a_length_that_a_chunked_body_contradicts_does_not_lift_the_cap() -> None:
    listener, thread = _lying_server(1_000_000)
    with listener:
        model = model_at(f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
        object.__setattr__(model.backend, "settings", rp.Settings(max_response_bytes=100_000))
        with pytest.raises(rp.ProviderError, match="max_response_bytes"):
            classify_task().run(Review(text="x"), model=model, policy=NO_RETRY)
        model.close()
    thread.join(5)


@pytest.mark.parametrize("key", ["sk-abc\n", " sk-abc", "sk-a\tbc"])
def test_an_api_key_with_a_newline_is_refused_without_echoing_it(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(rp.ConfigError, match=r"API key from api_key= has whitespace") as caught:
        rp.model("openai:gpt-4.1-mini", api_key=key)
    assert "sk-a" not in str(caught.value)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with pytest.raises(rp.ConfigError, match="API key from OPENAI_API_KEY"):
        rp.model("openai:gpt-4.1-mini")


@pytest.mark.parametrize("key", ["sk-abc\u201d", "sk-\u00e9abc", "sk-abc\u2028"])
def test_an_api_key_that_is_not_ascii_is_refused_without_echoing_it(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(rp.ConfigError, match=r"API key from api_key= ") as caught:
        rp.model("openai:gpt-4.1-mini", api_key=key)
    assert "sk-" not in str(caught.value) and "sk-" not in repr(caught.value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    with pytest.raises(rp.ConfigError, match="API key from ANTHROPIC_API_KEY"):
        rp.model("anthropic:claude-haiku-4-5")
