"""Cohere's Chat API v2 (`POST https://api.cohere.com/v2/chat`).

Output modes, best first: `response_format: {"type": "json_object", "json_schema": ...}` (the field is
`json_schema`; older guides said `schema`), plain `{"type": "json_object"}` (the schema in the prompt, which the
docs require), or prompted. A forced tool call is not offered: `strict_tools` is experimental and not on every
model. Facts that matter (PROVIDERS.md §6; docs.cohere.com errors reference): the answer is the text items of
`message.content` (reasoning models add "thinking" items); `finish_reason` is COMPLETE, STOP_SEQUENCE,
MAX_TOKENS, TOOL_CALL, ERROR or TIMEOUT; usage is `billed_units` (what is charged) beside `tokens`; errors are
`{"message": ...}`, with 402 for a spent billing limit (permanent), 404 "model 'x' not found", 400 "too many
tokens: ..." when the prompt does not fit, and 499 for a cancelled request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from robustprompt._completion import Completion, Usage
from robustprompt._errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    ContextLengthError,
    ModelNotFoundError,
    ProviderError,
    QuotaExceededError,
    SchemaRejectedError,
    ServerError,
)
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, Prompt
from robustprompt.adapters import Endpoint, HttpCall
from robustprompt.adapters._cohere_schema import to_cohere_schema
from robustprompt.adapters._common import SseEventReader, error_for_status, json_body, provider_error, retry_after

__all__ = ["CohereAdapter", "CohereStream"]

_MODES = (OutputMode.JSON_SCHEMA, OutputMode.JSON_OBJECT, OutputMode.PROMPTED)
_FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "TOOL_CALL": "stop", "MAX_TOKENS": "length"}
# Refusals of the output contract: the schema's own rules ("schema must be an object", "property title must have
# a type", "required field name not found in properties") or the response format in this context.
_SCHEMA = re.compile(r"schema|response_format|propert", re.IGNORECASE)
# Statuses the shared mapping does not know: 402 billing limit reached, 498 invalid token, 499 request cancelled.
_STATUS = {402: QuotaExceededError, 498: AuthError, 499: ServerError}


class CohereAdapter:
    provider: ClassVar[str] = "cohere"
    default_base_url: ClassVar[str] = "https://api.cohere.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("CO_API_URL",)  # the official SDKs' variable
    api_key_env: ClassVar[tuple[str, ...]] = ("CO_API_KEY",)
    api_key_required: ClassVar[bool] = True

    def default_profile(self, model_id: str) -> ModelProfile:
        return ModelProfile(self.provider, model_id, modes=_MODES, context_window=128_000, max_output_tokens=4_000)

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        messages = [{"role": "system", "content": prompt.system}]
        messages += [{"role": m.role, "content": m.content} for m in prompt.messages]
        body: dict[str, Any] = {"model": profile.model_id, "messages": messages, "stream": False}
        if (response_format := _response_format(prompt, profile)) is not None:
            body["response_format"] = response_format
        sampling = {
            "max_tokens": settings.max_output_tokens,
            "temperature": settings.temperature,
            "seed": settings.seed,
        }
        body.update({name: value for name, value in sampling.items() if value is not None})
        headers = {"content-type": "application/json", "accept": "application/json"}
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        return HttpCall("POST", f"{endpoint.base_url}/v2/chat", headers, body)

    def prepare_stream(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        call = self.prepare(prompt, profile, settings, endpoint)
        headers = {**call.headers, "accept": "text/event-stream"}
        return HttpCall(call.method, call.url, headers, {**call.body, "stream": True})

    def stream_decoder(self, profile: ModelProfile) -> CohereStream:
        return CohereStream(self, profile)

    def read(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> Completion:
        data = json_body(body, provider=self.provider, model=profile.model_id, status=status)
        if not 200 <= status < 300:
            raise self._error(status, headers, data, body, profile)
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            raise provider_error(
                BadRequestError, "response has no message", self.provider, profile.model_id, status, body
            )
        items = message.get("content") or []
        text = "".join(item.get("text", "") for item in items if isinstance(item, dict) and item.get("type") == "text")
        return Completion(
            text=text,
            finish_reason=_FINISH.get(data.get("finish_reason") or "COMPLETE", "other"),
            usage=_usage(data.get("usage")),
        )

    def _error(
        self, status: int, headers: Mapping[str, str], data: Any, body: bytes, profile: ModelProfile
    ) -> ProviderError:
        text = data.get("message") if isinstance(data, dict) else None
        message = str(text or f"HTTP {status}")
        cls = _STATUS.get(status) or error_for_status(status, headers)
        if status == 404 and "model" in message.lower():
            cls = ModelNotFoundError
        elif status == 400 and message.startswith("too many tokens"):
            cls = ContextLengthError
        elif status in (400, 422) and _SCHEMA.search(message):
            cls = SchemaRejectedError
        return provider_error(
            cls, message, self.provider, profile.model_id, status, body, retry_after=retry_after(headers)
        )


def _response_format(prompt: Prompt, profile: ModelProfile) -> dict[str, Any] | None:
    if prompt.mode is OutputMode.JSON_SCHEMA:
        return {"type": "json_object", "json_schema": to_cohere_schema(prompt.output.schema)}
    if prompt.mode is OutputMode.JSON_OBJECT:
        return {"type": "json_object"}
    if prompt.mode is OutputMode.PROMPTED:
        return None
    raise ConfigError(
        f"output mode {prompt.mode.value!r} is not available on {profile.name}; "
        f"choose one of {', '.join(m.value for m in _MODES)}"
    )


def _usage(usage: Any) -> Usage | None:
    """Billed units when given (what Cohere charges), else the raw token counts (which include its prompt
    template)."""
    if not isinstance(usage, dict):
        return None
    billed = usage.get("billed_units") or {}
    tokens = usage.get("tokens") or {}
    source = billed if "input_tokens" in billed or "output_tokens" in billed else tokens
    return Usage(int(source.get("input_tokens") or 0), int(source.get("output_tokens") or 0))


class CohereStream(SseEventReader):
    """v2 chat SSE (PROVIDERS.md §11.7): named events, text in `content-delta` (`delta.message.content.text`;
    thinking deltas are not the answer), then `message-end` with the finish reason and usage, then a bare
    `data: [DONE]`. `message-end` with `finish_reason: "ERROR"` and `delta.error` is a failure mid-answer: the
    server's fault, as a 500 would be."""

    def __init__(self, adapter: CohereAdapter, profile: ModelProfile) -> None:
        super().__init__(adapter.provider, profile.model_id)
        self._adapter = adapter
        self._profile = profile
        self._text: list[str] = []
        self._end: dict[str, Any] | None = None

    def _ended(self) -> bool:
        return self._end is not None

    def _payload(self, payload: dict[str, Any], data: str) -> list[str]:
        delta = payload.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        if payload.get("type") == "message-end":
            if delta.get("finish_reason") == "ERROR" or delta.get("error"):
                message = {"message": str(delta.get("error") or "the answer failed (finish_reason ERROR)")}
                raise self._adapter._error(500, {}, message, data.encode(), self._profile)
            self._end = delta
            return []
        if payload.get("type") != "content-delta":
            return []
        content = (delta.get("message") or {}).get("content")
        text = content.get("text") if isinstance(content, dict) else None
        if not isinstance(text, str) or not text:
            return []
        self._text.append(text)
        return [text]

    def finish(self) -> Completion:
        if self._end is None:
            self._pending()
            raise self._cut("the stream ended before `message-end`")
        return Completion(
            text="".join(self._text),
            finish_reason=_FINISH.get(str(self._end.get("finish_reason") or "COMPLETE"), "other"),
            usage=_usage(self._end.get("usage")),
        )
