"""One task through every adapter the registry names, each against its provider's test kit: the loopback server
speaks the API's wire format and checks each request body as the API would; the same answer must come back as
the same validated object from all of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

import robustprompt as rp
from robustprompt.adapters import _registry
from robustprompt.testing import KITS, Received, Reply, kit
from tests import ollama_spec, spec_check, test_anthropic, test_bedrock, test_cohere, test_gemini, test_mistral
from tests import test_openai_responses as test_responses
from tests.models import Person, Review, Sentiment, classify_task

KEY = "sk-every-adapter-planted"
ANSWER = '{"label":"negative"}'

# The providers robustprompt reaches over HTTP: every adapter in the registry but those running in process.
PROVIDERS = sorted(name for name in _registry.BUILTIN if not _registry.telemetry(name).in_process)

# What each real API refuses in a request body (from its pinned spec, or PROVIDERS.md where none is published).
CHECKS: dict[str, Callable[[Any], list[str]]] = {
    "openai": spec_check.chat_request_violations,
    "openai-responses": test_responses.responses_request_violations,
    "openai-compatible": spec_check.chat_request_violations,
    "azure": spec_check.chat_request_violations,
    "anthropic": test_anthropic.messages_request_violations,
    "gemini": test_gemini.gemini_request_violations,
    "ollama": ollama_spec.chat_request_violations,
    "mistral": test_mistral.chat_request_violations,
    "cohere": test_cohere.chat_request_violations,
    "bedrock": test_bedrock.converse_request_violations,
}


def test_every_provider_in_the_registry_has_a_test_kit_and_a_request_check() -> None:
    assert sorted(KITS) == PROVIDERS
    assert sorted(CHECKS) == PROVIDERS
    assert all(kit(provider).model_name.startswith(f"{provider}:") for provider in PROVIDERS)
    with pytest.raises(rp.ConfigError, match="no test kit for provider 'openia'; kits: anthropic, azure"):
        kit("openia")


def _run(provider: str, client: httpx.Client, task: rp.Task[Any, Any], value: Any, answer: str) -> tuple[Any, Any]:
    provider_kit = kit(provider)

    def responder(received: Received) -> Reply:
        return provider_kit.reply(answer)

    with provider_kit.server(api_key=KEY, check=CHECKS[provider], responder=responder) as server:
        model = provider_kit.model(server, api_key=KEY, http_client=client, max_output_tokens=300)
        run = task.run(value, model=model)
    assert server.requests and all(CHECKS[provider](received.body) == [] for received in server.requests)
    assert run.attempts[0].ok, run.attempts[0].errors
    return run.output, run.mode


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_same_task_gives_the_same_validated_output_on_every_adapter(provider: str, client: httpx.Client) -> None:
    output, mode = _run(provider, client, classify_task(), Review(text="Broke in a day."), ANSWER)
    assert output == Sentiment(label="negative")
    assert mode is rp.OutputMode.JSON_SCHEMA  # each model's best: its native structured output


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_nested_model_with_optional_fields_survives_every_dialect(provider: str, client: httpx.Client) -> None:
    task = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    answer = '{"name": "Ann", "age": 31, "nickname": null, "tags": ["engineer"]}'
    output, _ = _run(provider, client, task, "Ann, 31, engineer", answer)
    assert output == Person(name="Ann", age=31, tags=["engineer"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_kit_server_refuses_a_wrong_key_as_its_api_does(provider: str, client: httpx.Client) -> None:
    provider_kit = kit(provider)
    with provider_kit.server(api_key=KEY) as server:
        server.enqueue(provider_kit.reply(ANSWER))
        model = provider_kit.model(server, api_key="sk-wrong", http_client=client)
        with pytest.raises(rp.AuthError) as caught:
            classify_task().run(Review(text="x"), model=model, policy=rp.Policy(transport_retries=0))
    assert "sk-wrong" not in str(caught.value)


def test_a_kit_scripts_errors_in_the_apis_own_shape() -> None:
    anthropic = kit("anthropic")
    with anthropic.server(api_key="test-key") as server:
        server.enqueue(anthropic.replies.overloaded(), anthropic.reply('{"label": "positive"}'))
        model = anthropic.model(server, api_key="test-key")
        fast = rp.Policy(backoff_initial=0.01, backoff_max=0.02)
        assert classify_task()(Review(text="Loved it"), model=model, policy=fast) == Sentiment(label="positive")
        assert len(server.requests) == 2
