"""A loopback server that answers like Azure OpenAI chat completions on a deployment, for tests with no network.

`base_url` is the resource URL (as `https://{resource}.openai.azure.com` would be); requests go to
`/openai/deployments/{deployment}/chat/completions?api-version=...` with an `api-key` header:

    with AzureServer(api_key="azure-key", deployments=["gpt-4o-prod"]) as server:
        server.enqueue(azure_chat_reply('{"answer": 42}'))

The model's own errors keep OpenAI's shape (the builders of `_openai_server` serve); Azure's gateway answers in
its own `{"error": {"code", "message"}}` shape: a 401 for a wrong key, a 404 `DeploymentNotFound` for an unknown
deployment, a 404 "Resource not found" for a missing or unknown api-version or path, a 429 with `retry-after-ms`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs

from robustprompt.testing._openai_server import OpenAIWire, chat_reply
from robustprompt.testing._server import Headers, LoopbackServer, Received, Reply, json_reply

__all__ = [
    "API_VERSIONS",
    "AzureServer",
    "AzureWire",
    "azure_chat_reply",
    "azure_error",
    "content_filtered",
    "deployment_not_found",
    "gateway_refusal",
    "is_deployment_call",
    "rate_limited",
    "resource_not_found",
]

# Inference versions the server knows; any other gets Azure's 404, as an unknown version does.
API_VERSIONS = frozenset({"2024-10-21", "2024-12-01-preview", "2025-01-01-preview", "2025-04-01-preview"})
_PATH = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions")
_NO_FILTER = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
_FILTER_DOCS = "https://go.microsoft.com/fwlink/?linkid=2198766"


def azure_chat_reply(content: str | None, **chat: Any) -> Reply:
    """A chat completion as Azure sends it: OpenAI's body plus the content-filter annotations.
    Takes `chat_reply`'s arguments."""
    reply = chat_reply(content, **chat)
    payload = json.loads(reply.body)
    payload["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _NO_FILTER}]
    for choice in payload["choices"]:
        choice["content_filter_results"] = _NO_FILTER
    return json_reply(reply.status, payload, reply.headers)


def azure_error(status: int, code: str, message: str, headers: Headers = ()) -> Reply:
    """An error from Azure's gateway: `{"error": {"code", "message"}}`, no type or param."""
    return json_reply(status, {"error": {"code": code, "message": message}}, headers)


def deployment_not_found() -> Reply:
    """404 for a deployment name the resource does not have."""
    message = (
        "The API deployment for this resource does not exist. If you created the deployment within the last "
        "5 minutes, please wait a moment and try again."
    )
    return azure_error(404, "DeploymentNotFound", message)


def resource_not_found() -> Reply:
    """404 for a wrong path, or a missing or unknown api-version."""
    return azure_error(404, "404", "Resource not found")


def rate_limited(retry_after: int = 1, *, api_version: str = "2025-04-01-preview") -> Reply:
    """429 with Azure's wording, `retry-after` in seconds and `retry-after-ms`."""
    message = (
        f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {api_version} have "
        "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after "
        f"{retry_after} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
        "increase the default rate limit."
    )
    headers = [
        ("retry-after", str(retry_after)),
        ("retry-after-ms", str(retry_after * 1000)),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-remaining-tokens", "0"),
    ]
    return azure_error(429, "429", message, headers)


def content_filtered(category: str = "violence") -> Reply:
    """400 when Azure's content filter blocks the prompt: OpenAI's shape plus Azure's `innererror`."""
    results = {**_NO_FILTER, category: {"filtered": True, "severity": "medium"}}
    message = (
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please "
        f"modify your prompt and retry. To learn more about our content filtering policies please read our "
        f"documentation: {_FILTER_DOCS}"
    )
    error = {
        "message": message,
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": results},
    }
    return json_reply(400, {"error": error})


class AzureWire(OpenAIWire):
    """Azure's deployment path, `api-key` auth and gateway error shapes."""

    base_path: ClassVar[str] = ""
    response_headers: ClassVar[Mapping[str, str]] = {"apim-request-id": "00000000-0000-0000-0000-000000000000"}

    def serves(self, method: str, path: str) -> bool:
        return method == "POST" and is_deployment_call(path)

    def authorized(self, received: Received, api_key: str) -> bool:
        return received.headers.get("api-key") == api_key

    def unauthorized(self) -> Reply:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
            "for an active subscription and use a correct regional API endpoint for your resource."
        )
        return azure_error(401, "401", message)

    def not_found(self, method: str, path: str) -> Reply:
        return resource_not_found()


class AzureServer(LoopbackServer):
    """Azure OpenAI on 127.0.0.1; `deployments` limits the known deployment names (None: any name)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        deployments: Iterable[str] | None = None,
        api_versions: Collection[str] = API_VERSIONS,
        check: Callable[[Any], list[str]] | None = None,
        responder: Callable[[Received], Reply] | None = None,
    ) -> None:
        super().__init__(AzureWire(), api_key=api_key, check=check, responder=responder)
        self.deployments = None if deployments is None else frozenset(deployments)
        self.api_versions = api_versions

    def next_reply(self, received: Received) -> Reply:
        return gateway_refusal(received, self.api_versions, self.deployments) or super().next_reply(received)


def gateway_refusal(
    received: Received, api_versions: Collection[str], deployments: frozenset[str] | None
) -> Reply | None:
    """Azure checks the version and the deployment before the model sees the request: its refusal, if any."""
    versions = parse_qs(received.query).get("api-version", [])
    if len(versions) != 1 or versions[0] not in api_versions:
        return resource_not_found()
    match = _PATH.fullmatch(received.path)
    if deployments is not None and match is not None and match["deployment"] not in deployments:
        return deployment_not_found()
    return None


def is_deployment_call(path: str) -> bool:
    """Whether `path` is a deployment's chat completions path."""
    return _PATH.fullmatch(path) is not None
