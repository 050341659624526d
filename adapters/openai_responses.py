"""OpenAI Responses API (`POST /v1/responses`).

Output modes: a strict `json_schema` text format, a forced strict function tool, `json_object`, or prompted.
Facts that matter (PROVIDERS.md §2, §7): `text.format` and function tools are flat here, not nested as in Chat
Completions; the system text goes in `instructions`; `max_output_tokens` is at least 16; `store` defaults to true,
so send false; there is no `seed`. The answer is a list of output items (messages with `output_text` or `refusal`
parts, `function_call` items); truncation is `status: "incomplete"` with `incomplete_details.reason`. Errors have
the Chat Completions shape, so the Chat adapter's mapping applies as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from robustprompt import _catalog
from robustprompt._completion import Completion, Usage
from robustprompt._errors import (
    BadRequestError,
    ConfigError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, Prompt
from robustprompt.adapters import Endpoint, HttpCall
from robustprompt.adapters._common import SseEventReader, json_body, provider_error
from robustprompt.adapters.openai import MODES, STREAM_ERROR_STATUS, OpenAIChatAdapter

__all__ = ["MIN_OUTPUT_TOKENS", "OpenAIResponsesAdapter", "OpenAIResponsesStream"]

MIN_OUTPUT_TOKENS = 16  # the API rejects a smaller max_output_tokens
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "refusal"}
# A `failed` response carries an error code instead of an HTTP error; these two are worth retrying.
_FAILED: dict[str, type[ProviderError]] = {"server_error": ServerError, "rate_limit_exceeded": RateLimitError}
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class OpenAIResponsesAdapter(OpenAIChatAdapter):
    provider: ClassVar[str] = "openai-responses"
    otel_provider: ClassVar[str] = "openai"  # the same provider, by the conventions; only the API differs
    stream_usage: ClassVar[bool] = False  # usage is in the terminal event; `stream_options` has no include_usage
    batch_path: ClassVar[str | None] = "/v1/responses"

    def stream_decoder(self, profile: ModelProfile) -> OpenAIResponsesStream:
        return OpenAIResponsesStream(self, profile)

    def default_profile(self, model_id: str) -> ModelProfile:
        # The same models as Chat Completions: reuse the openai catalog rather than keep a second copy of it.
        known = _catalog.lookup(f"openai:{model_id}")
        if known is None:
            return super().default_profile(model_id)
        replacement = known.replacement and f"{self.provider}:{known.replacement.partition(':')[2]}"
        return replace(known, provider=self.provider, replacement=replacement)

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        turns: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in prompt.messages]
        body: dict[str, Any] = {"model": profile.model_id, "store": False}
        if prompt.mode is OutputMode.JSON_OBJECT:
            # JSON mode wants the word "json" in the input messages, and `instructions` do not count: send the
            # system text (which spells out the schema, so names JSON) as the first input message instead.
            turns.insert(0, {"role": profile.system_role, "content": prompt.system})
        else:
            body["instructions"] = prompt.system
        body["input"] = turns
        body.update(self._format(prompt, profile))
        if settings.max_output_tokens is not None:
            body["max_output_tokens"] = _output_tokens(settings.max_output_tokens, profile)
        if settings.temperature is not None and not profile.reasoning:
            body["temperature"] = settings.temperature
        return HttpCall("POST", f"{endpoint.base_url}/responses", self._headers(endpoint), body)

    def _format(self, prompt: Prompt, profile: ModelProfile) -> dict[str, Any]:
        spec = prompt.output
        described = {"description": spec.description} if spec.description else {}
        if prompt.mode is OutputMode.JSON_SCHEMA:
            fmt = {"type": "json_schema", "name": spec.name, "schema": self._strict_schema(spec), "strict": True}
            return {"text": {"format": {**fmt, **described}}}
        if prompt.mode is OutputMode.TOOL_CALL:
            tool = {"type": "function", "name": spec.name, "parameters": self._strict_schema(spec), "strict": True}
            return {
                "tools": [{**tool, **described}],
                "tool_choice": {"type": "function", "name": spec.name},
                "parallel_tool_calls": False,
            }
        if prompt.mode is OutputMode.JSON_OBJECT:
            return {"text": {"format": {"type": "json_object"}}}
        if prompt.mode is OutputMode.PROMPTED:
            return {}
        raise ConfigError(
            f"output mode {prompt.mode.value!r} is not available on {profile.name}; "
            f"choose one of {', '.join(m.value for m in MODES)}"
        )

    def read(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> Completion:
        data = json_body(body, provider=self.provider, model=profile.model_id, status=status)
        if not 200 <= status < 300:
            raise self._error(status, headers, data, body, profile)
        output = data.get("output") if isinstance(data, dict) else None
        if not isinstance(output, list):
            raise self._unreadable("response has no output list", status, body, profile)
        if data.get("status") == "failed":
            raise self._failed(data.get("error"), status, body, profile)
        return _completion(data, *_answer(output))

    def _failed(self, error: Any, status: int, body: bytes, profile: ModelProfile) -> ProviderError:
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        cls = _FAILED.get(str(code), BadRequestError)
        message = f"the response failed: {error.get('message') or code or 'no reason given'}"
        return provider_error(cls, message, self.provider, profile.model_id, status, body, code=code)

    def _unreadable(self, message: str, status: int, body: bytes, profile: ModelProfile) -> ProviderError:
        return provider_error(BadRequestError, message, self.provider, profile.model_id, status, body)


def _completion(response: Mapping[str, Any], text: str, refusal: str | None) -> Completion:
    """The answer of a `Response` object, given its text and refusal (read from its output, or streamed)."""
    finish = _finish(response)
    if finish == "refusal" and refusal is None:
        refusal = "the answer was stopped by the content filter"
    usage = response.get("usage") or {}
    return Completion(
        text=text,
        finish_reason="refusal" if refusal else finish,
        usage=Usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0)),
        model_id=str(response.get("model") or ""),
        refusal=refusal,
    )


def _output_tokens(requested: int, profile: ModelProfile) -> int:
    if requested < MIN_OUTPUT_TOKENS:
        raise ConfigError(
            f"max_output_tokens={requested} is below the Responses API's minimum of {MIN_OUTPUT_TOKENS} "
            f"({profile.name}): ask for at least {MIN_OUTPUT_TOKENS}"
        )
    return requested


def _answer(output: Sequence[Any]) -> tuple[str, str | None]:
    """(text, refusal) from the output items: a function call's arguments win over message text."""
    texts: list[str] = []
    refusals: list[str] = []
    arguments: list[str] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            arguments.append(item.get("arguments") or "")
        elif item.get("type") == "message":  # reasoning and other items carry no answer
            for part in item.get("content") or ():
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusals.append(part.get("refusal") or "")
    text = arguments[0] if arguments else "".join(texts)
    return text, " ".join(refusals) or None


