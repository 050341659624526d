"""Each provider's test kit, by the name the adapter registry gives it: the loopback server, its reply builders,
and a model the server answers for. The every-adapter tests iterate over them; a user's tests can too:

    kit = robustprompt.testing.kit("anthropic")
    with kit.server(api_key="k", responder=lambda received: kit.reply('{"label": "positive"}')) as server:
        output = classify(Review(text="Loved it"), model=kit.model(server, api_key="k"))
        server.enqueue(kit.replies.overloaded())  # every reply builder of the API: errors, limits, refusals
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from robustprompt._errors import ConfigError
from robustprompt._model import Model
from robustprompt._resolve import model
from robustprompt.testing import _anthropic_server as anthropic
from robustprompt.testing import _azure_server as azure
from robustprompt.testing import _bedrock_server as bedrock
from robustprompt.testing import _cohere_server as cohere
from robustprompt.testing import _gemini_server as gemini
from robustprompt.testing import _mistral_server as mistral
from robustprompt.testing import _ollama_server as ollama
from robustprompt.testing import _openai_server as openai
from robustprompt.testing import _responses_server as responses
from robustprompt.testing._server import LoopbackServer, Received, Reply

__all__ = ["KITS", "ProviderKit", "kit"]

Check = Callable[[Any], list[str]]
Responder = Callable[[Received], Reply]


@dataclass(frozen=True)
class ProviderKit:
    """One provider's loopback test kit.

    `reply(text)` is a successful answer whose output text is `text`; `replies` is the module of every reply
    builder for the API (errors in its own shape, rate limits, refusals...). `model_name` names a model the
    server answers for.
    """

    provider: str
    model_name: str
    reply: Callable[[str], Reply]
    replies: types.ModuleType
    server_type: Callable[..., LoopbackServer]  # takes api_key=, check= and responder=

    def server(
        self, *, api_key: str | None = None, check: Check | None = None, responder: Responder | None = None
    ) -> LoopbackServer:
        """The API on 127.0.0.1 (a context manager). With `api_key` it refuses requests without that key, as the
        API would; `check(body)` lists what it must refuse in a request body with the API's 400; `responder`
        answers once the script (`enqueue`) is empty."""
        return self.server_type(api_key=api_key, check=check, responder=responder)

    def model(self, server: LoopbackServer, *, api_key: str | None = None, **options: Any) -> Model:
        """`rp.model(model_name)` pointed at `server`; `options` as `rp.model` takes them."""
        return model(self.model_name, base_url=server.base_url, api_key=api_key, **options)


def _bedrock_server(
    *, api_key: str | None = None, check: Check | None = None, responder: Responder | None = None
) -> LoopbackServer:
    # The key is a Bedrock API key (a bearer token); for SigV4 credentials, make a BedrockServer yourself.
    return bedrock.BedrockServer(bearer_token=api_key, check=check, responder=responder)


_KITS = {
    kit.provider: kit
    for kit in (
        ProviderKit("openai", "openai:gpt-4.1-mini", openai.chat_reply, openai, openai.OpenAIServer),
        ProviderKit(
            "openai-responses",
            "openai-responses:gpt-4.1-mini",
            responses.response_reply,
            responses,
            responses.ResponsesServer,
        ),
        # Any server speaking Chat Completions: OpenAI's wire format stands in for vLLM, llama.cpp and the rest.
        ProviderKit(
            "openai-compatible", "openai-compatible:qwen2.5-7b-instruct", openai.chat_reply, openai, openai.OpenAIServer
        ),
        ProviderKit("azure", "azure:gpt-4.1-mini", azure.azure_chat_reply, azure, azure.AzureServer),
        ProviderKit(
            "anthropic", "anthropic:claude-sonnet-4-5", anthropic.message_reply, anthropic, anthropic.AnthropicServer
        ),
        ProviderKit("gemini", "gemini:gemini-flash-latest", gemini.generate_reply, gemini, gemini.GeminiServer),
        ProviderKit("ollama", "ollama:llama3.2", ollama.chat_reply, ollama, ollama.OllamaServer),
        ProviderKit("mistral", "mistral:mistral-small-2506", mistral.chat_reply, mistral, mistral.MistralServer),
        ProviderKit("cohere", "cohere:command-a-03-2025", cohere.chat_reply, cohere, cohere.CohereServer),
        ProviderKit(
            "bedrock",
            "bedrock:global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            bedrock.converse_reply,
            bedrock,
            _bedrock_server,
        ),
    )
}


KITS: Mapping[str, ProviderKit] = types.MappingProxyType(_KITS)  # by provider name


def kit(provider: str) -> ProviderKit:
    """The test kit of `provider` (a name as in "provider:model"); a ConfigError naming the kits when none."""
    found = _KITS.get(provider)
    if found is None:
        raise ConfigError(f"no test kit for provider {provider!r}; kits: {', '.join(sorted(_KITS))}")
    return found
