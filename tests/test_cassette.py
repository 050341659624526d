"""Cassettes record a run's HTTP exchanges once, against loopback servers speaking each API, and replay them
offline: the same Run, no network (the server is stopped, or still running and never reached), and no planted key
anywhere in the file. The pytest plugin is exercised in a pytester run of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import robustprompt as rp
from robustprompt.testing import (
    AnthropicServer,
    BedrockServer,
    GeminiServer,
    LoopbackServer,
    OpenAIServer,
    Reply,
    _cassette,
)
from robustprompt.testing._anthropic_server import message_reply
from robustprompt.testing._bedrock_server import converse_reply, converse_stream
from robustprompt.testing._cassette import SCRUBBED, CassetteError, cassette
from robustprompt.testing._gemini_server import generate_reply
from robustprompt.testing._openai_server import chat_reply, chat_stream, error_reply
from robustprompt.testing._server import Received
from tests.models import Person, Review, Sentiment, classify_task

pytest_plugins = ["pytester"]

KEY = "sk-planted-7c41d9e2b8a05f36"
GOOD = '{"label": "positive"}'


def _model(name: str, base_url: str, **kw: Any) -> rp.Model:
    return rp.model(name, base_url=base_url, temperature=0, max_output_tokens=50, **kw)


def _stable(run: rp.Run[Any]) -> tuple[object, ...]:
    """A Run without its timings, which differ between two executions of the same exchanges."""
    attempts = [
        dataclasses.replace(attempt, latency=0.0, first_chunk=None, first_partial=None) for attempt in run.attempts
    ]
    return (run.task, run.fingerprint, run.model, attempts, run.output, run.error, run.notes)


def _exchanges(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    assert data["robustprompt_cassette"] == 1
    exchanges: list[dict[str, Any]] = data["exchanges"]
    return exchanges


def _assert_no_secret(path: Path, *secrets: str) -> None:
    data = path.read_bytes()
    for secret in secrets:
        assert secret.encode() not in data, f"{secret!r} leaked into the cassette"
        assert secret[3:].encode() not in data, f"part of {secret!r} leaked into the cassette"


def _by_text(received: Received) -> Reply:
    """Answers "great" as positive, anything else as negative; "echo" gets a 400 quoting the Authorization header."""
    last = received.body["messages"][-1]["content"]
    if "echo" in last:
        message = f"Invalid request for credentials {received.headers.get('authorization')}"
        return error_reply(400, message, type="invalid_request_error")
    return chat_reply(GOOD if '"great"' in last else '{"label": "negative"}')


def _classify_and_echo(model: rp.Model) -> tuple[rp.Run[Sentiment], str]:
    run = classify_task().run(Review(text="great"), model=model)
    with pytest.raises(rp.BadRequestError) as echoed:
        classify_task().run(Review(text="echo the key"), model=model)
    return run, type(echoed.value).__name__


# ---------------------------------------------------------------- round trips per API


def test_openai_round_trip_replays_offline_with_the_key_scrubbed(tmp_path: Path) -> None:
    path = tmp_path / "openai.json"
    with OpenAIServer(api_key=KEY, responder=_by_text) as server, cassette(path) as active:
        assert active.recording
        recorded = _classify_and_echo(_model("openai:gpt-4.1-mini", server.base_url, api_key=KEY))
    _assert_no_secret(path, KEY)
    assert "Invalid request for credentials SCRUBBED" in path.read_text()  # the echo was recorded, scrubbed
    exchange = _exchanges(path)[0]
    assert exchange["request"]["headers"]["authorization"] == SCRUBBED
    assert exchange["request"]["body"]["json"]["model"] == "gpt-4.1-mini"  # bodies stay JSON: diffs read well

    # The server is gone, and the model's own client could not reach anything: only the cassette answers.
    offline = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail("the network was called")))
    with cassette(path) as active:
        assert not active.recording
        replayed = _classify_and_echo(_model("openai:gpt-4.1-mini", server.base_url, api_key=KEY, http_client=offline))
    assert _stable(replayed[0]) == _stable(recorded[0]) and replayed[0].output == Sentiment(label="positive")
    assert replayed[1] == recorded[1]
    assert active.misses == []


def _person_task() -> rp.Task[Review, Person]:
    return rp.Task("person", input=Review, output=Person, instructions="Who is described?")


def _streamed(model: rp.Model) -> list[Any]:
    return list(_person_task().stream_output(Review(text="x"), model=model))


@pytest.mark.parametrize("wire", ["openai", "bedrock"])
def test_a_stream_replays_in_its_recorded_chunks_and_shows_the_same_partials(tmp_path: Path, wire: str) -> None:
    path, answer = tmp_path / f"{wire}.json", '{"name": "Ada Lovelace", "age": 36, "tags": ["math"]}'
    server: LoopbackServer
    if wire == "openai":
        server, name, reply = OpenAIServer(api_key=KEY), "openai:gpt-4.1-mini", chat_stream(answer, pieces=9)
    else:
        server, name = BedrockServer(bearer_token=KEY, region="us-east-1"), "bedrock:amazon.nova-pro-v1:0"
        reply = converse_stream(answer, pieces=9)
    with server, cassette(path):
        server.enqueue(reply)
        recorded = _streamed(_model(name, server.base_url, api_key=KEY))
    _assert_no_secret(path, KEY)
    response = _exchanges(path)[0]["response"]
    assert len(response["chunks"]) == len(reply.chunks)  # each event as its own chunk, as it was sent
    assert ("base64" if wire == "bedrock" else "text") in response["body"]  # never re-serialised

    offline = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail("the network was called")))
    with cassette(path, "replay"):
        replayed = _streamed(_model(name, server.base_url, api_key=KEY, http_client=offline))
    assert replayed == recorded and len(recorded) > 3 and isinstance(recorded[-1], Person)


def _anthropic(key: str) -> tuple[LoopbackServer, Reply]:
    return AnthropicServer(api_key=key), message_reply(GOOD)


def _gemini(key: str) -> tuple[LoopbackServer, Reply]:
    return GeminiServer(api_key=key), generate_reply(GOOD)


@pytest.mark.parametrize(
    ("name", "make", "header"),
    [
        ("anthropic:claude-sonnet-4-5", _anthropic, "x-api-key"),
        ("gemini:gemini-flash-latest", _gemini, "x-goog-api-key"),
    ],
)
def test_other_apis_key_headers_are_scrubbed(
    tmp_path: Path, name: str, make: Callable[[str], tuple[LoopbackServer, Reply]], header: str
) -> None:
    path = tmp_path / "api.json"
    server, reply = make(KEY)
    with server, cassette(path):
        server.enqueue(reply)
        recorded = classify_task().run(Review(text="great"), model=_model(name, server.base_url, api_key=KEY))
    _assert_no_secret(path, KEY)
    assert _exchanges(path)[0]["request"]["headers"][header] == SCRUBBED
    with cassette(path, mode="replay"):
        replayed = classify_task().run(Review(text="great"), model=_model(name, server.base_url, api_key=KEY))
    assert _stable(replayed) == _stable(recorded)


def test_aws_signature_headers_are_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_id, secret, token = "AKIDCASSETTETEST0001", "planted-aws-secret/4f2a9c+x", "planted-session-token-9d1e77"
    for var in ("AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(var, raising=False)
    env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}
    for var, value in {**env, "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(var, value)
    path = tmp_path / "bedrock.json"
    with BedrockServer(access_key_id=key_id, secret_access_key=secret, session_token=token) as server, cassette(path):
        server.enqueue(converse_reply(GOOD))
        name = "bedrock:global.anthropic.claude-sonnet-4-5-20250929-v1:0"
        classify_task().run(Review(text="great"), model=_model(name, server.base_url))
    _assert_no_secret(path, secret, token)
    headers = _exchanges(path)[0]["request"]["headers"]
    assert headers["authorization"] == headers["x-amz-security-token"] == SCRUBBED
    assert headers["x-amz-date"] != SCRUBBED  # not a credential: it stays readable


def test_async_round_trip_across_event_loops(tmp_path: Path) -> None:
    path = tmp_path / "async.json"
    texts = ["great", "meh", "awful", "great"]

    async def classify_all(model: rp.Model) -> list[Sentiment | None]:
        runs = await asyncio.gather(*(classify_task().arun(Review(text=t), model=model) for t in texts))
        return [run.output for run in runs]

    with OpenAIServer(api_key=KEY, responder=_by_text) as server, cassette(path):
        model = _model("openai:gpt-4.1-mini", server.base_url, api_key=KEY)
        recorded = asyncio.run(classify_all(model))
        assert asyncio.run(classify_all(model)) == recorded  # a second event loop records through a fresh pool
    _assert_no_secret(path, KEY)
    requests = [exchange["request"] for exchange in _exchanges(path)]
    assert len(requests) == 8 and requests == sorted(requests, key=_cassette._key)  # concurrency cannot reorder it
    with cassette(path, mode="replay"):
        assert asyncio.run(classify_all(model)) == asyncio.run(classify_all(model)) == recorded


# ---------------------------------------------------------------- replay rules


def test_repeated_identical_requests_replay_in_recorded_order(tmp_path: Path) -> None:
    path = tmp_path / "repeat.json"
    labels = ["positive", "negative", "neutral"]
    with OpenAIServer() as server, cassette(path):
        server.enqueue(*(chat_reply(json.dumps({"label": label})) for label in labels))
        model = _model("openai:gpt-4.1-mini", server.base_url, api_key=KEY)
        recorded = [classify_task().run(Review(text="same"), model=model).output for _ in labels]
    assert [s.label for s in recorded if s] == labels
    with cassette(path, mode="replay") as active:
        assert [classify_task().run(Review(text="same"), model=model).output for _ in labels] == recorded
        with pytest.raises(CassetteError, match="replayed already"):
            classify_task().run(Review(text="same"), model=model)
    assert len(active.misses) == 1


def test_calls_from_other_threads_are_replayed_too(tmp_path: Path) -> None:
    path = tmp_path / "threads.json"
    texts = ["great", "awful", "great"]

    def classify_in_threads(model: rp.Model) -> list[Sentiment | None]:
        with ThreadPoolExecutor(max_workers=3) as pool:  # its threads see no context variable of this one
            return [run.output for run in pool.map(lambda t: classify_task().run(Review(text=t), model=model), texts)]

    with OpenAIServer(responder=_by_text) as server, cassette(path):
        recorded = classify_in_threads(_model("openai:gpt-4.1-mini", server.base_url, api_key=KEY))
    with cassette(path, mode="replay") as active:
        assert classify_in_threads(_model("openai:gpt-4.1-mini", server.base_url, api_key=KEY)) == recorded
    assert active.misses == [] and len(server.requests) == 3


def test_a_request_with_no_recording_fails_with_a_diff_and_no_network_call(tmp_path: Path) -> None:
    path = tmp_path / "miss.json"
    with OpenAIServer(api_key=KEY, responder=_by_text) as server:
        model = _model("openai:gpt-4.1-mini", server.base_url, api_key=KEY)
        with cassette(path):
            classify_task().run(Review(text="great"), model=model)
        with cassette(path, mode="replay"), pytest.raises(CassetteError) as missed:
            classify_task().run(Review(text="awful"), model=model)
        assert len(server.requests) == 1  # the miss went nowhere
    message = str(missed.value)
    assert message.startswith(f"no recording for POST {server.base_url}/chat/completions in {path}")
    assert "--- recorded body" in message and 'Record it with mode="record" (pytest: --rp-record' in message
    changed = [line for line in message.splitlines() if line.startswith(("-", "+")) and "text" in line]
    assert any("great" in line for line in changed) and any("awful" in line for line in changed)


def test_replay_without_a_file_says_so(tmp_path: Path) -> None:
    model = _model("openai:gpt-4.1-mini", "http://127.0.0.1:9/v1", api_key=KEY)
    with cassette(tmp_path / "absent.json", mode="replay"), pytest.raises(CassetteError, match="does not exist"):
        classify_task().run(Review(text="great"), model=model)
    assert not (tmp_path / "absent.json").exists()


def test_another_url_lists_the_recorded_ones(tmp_path: Path) -> None:
    path = tmp_path / "urls.json"
    with OpenAIServer(responder=_by_text) as server, cassette(path):
        classify_task().run(Review(text="great"), model=_model("openai:gpt-4.1-mini", server.base_url, api_key=KEY))
    elsewhere = _model("openai:gpt-4.1-mini", "http://127.0.0.1:9/v1", api_key=KEY)
    with cassette(path, mode="replay"), pytest.raises(CassetteError, match=r"recorded requests: POST http://127"):
        classify_task().run(Review(text="great"), model=elsewhere)


def test_record_mode_overwrites_and_none_mode_is_off(tmp_path: Path) -> None:
    path = tmp_path / "modes.json"
    path.write_text("stale\n")
    with OpenAIServer(responder=_by_text) as server:
        model = _model("openai:gpt-4.1-mini", server.base_url, api_key=KEY)
        with cassette(path, mode="none") as off:
            classify_task().run(Review(text="great"), model=model)
        with cassette(path, mode="record"):
            classify_task().run(Review(text="great"), model=model)
    assert not off.recording and off.misses == []
    assert len(server.requests) == 2 and len(_exchanges(path)) == 1


def test_bad_mode_and_bad_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(rp.ConfigError, match="unknown cassette mode 'replay-only'"):
        cassette(tmp_path / "x.json", mode="replay-only")  # type: ignore[arg-type]
    (tmp_path / "other.json").write_text('{"interactions": []}')
    with pytest.raises(CassetteError, match="not a robustprompt cassette"), cassette(tmp_path / "other.json"):
        pass


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("x-api-key", True),
        ("api-key", True),
        ("x-goog-api-key", True),
        ("X-Amz-Security-Token", True),
        ("cookie", True),
        ("set-cookie", True),
        ("access_token", True),
        ("client_secret", True),
        ("key", True),
        ("x-amz-date", False),
        ("x-ratelimit-remaining-tokens", False),
        ("content-type", False),
        ("anthropic-version", False),
    ],
)
def test_credential_names(name: str, secret: bool) -> None:
    assert _cassette._is_secret_name(name) is secret


def test_query_credentials_and_echoed_keys_are_scrubbed() -> None:
    request = httpx.Request(
        "POST",
        "https://example.test/v1/x?key=AIzaPlanted123456&alt=json",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"note": f"echo {KEY}", "query": "AIzaPlanted123456"},
    )
    record = _cassette._request_record(request, _cassette._secrets_in(request))
    assert record["url"] == f"https://example.test/v1/x?key={SCRUBBED}&alt=json"
    assert record["body"] == {"json": {"note": f"echo {SCRUBBED}", "query": SCRUBBED}}


@given(st.binary() | st.text().map(str.encode))
def test_a_body_survives_the_file(raw: bytes) -> None:
    record = json.loads(json.dumps(_cassette._body_record(raw, ())))
    restored = _cassette._body_bytes(record)
    assert restored == raw if "json" not in record else json.loads(restored) == json.loads(raw)


@given(st.text(), st.text(min_size=8).filter(str.strip), st.text())
def test_a_secret_never_survives_scrubbing(before: str, secret: str, after: str) -> None:
    assert secret not in _cassette._scrub(before + secret + after, {secret}) or secret == SCRUBBED


@given(st.permutations(list(range(6))))
def test_the_file_does_not_depend_on_the_order_of_calls(order: list[int]) -> None:
    exchanges = [
        {"request": {"method": "POST", "url": f"https://x.test/{i % 3}", "body": {"json": i // 3}}, "response": {}}
        for i in range(6)
    ]
    assert _cassette._dumps([exchanges[i] for i in order]) == _cassette._dumps(exchanges)


# ---------------------------------------------------------------- the pytest plugin

_INNER_TEST = """
import pytest
import robustprompt as rp
from tests.models import Review, classify_task