def _finish(data: Mapping[str, Any]) -> str:
    status = data.get("status") or "completed"
    if status == "completed":
        return "stop"
    if status == "incomplete":
        details = data.get("incomplete_details") or {}
        return _INCOMPLETE.get(details.get("reason") or "", "other")
    return "other"


class OpenAIResponsesStream(SseEventReader):
    """Responses SSE (PROVIDERS.md §11.2): named events, text in `response.output_text.delta`, a function call's
    arguments in `response.function_call_arguments.delta`, refusals in `response.refusal.delta`, and exactly one
    terminal event (`response.completed`, `.incomplete` or `.failed`) whose `response` holds the status and the
    usage; there is no `[DONE]`. An `error` event (flat or nested, both are sent) is the typed error of its code."""

    def __init__(self, adapter: OpenAIResponsesAdapter, profile: ModelProfile) -> None:
        super().__init__(adapter.provider, profile.model_id)
        self._adapter = adapter
        self._profile = profile
        self._text: list[str] = []
        self._arguments: list[str] | None = None  # once a function call started, it is the answer
        self._refusal: list[str] = []
        self._final: dict[str, Any] | None = None

    def _ended(self) -> bool:
        return self._final is not None

    def _payload(self, payload: dict[str, Any], data: str) -> list[str]:
        kind = payload.get("type")
        if kind == "error":
            raise self._error(payload, data)
        if kind in _TERMINAL:
            response = payload.get("response")
            self._final = dict(response) if isinstance(response, dict) else {}
            self._final.setdefault("status", kind.removeprefix("response."))
            if kind == "response.failed":
                raise self._adapter._failed(self._final.get("error"), 200, data.encode(), self._profile)
            return []
        item = payload.get("item")
        if kind == "response.output_item.added" and isinstance(item, dict) and item.get("type") == "function_call":
            self._arguments = self._arguments if self._arguments is not None else []
        delta = payload.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        if kind == "response.output_text.delta":
            self._text.append(delta)
            return [] if self._arguments is not None else [delta]
        if kind == "response.function_call_arguments.delta" and self._arguments is not None:
            self._arguments.append(delta)
            return [delta]
        if kind == "response.refusal.delta":
            self._refusal.append(delta)
        return []

    def finish(self) -> Completion:
        if self._final is None:
            self._pending()
            if self._final is None:
                raise self._cut("the stream ended before its terminal `response.completed` event")
        text = "".join(self._arguments) if self._arguments is not None else "".join(self._text)
        return _completion(self._final, text, "".join(self._refusal) or None)

    def _error(self, payload: dict[str, Any], data: str) -> ProviderError:
        # The spec's payload is flat; the live API has been seen nesting it under `error`: read that first.
        nested = payload.get("error")
        if isinstance(nested, dict):
            err = {key: nested.get(key, payload.get(key)) for key in ("message", "type", "code", "param")}
        else:  # the flat shape's `type` is the event's ("error"), not the error's
            err = {key: payload.get(key) for key in ("message", "code", "param")}
        status = STREAM_ERROR_STATUS.get(str(err.get("code") or err.get("type") or ""), 500)
        return self._adapter._error(status, {}, {"error": err}, data.encode(), self._profile)
