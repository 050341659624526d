"""Mistral's Chat Completions (`POST https://api.mistral.ai/v1/chat/completions`): OpenAI's wire with a few renames.

Output modes, best first, as on OpenAI: `response_format` json_schema `{name, schema, strict: true}`, a forced
strict function call, `json_object` (the schema in the prompt, as Mistral's docs require), or prompted. What
differs (PROVIDERS.md §6 and Mistral's SDK): the body names are `max_tokens` and `random_seed` and unknown fields
are refused (422); `finish_reason` adds `model_length` (the context ran out) and `error`; reasoning models answer
with a list of content chunks (thinking, then text); errors come as `{"object": "error", "message", "type",
"param", "code"}` (an unknown model is a 400 `invalid_model`, observed), as FastAPI's `{"detail": ...}` for a
refused body or a bad key, or as a bare `{"message": ...}` from the gateway (rate limits, observed).

Schemas go through OpenAI's strict transform unchanged: Mistral's strict mode documents only closed objects (its
SDK sets `additionalProperties: false` everywhere) and rejects `$schema`/`$id` (observed), and the OpenAI subset
(closed objects, every property required, no unsupported keywords) is a subset of what it accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from robustprompt._completion import Completion
from robustprompt._errors import (
    ContextLengthError,
    ModelNotFoundError,
    ProviderError,
    SchemaRejectedError,
    ServerError,
)
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, Prompt
from robustprompt.adapters import Endpoint, HttpCall
from robustprompt.adapters._common import error_for_status, provider_error, retry_after
from robustprompt.adapters.openai import OpenAIChatAdapter, OpenAIChatStream

__all__ = ["MistralAdapter", "MistralStream"]

_MODES = (OutputMode.JSON_SCHEMA, OutputMode.TOOL_CALL, OutputMode.JSON_OBJECT, OutputMode.PROMPTED)
_RENAMED = {"max_completion_tokens": "max_tokens", "seed": "random_seed"}
_FINISH = {"model_length": "length"}  # the rest is OpenAI's vocabulary
_SCHEMA = re.compile(r"schema|response_format", re.IGNORECASE)
_CONTEXT = re.compile(r"context length|too large for model|too many tokens", re.IGNORECASE)


class MistralAdapter(OpenAIChatAdapter):
    provider: ClassVar[str] = "mistral"
    default_base_url: ClassVar[str] = "https://api.mistral.ai/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ()  # never OpenAI's variable: pass base_url= for a proxy
    api_key_env: ClassVar[tuple[str, ...]] = ("MISTRAL_API_KEY",)
    batch_path: ClassVar[str | None] = None  # Mistral's batch API is not OpenAI's (not in PROVIDERS.md §8)
    api_key_required: ClassVar[bool] = True
    otel_provider: ClassVar[str] = "mistral_ai"
    stream_usage: ClassVar[bool] = False  # `stream_options` is refused (422 extra_forbidden); usage comes anyway

    def stream_decoder(self, profile: ModelProfile) -> MistralStream:
        return MistralStream(self, profile)

    def default_profile(self, model_id: str) -> ModelProfile:
        return ModelProfile(self.provider, model_id, modes=_MODES, context_window=128_000, max_output_tokens=16_384)

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        call = super().prepare(prompt, replace(profile, system_role="system"), settings, endpoint)  # no `developer`
        return replace(call, body={_RENAMED.get(key, key): value for key, value in call.body.items()})

    def read(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> Completion:
        if 200 <= status < 300:
            if _failed_mid_answer(body):
                raise _generation_failed(self, profile, body)  # as the stream reports it
            body = _as_openai(body)
        return super().read(status, headers, body, profile)

    def _error(
        self, status: int, headers: Mapping[str, str], data: Any, body: bytes, profile: ModelProfile
    ) -> ProviderError:
        message = _message(data) or f"HTTP {status}"
        kind = data.get("type") if isinstance(data, dict) else None
        code = data.get("code") if isinstance(data, dict) else None
        cls = error_for_status(status, headers)
        if (
            kind == "invalid_model"
            or message.startswith("Invalid model")
            or (status == 404 and "model" in message.lower())
        ):
            cls = ModelNotFoundError
        elif status in (400, 422) and _SCHEMA.search(message):
            cls = SchemaRejectedError
        elif status in (400, 422) and _CONTEXT.search(message):
            cls = ContextLengthError
        return provider_error(
            cls,
            message,
            self.provider,
            profile.model_id,
            status,
            body,
            code=None if code is None else str(code),
            retry_after=retry_after(headers),
        )


class MistralStream(OpenAIChatStream):
    """Mistral's SSE (PROVIDERS.md §11.6): OpenAI's chunks and `[DONE]`, but `delta.content` may be a list of
    chunks (thinking, then text), a tool call arrives whole in one delta (several may share one, `index` may be
    missing: the first is the forced call), usage rides on the last content chunk, and `model_length` ends a
    context that ran out. Errors in the stream are read in Mistral's own shapes."""

    def _read(self, chunk: dict[str, Any]) -> list[str]:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("content"), list):
                    delta["content"] = _text_of(delta["content"])
                calls = [c for c in delta.get("tool_calls") or () if isinstance(c, dict)]
                if calls:
                    delta["tool_calls"] = [{**calls[0], "index": 0, "function": _string_arguments(calls[0])}]
            if choice.get("finish_reason") == "error":
                raise _generation_failed(self._adapter, self._profile, json.dumps(chunk).encode())
            reason = choice.get("finish_reason")
            choice["finish_reason"] = _FINISH.get(str(reason), reason)
        return super()._read(chunk)

    def _error(self, chunk: dict[str, Any], data: str) -> ProviderError:
        err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
        return self._adapter._error(500, {}, err, data.encode(), self._profile)


