"""Anthropic Messages API (`POST /v1/messages`).

Output modes: native JSON outputs (`output_config.format`, GA for Claude 4.5 and later, no beta header), a
forced tool call, or prompted; there is no JSON mode. Facts that matter (PROVIDERS.md §3, §7):
- `max_tokens` is required and `system` is a top-level field; there is no seed parameter, so `Settings.seed`
  is not sent.
- Newer models reject assistant prefill, and prefill is incompatible with `output_config.format`: the
  conversation always ends with a user turn, and an empty assistant turn (which the API rejects) is filled in.
- Models that think by default (`profile.reasoning`: Opus 4.7 and later, Sonnet 5 and later) reject sampling
  parameters, and the newest reject forced tool use (Opus 5.5, Sonnet 5.5, Fable 5.1), so they get no
  temperature and `tool_choice: auto` with the one tool, plus a sentence asking for it.
- The forced tool is not `strict`: it is the fallback when the structured-output grammar is refused, so it
  must not compile the same grammar; local validation holds the schema.
- The answer can follow `thinking` blocks, so text is found by block type; a `tool_use` block's `input` is an
  object, serialised back to JSON text.
- Errors are `{"type": "error", "error": {"type", "message"}, "request_id"}`; 404 `not_found_error` naming a
  model means it is retired or unknown; 529 `overloaded_error` is retryable; a low credit balance is permanent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from robustprompt._completion import Completion, Usage
from robustprompt._errors import (
    BadRequestError,
    ConfigError,
    ContextLengthError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    QuotaExceededError,
    SchemaRejectedError,
)
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Message, OutputMode, Prompt
from robustprompt.adapters import Endpoint, HttpCall
from robustprompt.adapters._anthropic_batch import AnthropicBatchWire
from robustprompt.adapters._anthropic_schema import to_anthropic_schema, tool_input_schema
from robustprompt.adapters._common import SseEventReader, error_for_status, json_body, provider_error, retry_after

__all__ = ["AnthropicAdapter", "AnthropicStream"]

API_VERSION = "2023-06-01"

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",  # the answer was cut off where the context ran out
    "refusal": "refusal",
}
_MODES = (OutputMode.JSON_SCHEMA, OutputMode.TOOL_CALL, OutputMode.PROMPTED)
_EMPTY_TURN = "(no answer)"
# A 400 about the output contract rather than the conversation: the engine moves to the next output mode.
_SCHEMA_PROBLEM = re.compile(r"output_config|output_format|input_schema|schema|grammar|tool_choice", re.IGNORECASE)
# "claude-opus-4-5-20251101", "claude-fable-5", or the older "claude-3-5-haiku-20241022".
_VERSION = re.compile(
    r"^claude-(?:(?P<old>\d+)(?:-(?P<old_minor>\d))?-[a-z]|[a-z]+-(?P<major>\d+)(?:-(?P<minor>\d{1,2}))?(?:-|$))"
)


class AnthropicAdapter:
    provider: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    api_key_required: ClassVar[bool] = True

    def default_profile(self, model_id: str) -> ModelProfile:
        """A guess from the model's version: structured outputs from Claude 4.5, thinking by default from 4.7.

        An unrecognised id is taken for a new model; if it rejects a mode, the engine moves to the next one.
        """
        version = _version(model_id)
        structured = version is None or version >= (4, 5)
        return ModelProfile(
            self.provider,
            model_id,
            modes=_MODES if structured else _MODES[1:],
            context_window=200_000,
            max_output_tokens=64_000 if structured else 4_096,
            reasoning=version is not None and version >= (4, 7),
        )

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        body: dict[str, Any] = {
            "model": profile.model_id,
            "max_tokens": settings.max_output_tokens or profile.max_output_tokens,
            "messages": [_turn(message) for message in prompt.messages],
        }
        system = prompt.system
        if prompt.mode is OutputMode.TOOL_CALL and profile.reasoning:
            # tool_choice is only "auto" here, so say in words that the tool is the way to answer.
            system = f"{system}\n\nAnswer by calling the tool {prompt.output.name}.".strip()
        if system:
            body["system"] = system
        body.update(self._output(prompt, profile))
        if settings.temperature is not None and not profile.reasoning:
            body["temperature"] = _temperature(settings.temperature, profile)
        return HttpCall("POST", f"{endpoint.base_url}/v1/messages", _headers(endpoint), body)

    def prepare_stream(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        call = self.prepare(prompt, profile, settings, endpoint)
        return HttpCall(call.method, call.url, call.headers, {**call.body, "stream": True})

    def stream_decoder(self, profile: ModelProfile) -> AnthropicStream:
        return AnthropicStream(self, profile)

    def batch_wire(self) -> AnthropicBatchWire:
        return AnthropicBatchWire(self.provider, _headers, _STREAM_ERROR_STATUS)

    def _output(self, prompt: Prompt, profile: ModelProfile) -> dict[str, Any]:
        spec = prompt.output
        if prompt.mode is OutputMode.JSON_SCHEMA:
            schema = to_anthropic_schema(spec.schema, provider=self.provider)
            return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}
        if prompt.mode is OutputMode.TOOL_CALL:
            tool: dict[str, Any] = {"name": spec.name, "input_schema": tool_input_schema(spec.schema)}
            if spec.description:
                tool["description"] = spec.description
            choice = {"type": "auto"} if profile.reasoning else {"type": "tool", "name": spec.name}
            return {"tools": [tool], "tool_choice": {**choice, "disable_parallel_tool_use": True}}
        if prompt.mode is OutputMode.PROMPTED:
            return {}
        raise ConfigError(
            f"output mode {prompt.mode.value!r} is not available on {profile.name} (the Messages API has no JSON "
            f"mode); choose one of {', '.join(m.value for m in _MODES)}"
        )

    def read(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> Completion:
        data = json_body(body, provider=self.provider, model=profile.model_id, status=status)
        if not 200 <= status < 300:
            raise self._error(status, headers, data, body, profile)
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, list):
            raise provider_error(
                BadRequestError, "response has no content list", self.provider, profile.model_id, status, body
            )
        blocks = [block for block in content if isinstance(block, dict)]
        text = "".join(str(block.get("text") or "") for block in blocks if block.get("type") == "text")
        call = next((block for block in blocks if block.get("type") == "tool_use"), None)
        if call is not None:
            text = json.dumps(call.get("input"), ensure_ascii=False)
        finish = _STOP.get(data.get("stop_reason") or "", "other")
        return Completion(
            text=text,
            finish_reason=finish,
            usage=_usage(data.get("usage")),
            model_id=str(data.get("model") or ""),
            refusal=_refusal(data, text) if finish == "refusal" else None,
        )

    def _error(
        self, status: int, headers: Mapping[str, str], data: Any, body: bytes, profile: ModelProfile
    ) -> ProviderError:
        err = data.get("error") if isinstance(data, dict) else None
        err = err if isinstance(err, dict) else {}
        kind = str(err.get("type") or "")
        message = str(err.get("message") or f"HTTP {status}")
        cls = _error_class(status, kind, message, headers)
        return provider_error(
            cls,
            message,
            self.provider,
            profile.model_id,
            status,
            body,
            code=kind or None,
            retry_after=retry_after(headers),
        )


def _version(model_id: str) -> tuple[int, int] | None:
    match = _VERSION.match(model_id)
    if match is None:
        return None
    major = match["old"] or match["major"]
    minor = match["old_minor"] or match["minor"] or "0"
    return int(major), int(minor)


def _headers(endpoint: Endpoint) -> dict[str, str]:
    headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
    if endpoint.api_key:
        headers["x-api-key"] = endpoint.api_key
    return headers


def _turn(message: Message) -> dict[str, str]:
    # The API rejects text content that is empty or only whitespace, as a failed answer can be.
    return {"role": message.role, "content": message.content if message.content.strip() else _EMPTY_TURN}


def _temperature(value: float, profile: ModelProfile) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{profile.name} takes a temperature from 0 to 1, got {value:g}: pass one in that range")
    return value


def _usage(usage: Any) -> Usage:
    usage = usage if isinstance(usage, dict) else {}
    # `input_tokens` leaves out the tokens written to or read from the prompt cache; the input is all three.
    cached = (usage.get("cache_creation_input_tokens") or 0) + (usage.get("cache_read_input_tokens") or 0)
    return Usage((usage.get("input_tokens") or 0) + cached, usage.get("output_tokens") or 0)


def _refusal(data: Mapping[str, Any], text: str) -> str | None:
    details = data.get("stop_details")
    explanation = details.get("explanation") if isinstance(details, dict) else None
    return str(explanation) if explanation else (text.strip() or None)


def _error_class(status: int, kind: str, message: str, headers: Mapping[str, str]) -> type[ProviderError]:
    cls = error_for_status(status, headers)
    if cls.retryable:
        return OverloadedError if kind == "overloaded_error" else cls
    lowered = message.lower()
    if status == 402 or kind == "billing_error" or "credit balance" in lowered:
        return QuotaExceededError
    if status == 404 and kind == "not_found_error" and ("model" in lowered or "not available" in lowered):
        return ModelNotFoundError
    if status == 413 or "prompt is too long" in lowered:
        return ContextLengthError
    if status == 400 and _SCHEMA_PROBLEM.search(message):
        return SchemaRejectedError
    return cls


# The status a non-streamed call gets for each error type, for the same error arriving as an `error` event or as
# an errored batch item.
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicStream(SseEventReader):
    """Messages SSE (PROVIDERS.md §11.4): `message_start`, blocks of `content_block_delta` (`text_delta`, or a
    tool call's `input_json_delta`), `message_delta` with the stop reason and cumulative usage, `message_stop`.
    An `error` event is the typed error of the same error type; `ping` and unknown events are ignored."""

    def __init__(self, adapter: AnthropicAdapter, profile: ModelProfile) -> None:
        super().__init__(adapter.provider, profile.model_id)
        self._adapter = adapter
        self._profile = profile
        self._text: list[str] = []
        self._tool: list[str] | None = None  # the input of the tool call, once one started
        self._usage: dict[str, Any] = {}
        self._stop = ""
        self._model = ""
        self._done = False

    def _ended(self) -> bool:
        return self._done

    def _payload(self, payload: dict[str, Any], data: str) -> list[str]:
        kind = payload.get("type")
        if kind == "error":
            err = payload.get("error")
            err = err if isinstance(err, dict) else {}
            status = _STREAM_ERROR_STATUS.get(str(err.get("type")), 500)
            raise self._adapter._error(status, {}, payload, data.encode(), self._profile)
        if kind == "message_start" and isinstance(message := payload.get("message"), dict):
            self._model = str(message.get("model") or "")
            self._usage.update(message.get("usage") or {})
        elif kind == "content_block_start" and (payload.get("content_block") or {}).get("type") == "tool_use":
            self._tool = self._tool if self._tool is not None else []
        elif kind == "content_block_delta" and isinstance(delta := payload.get("delta"), dict):
            return self._delta(delta)
        elif kind == "message_delta":
            self._stop = str((payload.get("delta") or {}).get("stop_reason") or self._stop)
            self._usage.update(payload.get("usage") or {})  # cumulative: the last count replaces the earlier
        elif kind == "message_stop":
            self._done = True
        return []

    def _delta(self, delta: dict[str, Any]) -> list[str]:
        if delta.get("type") == "text_delta" and (text := delta.get("text")):
            self._text.append(str(text))
            return [] if self._tool is not None else [str(text)]
        if delta.get("type") == "input_json_delta" and self._tool is not None and (part := delta.get("partial_json")):
            self._tool.append(str(part))
            return [str(part)]
        return []

    def finish(self) -> Completion:
        if not self._done:
            self._pending()
            raise self._cut("the stream ended before `message_stop`")
        text = "".join(self._text)
        if self._tool is not None:
            text = "".join(self._tool) or "{}"  # an empty input buffer is an empty object
        finish = _STOP.get(self._stop, "other")
        return Completion(
            text=text,
            finish_reason=finish,
            usage=_usage(self._usage),
            model_id=self._model,
            refusal=(text.strip() or None) if finish == "refusal" else None,
        )