MODEL = rp.model("openai:gpt-4.1-mini", base_url="{base_url}", api_key="{key}")


def test_classify(rp_cassette):
    assert classify_task().run(Review(text="great"), model=MODEL).output.label == "positive"


@pytest.mark.parametrize("text", ["great"])
def test_case(rp_cassette, text):
    assert classify_task().run(Review(text=text), model=MODEL).ok
"""

_SWALLOWED = """

def test_swallowed(rp_cassette):
    try:
        classify_task().run(Review(text="never recorded"), model=MODEL)
    except Exception:
        pass
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # Once the pytest11 entry point is installed, autoloading would register the plugin a second time beside -p.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("ROBUSTPROMPT_RECORD", raising=False)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "robustprompt.pytest_plugin", "-p", "no:cacheprovider", *args)


def test_the_fixture_records_when_asked_and_replays_otherwise(inner: pytest.Pytester) -> None:
    with OpenAIServer(api_key=KEY, responder=_by_text) as server:
        inner.makepyfile(test_inner=_INNER_TEST.format(base_url=server.base_url, key=KEY))
        _run(inner).assert_outcomes(failed=2)  # nothing recorded yet: replay fails, and calls nobody
        assert server.requests == []
        _run(inner, "--rp-record").assert_outcomes(passed=2)
    folder = inner.path / "cassettes" / "test_inner"
    assert sorted(p.name for p in folder.iterdir()) == ["test_case[great].json", "test_classify.json"]
    for path in folder.iterdir():
        _assert_no_secret(path, KEY)
    _run(inner).assert_outcomes(passed=2)  # offline: the server is gone


def test_a_missing_recording_fails_the_test_even_when_swallowed(inner: pytest.Pytester) -> None:
    with OpenAIServer(api_key=KEY, responder=_by_text) as server:
        inner.makepyfile(test_inner=_INNER_TEST.format(base_url=server.base_url, key=KEY))
        _run(inner, "--rp-record").assert_outcomes(passed=2)
    inner.makepyfile(test_inner=_INNER_TEST.format(base_url=server.base_url, key=KEY) + _SWALLOWED)
    result = _run(inner)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*rp_cassette: a request had no recording*", "no recording for POST http://*"])


def test_the_environment_records_into_the_configured_folder(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner.makeini("[pytest]\nrp_cassette_dir = recorded\n")
    monkeypatch.setenv("ROBUSTPROMPT_RECORD", "1")
    with OpenAIServer(api_key=KEY, responder=_by_text) as server:
        inner.makepyfile(test_inner=_INNER_TEST.format(base_url=server.base_url, key=KEY))
        _run(inner, "-k", "test_classify").assert_outcomes(passed=1, deselected=1)
    assert (inner.path / "recorded" / "test_inner" / "test_classify.json").exists()
