"""The Azure OpenAI adapter end to end, against a loopback server speaking Azure's wire format.

Bodies are OpenAI Chat Completions bodies and are checked against the pinned spec plus the strict-mode rules;
the server adds Azure's deployment path, api-version, `api-key` header and gateway error shapes.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

import robustprompt as rp
from robustprompt.adapters.azure import DEFAULT_API_VERSION, AzureOpenAIAdapter
from robustprompt.testing._azure_server import (
    AzureServer,
    azure_chat_reply,
    content_filtered,
    deployment_not_found,
    rate_limited,
    resource_not_found,
)
from robustprompt.testing._openai_server import schema_rejected, server_error
from tests.loopback import model_maker, server_fixture
from tests.models import Review, Sentiment, classify_task
from tests.spec_check import chat_request_violations, openapi_errors

KEY = "azure-key-planted-91b3"
DEPLOYMENT = "sentiment-prod"
FAST = rp.Policy(backoff_initial=0.01, backoff_max=0.02)


server = server_fixture(
    lambda: AzureServer(api_key=KEY, deployments=[DEPLOYMENT, "gpt-5-mini"], check=chat_request_violations)
)
make = model_maker(DEPLOYMENT, prefix="azure:", api_key=KEY, temperature=0, max_output_tokens=200)


def classify(model: rp.Model, **kw: Any) -> rp.Run[Sentiment]:
    return classify_task().run(Review(text="great"), model=model, policy=kw.pop("policy", FAST), **kw)


# ---------------------------------------------------------------- the request


def test_deployment_path_api_version_and_api_key(server: AzureServer, client: httpx.Client) -> None:
    server.enqueue(azure_chat_reply('{"label":"positive"}', prompt_tokens=30, completion_tokens=4))
    run = classify(make(server, client))
    assert run.output == Sentiment(label="positive")
    assert run.usage == rp.Usage(30, 4)
    assert run.mode is rp.OutputMode.JSON_SCHEMA
    (req,) = server.requests
    assert req.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert parse_qs(req.query) == {"api-version": [DEFAULT_API_VERSION]}
    assert req.headers["api-key"] == KEY
    assert "authorization" not in req.headers
    body = req.body
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["max_completion_tokens"] == 200
    assert body["messages"][0]["role"] == "system"


def test_api_version_from_the_environment(
    server: AzureServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2024-12-01-preview")
    server.enqueue(azure_chat_reply('{"label":"positive"}'))
    classify(make(server, client))
    assert parse_qs(server.requests[0].query) == {"api-version": ["2024-12-01-preview"]}


def test_endpoint_and_key_from_the_environment(
    server: AzureServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.base_url + "/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    server.enqueue(azure_chat_reply('{"label":"negative"}'))
    run = classify(rp.model(f"azure:{DEPLOYMENT}", http_client=client))
    assert run.output == Sentiment(label="negative")
    assert server.requests[0].path.startswith("/openai/deployments/")


def test_no_endpoint_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    with pytest.raises(rp.ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        rp.model(f"azure:{DEPLOYMENT}", api_key=KEY)


def test_a_deployment_named_after_a_reasoning_model(server: AzureServer, client: httpx.Client) -> None:
    model = make(server, client, "gpt-5-mini")
    assert model.profile.reasoning and model.profile.provider == "azure"
    assert model.profile.retired is None and model.profile.input_price is None  # Azure's own, unknown here
    server.enqueue(azure_chat_reply('{"label":"positive"}'))
    classify(model)
    body = server.requests[0].body
    assert body["messages"][0]["role"] == "developer"
    assert "temperature" not in body


def test_a_deployment_name_is_quoted_into_the_path() -> None:
    from robustprompt.adapters import Endpoint

    adapter = AzureOpenAIAdapter()
    prompt = rp.Prompt("s", (rp.Message("user", "hi"),), rp.OutputSpec("x", {"type": "object"}))
    call = adapter.prepare(prompt, adapter.default_profile("a b/c"), rp.Settings(), Endpoint("https://r", "k"))
    assert call.url == f"https://r/openai/deployments/a%20b%2Fc/chat/completions?api-version={DEFAULT_API_VERSION}"
    assert "k" not in repr(call)


# ---------------------------------------------------------------- errors


def test_unknown_deployment_is_model_not_found_and_not_retried(server: AzureServer, client: httpx.Client) -> None:
    with pytest.raises(rp.ModelNotFoundError, match="deployment 'nope'") as info:
        classify(make(server, client, "nope"))
    assert info.value.status == 404 and info.value.code == "DeploymentNotFound"
    assert len(server.requests) == 1


def test_unknown_api_version_names_the_setting(
    server: AzureServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2019-01-01")
    with pytest.raises(rp.BadRequestError, match="AZURE_OPENAI_API_VERSION") as info:
        classify(make(server, client))
    assert "Resource not found" in str(info.value)
    assert len(server.requests) == 1


def test_429_honours_retry_after_ms(server: AzureServer, client: httpx.Client) -> None:
    server.enqueue(rate_limited(retry_after=1), azure_chat_reply('{"label":"positive"}'))
    start = time.monotonic()
    run = classify(make(server, client))
    assert 1.0 <= time.monotonic() - start < 5
    assert run.attempts[0].transport_errors[0].startswith("RateLimitError")


def test_a_daily_quota_wait_beyond_the_cap_stops(server: AzureServer, client: httpx.Client) -> None:
    server.enqueue(rate_limited(retry_after=86400), azure_chat_reply('{"label":"positive"}'))
    with pytest.raises(rp.RateLimitError) as info:
        classify(make(server, client))
    assert info.value.retry_after == 86400
    assert len(server.requests) == 1


def test_5xx_is_retried(server: AzureServer, client: httpx.Client) -> None:
    server.enqueue(server_error(500), azure_chat_reply('{"label":"negative"}'))
    assert classify(make(server, client)).output == Sentiment(label="negative")


def test_content_filter_on_the_prompt_is_a_refusal(server: AzureServer, client: httpx.Client) -> None:
    server.enqueue(content_filtered(), azure_chat_reply('{"label":"negative"}'))
    with pytest.raises(rp.RefusalError, match="content management policy"):
        classify(make(server, client))
    assert len(server.requests) == 1


def test_content_filter_on_the_answer_is_a_refusal(server: AzureServer, client: httpx.Client) -> None:
    server.enqueue(azure_chat_reply(None, finish_reason="content_filter"))
    with pytest.raises(rp.RefusalError):
        classify(make(server, client))


def test_schema_rejected_downgrades(server: AzureServer, client: httpx.Client) -> None:
    server.enqueue(schema_rejected("classify", "bad"), azure_chat_reply(None, tool_arguments='{"label":"positive"}'))
    run = classify(make(server, client, "gpt-5-mini"))
    assert [a.mode for a in run.attempts] == [rp.OutputMode.JSON_SCHEMA, rp.OutputMode.TOOL_CALL]


def test_wrong_key_is_an_auth_error_that_never_shows_the_key(server: AzureServer, client: httpx.Client) -> None:
    model = rp.model(f"azure:{DEPLOYMENT}", base_url=server.base_url, api_key="azure-wrong-planted", http_client=client)
    with pytest.raises(rp.AuthError, match="Access denied") as info:
        classify(model)
    assert "azure-wrong-planted" not in str(info.value)
    assert "azure-wrong-planted" not in repr(info.value.run)


# ---------------------------------------------------------------- the server's own shapes


def test_replies_and_openai_shaped_errors_match_the_spec() -> None:
    reply = json.loads(azure_chat_reply('{"a":1}').body)
    assert openapi_errors(reply, "CreateChatCompletionResponse") == []
    assert reply["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    filtered = json.loads(content_filtered().body)["error"]
    assert filtered["code"] == "content_filter" and filtered["innererror"]["code"] == "ResponsibleAIPolicyViolation"


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        (deployment_not_found(), 404, "DeploymentNotFound"),
        (resource_not_found(), 404, "404"),
        (rate_limited(), 429, "429"),
    ],
)
def test_gateway_errors_have_azures_shape(reply: Any, status: int, code: str) -> None:
    body = json.loads(reply.body)
    assert reply.status == status
    assert set(body["error"]) == {"code", "message"} and body["error"]["code"] == code


def test_the_server_checks_path_version_and_key(server: AzureServer, client: httpx.Client) -> None:
    body = {"model": DEPLOYMENT, "messages": [{"role": "user", "content": "hi"}]}
    url = f"{server.base_url}/openai/deployments/{DEPLOYMENT}/chat/completions"
    server.enqueue(azure_chat_reply("hi"))
    assert client.post(url, json=body, headers={"api-key": KEY}).status_code == 404  # no api-version
    assert client.post(f"{url}?api-version=2024-10-21", json=body).status_code == 401
    wrong_path = f"{server.base_url}/openai/chat/completions?api-version=2024-10-21"
    assert client.post(wrong_path, json=body, headers={"api-key": KEY}).json()["error"]["message"] == (
        "Resource not found"
    )
    ok = client.post(f"{url}?api-version=2024-10-21", json=body, headers={"api-key": KEY})
    assert ok.status_code == 200 and "apim-request-id" in ok.headers