def _generation_failed(adapter: OpenAIChatAdapter, profile: ModelProfile, body: bytes) -> ProviderError:
    # `finish_reason: "error"`: the model failed mid-answer; what came before it is not an answer.
    message = "the model stopped with finish_reason 'error'"
    return provider_error(ServerError, message, adapter.provider, profile.model_id, 200, body)


def _failed_mid_answer(body: bytes) -> bool:
    try:
        return bool(json.loads(body)["choices"][0]["finish_reason"] == "error")
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def _text_of(content: list[Any]) -> str:
    # Reasoning models answer [{"type": "thinking", ...}, {"type": "text", "text": ...}]; only text answers.
    return "".join(str(c.get("text", "")) for c in content if isinstance(c, dict) and c.get("type") == "text")


def _string_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    if not isinstance(function.get("arguments"), str):
        function["arguments"] = json.dumps(function.get("arguments"))
    return function


def _as_openai(body: bytes) -> bytes:
    """The response in OpenAI's vocabulary: chunked content joined into text, tool arguments as a JSON string,
    `model_length` as `length`. A body that is not a readable chat completion is passed on for the OpenAI reader
    to report."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return body
    if isinstance(message.get("content"), list):
        message["content"] = _text_of(message["content"])
    for call in message.get("tool_calls") or ():
        call["function"] = _string_arguments(call)
    choice["finish_reason"] = _FINISH.get(choice.get("finish_reason"), choice.get("finish_reason"))
    return json.dumps(data).encode()


def _message(data: Any) -> str:
    """The error text in any of Mistral's shapes; FastAPI's validation details as "body.field: problem"."""
    if not isinstance(data, dict):
        return ""
    text = data.get("message", data.get("detail"))
    if isinstance(text, dict):  # {"object": "error", "message": {"detail": [...]}, ...}
        text = text.get("detail", text)
    if isinstance(text, list):
        return "; ".join(_detail(item) for item in text)
    return "" if text is None else str(text)


def _detail(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", ()))
    return f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", ""))
