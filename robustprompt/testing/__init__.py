"""Test doubles, loopback servers for each provider API (with its test kit: `kit(provider)`), and a
fault-injecting provider.

Every server speaks its API's real wire format (success and error bodies), answers from a script of replies,
and records what it received. `cassette(path)` records a run's real HTTP exchanges once, keys scrubbed, and
replays them offline; the pytest fixture `rp_cassette` does the same per test.
"""

from robustprompt.testing._anthropic_server import AnthropicServer
from robustprompt.testing._azure_server import AzureServer
from robustprompt.testing._batch_servers import AnthropicBatchServer, AzureBatchServer, OpenAIBatchServer
from robustprompt.testing._bedrock_server import BedrockServer
from robustprompt.testing._cassette import Cassette, CassetteError, cassette
from robustprompt.testing._cohere_server import CohereServer
from robustprompt.testing._doubles import FunctionModel, ScriptedModel
from robustprompt.testing._faults import Fault, FaultPlan, FaultServer, answer_from
from robustprompt.testing._gemini_server import GeminiServer
from robustprompt.testing._kits import KITS, ProviderKit, kit
from robustprompt.testing._mistral_server import MistralServer
from robustprompt.testing._ollama_server import OllamaServer
from robustprompt.testing._openai_server import OpenAIServer
from robustprompt.testing._responses_server import ResponsesServer
from robustprompt.testing._server import LoopbackServer, Received, Reply

__all__ = [
    "KITS",
    "AnthropicBatchServer",
    "AnthropicServer",
    "AzureBatchServer",
    "AzureServer",
    "BedrockServer",
    "Cassette",
    "CassetteError",
    "CohereServer",
    "Fault",
    "FaultPlan",
    "FaultServer",
    "FunctionModel",
    "GeminiServer",
    "LoopbackServer",
    "MistralServer",
    "OllamaServer",
    "OpenAIBatchServer",
    "OpenAIServer",
    "ProviderKit",
    "Received",
    "Reply",
    "ResponsesServer",
    "ScriptedModel",
    "answer_from",
    "cassette",
    "kit",
]
