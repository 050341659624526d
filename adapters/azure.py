"""Azure OpenAI chat completions on a deployment.

`POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...` with the `api-key` header; the
model id is the deployment name the user chose, and the body is OpenAI's Chat Completions body (PROVIDERS.md §6).
The API version comes from AZURE_OPENAI_API_VERSION, else `DEFAULT_API_VERSION`.

Errors beside OpenAI's own shapes (PROVIDERS.md §6, §7): 404 `DeploymentNotFound` for a wrong deployment name
(permanent), 404 "Resource not found" for a wrong endpoint path or api-version, 429 with `retry-after-ms`, and a
400 `content_filter` when Azure's filter blocks the prompt.

Its global batch is OpenAI's Batch flow at the resource's address: `/openai/files` and `/openai/batches` with the
`api-version` query and the `api-key` header, each line's `url` the deployment-relative `/chat/completions` and
its body's `model` the (global batch) deployment's name, as the live body already has it; up to 100,000 requests
and 200 MB per file, at half the global standard price.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from robustprompt import _catalog
from robustprompt._errors import ModelNotFoundError, ProviderError, RefusalError
from robustprompt._profile import ModelProfile
from robustprompt.adapters import Endpoint
from robustprompt.adapters._common import Headers
from robustprompt.adapters._openai_batch import OpenAIBatchWire
from robustprompt.adapters.openai import OpenAIChatAdapter

__all__ = ["API_VERSION_ENV", "DEFAULT_API_VERSION", "AzureBatchWire", "AzureOpenAIAdapter"]

API_VERSION_ENV = "AZURE_OPENAI_API_VERSION"
# The newest dated inference version in Azure's published specs. The GA 2024-10-21 predates
# `max_completion_tokens` (2024-09-01-preview) and the `developer` role (2024-12-01-preview), which reasoning
# deployments need and which the Chat Completions body uses.
DEFAULT_API_VERSION = "2025-04-01-preview"


class AzureOpenAIAdapter(OpenAIChatAdapter):
    provider: ClassVar[str] = "azure"
    default_base_url: ClassVar[str] = ""  # the resource URL, https://{resource}.openai.azure.com
    base_url_env: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_ENDPOINT",)
    api_key_env: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_API_KEY",)
    api_key_required: ClassVar[bool] = True
    otel_provider: ClassVar[str] = "azure.ai.openai"
    batch_path: ClassVar[str | None] = "/chat/completions"  # a batch line's url, relative to the deployment

    def __init__(self) -> None:
        super().__init__()
        self.api_version = os.environ.get(API_VERSION_ENV) or DEFAULT_API_VERSION

    def default_profile(self, model_id: str) -> ModelProfile:
        # Deployments are usually named after their model: then they have its capabilities (reasoning, system
        # role, modes), but Azure's prices and retirement schedule are its own, so those stay unknown.
        known = _catalog.lookup(f"openai:{model_id}")
        if known is None:
            return super().default_profile(model_id)
        return replace(
            known,
            provider=self.provider,
            input_price=None,
            output_price=None,
            deprecated=None,
            retired=None,
            replacement=None,
        )

    def batch_wire(self) -> AzureBatchWire:
        return AzureBatchWire(self.provider, "/chat/completions", self._headers, self.api_version)

    def _url(self, endpoint: Endpoint, profile: ModelProfile) -> str:
        deployment = quote(profile.model_id, safe="")
        query = urlencode({"api-version": self.api_version})
        return f"{endpoint.base_url}/openai/deployments/{deployment}/chat/completions?{query}"

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if endpoint.api_key:
            headers["api-key"] = endpoint.api_key
        return headers

    def _error(
        self, status: int, headers: Mapping[str, str], data: Any, body: bytes, profile: ModelProfile
    ) -> ProviderError:
        err = super()._error(status, headers, data, body, profile)
        if status == 404 and err.code == "DeploymentNotFound":
            message = f"{err.message} (deployment {profile.model_id!r}: check its name in the Azure portal)"
            return err.recast(ModelNotFoundError, message)
        if status == 404 and not isinstance(err, ModelNotFoundError):
            message = (
                f"{err.message}: check the resource URL (AZURE_OPENAI_ENDPOINT) and that api-version "
                f"{self.api_version!r} exists (set {API_VERSION_ENV})"
            )
            return err.recast(type(err), message)
        if status == 400 and err.code == "content_filter":
            return err.recast(RefusalError)
        return err


class AzureBatchWire(OpenAIBatchWire):
    """The global batch: OpenAI's Batch protocol at the resource's `/openai/...` address, with `api-version`."""

    name: ClassVar[str] = "Azure OpenAI global batch"
    max_requests: ClassVar[int] = 100_000

    def __init__(self, provider: str, path: str, headers: Headers, api_version: str) -> None:
        super().__init__(provider, path, headers)
        self._api_version = api_version

    def url(self, endpoint: Endpoint, resource: str, query: Mapping[str, str] | None = None) -> str:
        return f"{endpoint.base_url}/openai/{resource}?{urlencode({'api-version': self._api_version, **(query or {})})}"
