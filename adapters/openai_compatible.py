"""Servers that speak OpenAI's Chat Completions: llama.cpp, llama-cpp-python, vLLM, Groq, Together, OpenRouter...

The Chat Completions body, with what third parties accept (PROVIDERS.md §1.1, §1.6, §5.2, §6): the `system` role
(many reject `developer`) and `max_tokens` (many ignore or reject `max_completion_tokens`). Output modes, best first:
the nested `json_schema` response format, then `{"type": "json_object", "schema": ...}` (the llama.cpp and
llama-cpp-python convention: constrained decoding where the server knows it, plain JSON mode elsewhere), then
prompted. Support varies by server and version, so a server that rejects a response format downgrades the mode:
a 400 or 422 that names the response format, or llama-cpp-python's request-validation error, which it sends as a
500 (observed: `{"error": {"message": "1 validation error: ... 'loc': ('body', 'response_format', 'type') ...",
"type": "internal_server_error"}}`).

A vendor that speaks this wire (Groq, Together, OpenRouter...) is an entry in the catalog (`_catalog.Vendor`), not
a module: `for_vendor` makes its adapter, with the entry's address, key variable and quirks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from robustprompt._catalog import Vendor
from robustprompt._errors import BadRequestError, ProviderError, SchemaRejectedError
from robustprompt._grammar_schema import every_field_reachable
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, Prompt
from robustprompt.adapters import Endpoint, HttpCall
from robustprompt.adapters._common import PerSpec
from robustprompt.adapters.openai import OpenAIChatAdapter

__all__ = ["OpenAICompatibleAdapter"]

_MODES = (OutputMode.JSON_SCHEMA, OutputMode.JSON_OBJECT, OutputMode.PROMPTED)
_GRAMMAR_SCHEMAS: PerSpec[dict[str, Any]] = PerSpec()
_FORMAT_NAMED = re.compile(r"response[_ ]format", re.IGNORECASE)
# llama-cpp-python refuses a body with pydantic's wording, in a 500: "1 validation error: {... 'loc': ('body',
# 'response_format', 'type') ...}". Only the location counts: the message also echoes the refused input.
_VALIDATION = re.compile(r"\d+ validation errors?:")
_FORMAT_LOCATION = re.compile(r"'loc': \('body', 'response_format'")


class OpenAICompatibleAdapter(OpenAIChatAdapter):
    provider: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str] = ""  # the server's .../v1 address
    base_url_env: ClassVar[tuple[str, ...]] = ("OPENAI_COMPATIBLE_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_COMPATIBLE_API_KEY",)
    api_key_required: ClassVar[bool] = False
    vendor: ClassVar[Vendor | None] = None
    batch_path: ClassVar[str | None] = None  # a server of this wire has no Batch API unless it says so

    @classmethod
    def for_vendor(cls, vendor: Vendor) -> type[OpenAICompatibleAdapter]:
        """The adapter class of a vendor declared in the catalog."""
        attributes = {
            "provider": vendor.provider,
            "default_base_url": vendor.base_url,
            "base_url_env": vendor.base_url_env,
            "api_key_env": vendor.api_key_env,
            "api_key_required": True,
            "vendor": vendor,
        }
        return type(f"{cls.__name__}[{vendor.provider}]", (cls,), attributes)

    stream_usage: ClassVar[bool] = False  # PROVIDERS.md §11.6, §11.10: rejected or unknown there

    def default_profile(self, model_id: str) -> ModelProfile:
        modes = self.vendor.modes if self.vendor is not None and self.vendor.modes else _MODES
        return ModelProfile(self.provider, model_id, modes=modes)

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        call = super().prepare(prompt, replace(profile, system_role="system"), settings, endpoint)
        body = dict(call.body)
        if "max_completion_tokens" in body:
            body["max_tokens"] = body.pop("max_completion_tokens")
        if prompt.mode is OutputMode.JSON_OBJECT:
            # The schema is in the prompt already; here it also constrains decoding on servers that read it.
            # Every field reachable, so a decoding grammar cannot close the object before an optional one.
            schema = _GRAMMAR_SCHEMAS.get(prompt.output, lambda: every_field_reachable(prompt.output.schema))
            body["response_format"] = {"type": "json_object", "schema": schema}
        if self.vendor is not None:
            body.update(self.vendor.extra_body)
        return replace(call, body=body)

    def _error(
        self, status: int, headers: Mapping[str, str], data: Any, body: bytes, profile: ModelProfile
    ) -> ProviderError:
        err = super()._error(status, headers, data, body, profile)
        # The parsed message in full, and the raw body for servers with another error shape (FastAPI's `detail`).
        text = f"{err.message}\n{err.body or ''}"
        if status in (400, 422) and _FORMAT_NAMED.search(text):
            return err.recast(SchemaRejectedError)
        if status == 500 and _VALIDATION.search(text):
            # A body the server's validation refused: the same request would fail again, so not retryable.
            cls = SchemaRejectedError if _FORMAT_LOCATION.search(text) else BadRequestError
            return err.recast(cls)
        return err
