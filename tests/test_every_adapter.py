"""One task through every adapter: each loopback server speaks its API's wire format and checks each request
body as that API would; the same answer must come back as the same validated object from all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import robustprompt as rp
from robustprompt.testing import (
    AnthropicServer,
    AzureServer,
    BedrockServer,
    CohereServer,
    GeminiServer,
    LoopbackServer,
    MistralServer,
    OllamaServer,
    OpenAIServer,
    Received,
    Reply,
    ResponsesServer,
)
from robustprompt.testing import _anthropic_server as anthropic
from robustprompt.testing import _azure_server as azure
from robustprompt.testing import _bedrock_server as bedrock
from robustprompt.testing import _cohere_server as cohere
from robustprompt.testing import _gemini_server as gemini
from robustprompt.testing import _mistral_server as mistral
from robustprompt.testing import _ollama_server as ollama
from robustprompt.testing import _openai_server as openai
from robustprompt.testing import _responses_server as responses
from tests import ollama_spec, spec_check, test_anthropic, test_bedrock, test_cohere, test_gemini, test_mistral
from tests import test_openai_responses as test_responses
from tests.models import Person, Review, Sentiment, classify_task

KEY = "sk-every-adapter-planted"
ANSWER = '{"label":"negative"}'


@dataclass(frozen=True)
class Case:
    model: str
    server: Callable[[Callable[[Received], Reply]], LoopbackServer]
    reply: Callable[[str], Reply]


CASES = {
    "openai": Case(
        "openai:gpt-4.1-mini",
        lambda r: OpenAIServer(api_key=KEY, check=spec_check.chat_request_violations, responder=r),
        openai.chat_reply,
    ),
    "openai-responses": Case(
        "openai-responses:gpt-4.1-mini",
        lambda r: ResponsesServer(api_key=KEY, check=test_responses.responses_request_violations, responder=r),
        responses.response_reply,
    ),
    "azure": Case(
        "azure:gpt-4.1-mini",
        lambda r: AzureServer(api_key=KEY, check=spec_check.chat_request_violations, responder=r),
        azure.azure_chat_reply,
    ),
    "anthropic": Case(
        "anthropic:claude-sonnet-4-5",
        lambda r: AnthropicServer(api_key=KEY, check=test_anthropic.messages_request_violations, responder=r),
        anthropic.message_reply,
    ),
    "gemini": Case(
        "gemini:gemini-flash-latest",
        lambda r: GeminiServer(api_key=KEY, check=test_gemini.gemini_request_violations, responder=r),
        gemini.generate_reply,
    ),
    "ollama": Case(
        "ollama:llama3.2",
        lambda r: OllamaServer(check=ollama_spec.chat_request_violations, responder=r),
        ollama.chat_reply,
    ),
    "mistral": Case(
        "mistral:mistral-small-2506",
        lambda r: MistralServer(api_key=KEY, check=test_mistral.chat_request_violations, responder=r),
        mistral.chat_reply,
    ),
    "cohere": Case(
        "cohere:command-a-03-2025",
        lambda r: CohereServer(api_key=KEY, check=test_cohere.chat_request_violations, responder=r),
        cohere.chat_reply,
    ),
    "bedrock": Case(
        "bedrock:global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        lambda r: BedrockServer(bearer_token=KEY, check=test_bedrock.converse_request_violations, responder=r),
        bedrock.converse_reply,
    ),
}


def _run(case: Case, client: httpx.Client, task: rp.Task[Any, Any], value: Any, answer: str) -> tuple[Any, Any]:
    with case.server(lambda received: case.reply(answer)) as server:
        model = rp.model(case.model, base_url=server.base_url, api_key=KEY, http_client=client, max_output_tokens=300)
        run = task.run(value, model=model)
    assert run.attempts[0].ok, run.attempts[0].errors
    return run.output, run.mode


@pytest.mark.parametrize("provider", CASES)
def test_the_same_task_gives_the_same_validated_output_on_every_adapter(provider: str, client: httpx.Client) -> None:
    output, mode = _run(CASES[provider], client, classify_task(), Review(text="Broke in a day."), ANSWER)
    assert output == Sentiment(label="negative")
    assert mode is rp.OutputMode.JSON_SCHEMA  # each model's best: its native structured output


@pytest.mark.parametrize("provider", CASES)
def test_a_nested_model_with_optional_fields_survives_every_dialect(provider: str, client: httpx.Client) -> None:
    task = rp.Task("person", input=str, output=Person, instructions="Extract the person.")
    answer = '{"name": "Ann", "age": 31, "nickname": null, "tags": ["engineer"]}'
    output, _ = _run(CASES[provider], client, task, "Ann, 31, engineer", answer)
    assert output == Person(name="Ann", age=31, tags=["engineer"])
