"""The Ollama adapter end to end, against a loopback server speaking Ollama's `/api/chat` wire format.

Every request body is checked against the pinned Ollama spec (`ChatRequest`) plus what the spec leaves open
(unknown fields, `stream: false`); a violating body gets Ollama's 400 and the test fails.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

import robustprompt as rp
from robustprompt.adapters import Endpoint
from robustprompt.adapters.ollama import OllamaAdapter, ollama_base_url
from robustprompt.testing._ollama_server import (
    OllamaServer,
    chat_reply,
    error_reply,
    model_not_found,
    queue_full,
    rate_limited,
    schema_rejected,
    server_error,
)
from robustprompt.testing._server import Reply
from tests.loopback import model_maker, server_fixture
from tests.models import Person, Review, Sentiment, classify_task
from tests.ollama_spec import chat_request_violations, ollama_errors
from tests.spec_check import needs_specs

FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)
CLOUD_KEY = "ollama-cloud-planted-5d1e"


server = server_fixture(lambda: OllamaServer(check=chat_request_violations))
make = model_maker("ollama:llama3.2", temperature=0, max_output_tokens=200, seed=7)


def person_task() -> rp.Task[str, Person]:
    return rp.Task("person", input=str, output=Person, instructions="Extract the person.")


# ---------------------------------------------------------------- output modes


def test_native_schema_mode_sends_the_schema_as_format(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"positive"}', prompt_eval_count=61, eval_count=6))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(61, 6)
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    (req,) = server.requests
    assert req.path == "/api/chat"
    assert "authorization" not in req.headers  # a local Ollama has no auth
    body = req.body
    assert body["model"] == "llama3.2" and body["stream"] is False
    assert body["format"] == Sentiment.model_json_schema()
    assert body["options"] == {"temperature": 0, "seed": 7, "num_predict": 200}
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]
    # Ollama's docs advise the schema in the prompt as well as in `format`.
    assert "JSON Schema" in body["messages"][0]["content"]


def test_json_mode_sends_format_json(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"neutral"}'))
    policy = rp.Policy(mode=rp.OutputMode.JSON_OBJECT)
    classify_task().run(Review(text="ok"), model=make(server, client), policy=policy)
    body = server.requests[0].body
    assert body["format"] == "json"
    assert "JSON Schema" in body["messages"][0]["content"]


def test_prompted_mode_sends_no_format_and_repairs_the_answer(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply("Sure!\n```json\n{'label': 'Negative',}\n```"))
    run = classify_task().run(
        Review(text="bad"), model=make(server, client), policy=rp.Policy(mode=rp.OutputMode.PROMPTED)
    )
    assert run.output == Sentiment(label="negative")
    assert "format" not in server.requests[0].body


def test_unset_settings_send_no_options(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"neutral"}'))
    model = rp.model("ollama:llama3.2", base_url=server.base_url, http_client=client)
    classify_task().run(Review(text="ok"), model=model)
    assert "options" not in server.requests[0].body


@pytest.mark.parametrize("mode", [rp.OutputMode.TOOL_CALL, rp.OutputMode.GRAMMAR])
def test_modes_ollama_cannot_do_are_config_errors(mode: rp.OutputMode) -> None:
    adapter = OllamaAdapter()
    prompt = rp.Prompt("sys", (rp.Message("user", "hi"),), rp.OutputSpec("out", {"type": "object"}), mode)
    with pytest.raises(rp.ConfigError, match="no forced tool call"):
        adapter.prepare(prompt, adapter.default_profile("llama3.2"), rp.Settings(), Endpoint("http://localhost:11434"))


def test_cloud_models_get_prompted_mode_only() -> None:
    adapter = OllamaAdapter()
    assert adapter.default_profile("gpt-oss:120b-cloud").modes == (rp.OutputMode.PROMPTED,)
    assert adapter.default_profile("glm-4.6:cloud").modes == (rp.OutputMode.PROMPTED,)
    assert adapter.default_profile("mistral-small3.2").modes[0] is rp.OutputMode.JSON_SCHEMA


# ---------------------------------------------------------------- answers


def test_invalid_answer_is_reasked(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"happy"}'), chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.output == Sentiment(label="positive")
    second = server.requests[1].body["messages"]
    assert second[-2] == {"role": "assistant", "content": '{"label":"happy"}'}
    assert "happy" in second[-1]["content"]


def test_truncation_is_read_from_done_reason(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(
        chat_reply('{"name":"Ann","ag', done_reason="length"),
        chat_reply('{"name":"Ann","age":31}'),
    )
    run = person_task().run("Ann is 31", model=make(server, client), policy=FAST)
    assert run.output == Person(name="Ann", age=31)
    assert run.attempts[0].finish_reason == "length"
    assert "cut off" in server.requests[1].body["messages"][-1]["content"]


def test_a_cached_prompt_without_prompt_eval_count_counts_zero_input(
    server: OllamaServer, client: httpx.Client
) -> None:
    server.enqueue(chat_reply('{"label":"positive"}', prompt_eval_count=None, eval_count=5))
    run = classify_task().run(Review(text="great"), model=make(server, client))
    assert run.usage == rp.Usage(0, 5)


def test_thinking_is_not_taken_for_the_answer(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(chat_reply('{"label":"negative"}', thinking="The review says bad, so negative."))
    run = classify_task().run(Review(text="bad"), model=make(server, client, name="ollama:qwen3"))
    assert run.output == Sentiment(label="negative")
    assert run.attempts[0].raw == '{"label":"negative"}'


# ---------------------------------------------------------------- errors


def test_queue_full_503_is_retried(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(queue_full(), server_error(), chat_reply('{"label":"negative"}'))
    run = classify_task().run(Review(text="bad"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="negative")
    errors = run.attempts[0].transport_errors
    assert errors[0].startswith("OverloadedError") and errors[1].startswith("ServerError")


def test_cloud_429_waits_for_retry_after(client: httpx.Client) -> None:
    with OllamaServer(api_key=CLOUD_KEY, check=chat_request_violations) as server:
        server.enqueue(rate_limited(retry_after=0.3), chat_reply('{"label":"positive"}'))
        model = rp.model("ollama:llama3.2", base_url=server.base_url, api_key=CLOUD_KEY, http_client=client)
        start = time.monotonic()
        run = classify_task().run(Review(text="great"), model=model, policy=FAST)
        assert time.monotonic() - start >= 0.3
        assert run.output == Sentiment(label="positive")
        assert server.requests[0].headers["authorization"] == f"Bearer {CLOUD_KEY}"


@pytest.mark.parametrize("reply", [model_not_found("llama3.2"), model_not_found("llama3.2", pulled_hint=True)])
def test_a_model_not_pulled_is_permanent_and_says_how_to_fix_it(
    server: OllamaServer, client: httpx.Client, reply: Reply
) -> None:
    server.enqueue(reply, chat_reply('{"label":"negative"}'))
    with pytest.raises(rp.ModelNotFoundError, match="pull") as info:
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert info.value.status == 404
    assert len(server.requests) == 1


def test_a_schema_the_grammar_refuses_downgrades_to_json_mode(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(schema_rejected(), chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.JSON_OBJECT]
    assert len(server.requests) == 2  # a 500 that names the schema is not retried as a server fault
    assert server.requests[1].body["format"] == "json"


def test_a_capability_400_is_permanent(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(error_reply(400, '"llama3.2" does not support thinking'))
    with pytest.raises(rp.BadRequestError, match="does not support"):
        classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert len(server.requests) == 1


def test_an_error_in_a_200_is_a_retryable_server_fault(server: OllamaServer, client: httpx.Client) -> None:
    server.enqueue(
        error_reply(200, "an error was encountered while running the model"), chat_reply('{"label":"positive"}')
    )
    run = classify_task().run(Review(text="x"), model=make(server, client), policy=FAST)
    assert run.output == Sentiment(label="positive")
    assert run.attempts[0].transport_errors[0].startswith("ServerError")


def test_a_wrong_path_is_a_permanent_error_naming_the_base_url(client: httpx.Client) -> None:
    with OllamaServer() as server:
        model = rp.model("ollama:llama3.2", base_url=server.base_url + "/v1", http_client=client)
        with pytest.raises(rp.BadRequestError, match="base URL") as info:
            classify_task().run(Review(text="x"), model=model, policy=FAST)
        assert info.value.status == 404
        assert len(server.requests) == 1


def test_wrong_cloud_key_is_an_auth_error_that_never_shows_the_key(client: httpx.Client) -> None:
    with OllamaServer(api_key=CLOUD_KEY) as server:
        model = rp.model(
            "ollama:llama3.2", base_url=server.base_url, api_key="ollama-wrong-planted-9", http_client=client
        )
        with pytest.raises(rp.AuthError) as info:
            classify_task().run(Review(text="x"), model=model, policy=FAST)
        assert "ollama-wrong-planted-9" not in str(info.value)
        assert "ollama-wrong-planted-9" not in repr(info.value.run)


def test_async_call(server: OllamaServer) -> None:
    server.enqueue(chat_reply('{"label":"happy"}'), chat_reply('{"label":"neutral"}'))

    async def go() -> rp.Run[Sentiment]:
        async with httpx.AsyncClient() as aclient:
            model = rp.model("ollama:llama3.2", base_url=server.base_url, async_http_client=aclient)
            return await classify_task().arun(Review(text="meh"), model=model, policy=FAST)

    run = asyncio.run(go())
    assert run.output == Sentiment(label="neutral")


# ---------------------------------------------------------------- OLLAMA_HOST


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("localhost", "http://localhost:11434"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        (":9999", "http://127.0.0.1:9999"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:11435", "http://127.0.0.1:11435"),
        ("[::]:11434", "http://[::1]:11434"),
        ("::1", "http://[::1]:11434"),
        ("example.com:abc", "http://example.com:11434"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("https://gpu-box", "https://gpu-box:443"),
        ("https://gpu-box:8443/ollama/", "https://gpu-box:8443/ollama"),
        ("ollama.com", "https://ollama.com:443"),
        (" 'gpu-box:1234' ", "http://gpu-box:1234"),
        ("http://localhost:11434", "http://localhost:11434"),
    ],
)
def test_ollama_host_is_read_as_ollamas_client_reads_it(host: str, url: str) -> None:
    assert ollama_base_url(host) == url


def test_ollama_host_without_a_scheme_reaches_the_server(
    server: OllamaServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.base_url.removeprefix("http://"))
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    server.enqueue(chat_reply('{"label":"positive"}'))
    run = classify_task().run(Review(text="x"), model=rp.model("ollama:llama3.2", http_client=client))
    assert run.output == Sentiment(label="positive")


# ---------------------------------------------------------------- the server speaks the spec


def test_the_loopback_replies_follow_the_spec() -> None:
    import json

    assert ollama_errors(json.loads(chat_reply("{}").body), "ChatResponse") == []
    for reply in (queue_full(), schema_rejected(), model_not_found("x"), rate_limited(1)):
        assert ollama_errors(json.loads(reply.body), "ErrorResponse") == []


@needs_specs
def test_the_request_check_catches_what_the_spec_leaves_open() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "fromat": "json"}
    found = chat_request_violations(body)
    assert any("fromat" in v for v in found) and any("stream" in v for v in found)
    assert chat_request_violations({"model": "m", "messages": [{"role": "bot"}]})
