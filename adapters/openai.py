"""OpenAI Chat Completions (`POST /v1/chat/completions`).

Output modes: strict `json_schema` response format, a forced strict function call, `json_object`, or prompted.
Facts that matter (PROVIDERS.md §1, §7): `max_completion_tokens` (not `max_tokens`); reasoning models reject
sampling parameters; a refusal leaves `content` null and sets `refusal`; a 400 "Invalid schema for ..." means
the schema was rejected (downgrade the mode); 404 `model_not_found` and 429 `insufficient_quota` are permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from robustprompt._completion import Completion, Usage
from robustprompt._errors import (
    ConfigError,
    ContextLengthError,
    ModelNotFoundError,
    ProviderError,
    QuotaExceededError,
    SchemaRejectedError,
)
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, OutputSpec, Prompt
from robustprompt.adapters import Endpoint, HttpCall, StreamDecoder
from robustprompt.adapters._common import (
    PerSpec,
    StreamReader,
    error_for_status,
    json_body,
    provider_error,
    retry_after,
)
from robustprompt.adapters._openai_batch import OpenAIBatchWire
from robustprompt.adapters._openai_schema import to_strict_schema
from robustprompt.adapters._sse import SseDecoder

__all__ = ["MODES", "STREAM_ERROR_STATUS", "OpenAIChatAdapter", "OpenAIChatStream"]

# The status a non-streamed call would have got for an error that arrives inside a 200 stream.
STREAM_ERROR_STATUS = {
    "rate_limit_exceeded": 429,
    "too_many_requests": 429,
    "insufficient_quota": 429,
    "requests": 429,
    "tokens": 429,
    "context_length_exceeded": 400,
    "invalid_request_error": 400,
    "server_error": 500,
}
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "refusal"}
MODES = (OutputMode.JSON_SCHEMA, OutputMode.TOOL_CALL, OutputMode.JSON_OBJECT, OutputMode.PROMPTED)


class OpenAIChatAdapter:
    provider: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("OPENAI_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    api_key_required: ClassVar[bool] = True
    stream_usage: ClassVar[bool] = True  # `stream_options.include_usage`: some servers of this wire reject it
    # The endpoint a Batch API line names (PROVIDERS.md §8); None for a server of this wire with no Batch API.
    batch_path: ClassVar[str | None] = "/v1/chat/completions"

    def __init__(self) -> None:
        # The strict transform walks the whole schema; do it once per output spec, not once per request.
        self._strict: PerSpec[dict[str, Any]] = PerSpec()

    def default_profile(self, model_id: str) -> ModelProfile:
        return ModelProfile(
            self.provider,
            model_id,
            modes=MODES,
            context_window=128_000,
            max_output_tokens=16_384,
            tokenizer="o200k_base",
        )

    def _strict_schema(self, spec: OutputSpec) -> dict[str, Any]:
        return self._strict.get(spec, lambda: to_strict_schema(spec.schema, provider=self.provider))

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        messages: list[dict[str, Any]] = [{"role": profile.system_role, "content": prompt.system}]
        messages += [{"role": m.role, "content": m.content} for m in prompt.messages]
        body: dict[str, Any] = {"model": profile.model_id, "messages": messages}
        body.update(self._output(prompt, profile))
        if settings.max_output_tokens is not None:
            body["max_completion_tokens"] = settings.max_output_tokens
        if settings.temperature is not None and not profile.reasoning:
            body["temperature"] = settings.temperature
        if settings.seed is not None:
            body["seed"] = settings.seed
        return HttpCall("POST", self._url(endpoint, profile), self._headers(endpoint), body)

    def prepare_stream(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        call = self.prepare(prompt, profile, settings, endpoint)
        body = {**call.body, "stream": True}
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return HttpCall(call.method, call.url, call.headers, body)

    def stream_decoder(self, profile: ModelProfile) -> StreamDecoder | None:
        return OpenAIChatStream(self, profile)

    def batch_wire(self) -> OpenAIBatchWire | None:
        return None if self.batch_path is None else OpenAIBatchWire(self.provider, self.batch_path, self._headers)

    # Hooks for APIs that speak this wire at another address or with another auth header.
    def _url(self, endpoint: Endpoint, profile: ModelProfile) -> str:
        return f"{endpoint.base_url}/chat/completions"

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        return headers

    def _output(self, prompt: Prompt, profile: ModelProfile) -> dict[str, Any]:
        spec = prompt.output
        if prompt.mode is OutputMode.JSON_SCHEMA:
            fmt: dict[str, Any] = {"name": spec.name, "schema": self._strict_schema(spec), "strict": True}
            if spec.description:
                fmt["description"] = spec.description
            return {"response_format": {"type": "json_schema", "json_schema": fmt}}
        if prompt.mode is OutputMode.TOOL_CALL:
            function = {"name": spec.name, "parameters": self._strict_schema(spec), "strict": True}
            if spec.description:
                function["description"] = spec.description
            return {
                "tools": [{"type": "function", "function": function}],
                "tool_choice": {"type": "function", "function": {"name": spec.name}},
                "parallel_tool_calls": False,
            }
        if prompt.mode is OutputMode.JSON_OBJECT:
            return {"response_format": {"type": "json_object"}}
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
        try:
            choice = data["choices"][0]
            message = choice["message"]
            refusal = message.get("refusal")
            calls = message.get("tool_calls") or []
            text = (calls[0]["function"]["arguments"] if calls else message.get("content")) or ""
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError):
            # OpenAI-compatible servers vary: a body without this shape is the server's fault, not a blip.
            raise provider_error(
                ProviderError,
                "malformed response: no choices[0].message with content or a tool call",
                self.provider,
                profile.model_id,
                status,
                body,
            ) from None
        finish = "refusal" if refusal else _FINISH.get(choice.get("finish_reason") or "stop", "other")
        return Completion(
            text=text,
            finish_reason=finish,
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            model_id=data.get("model", ""),
            refusal=refusal or (message.get("content") if finish == "refusal" else None),
        )

    def _error(
        self, status: int, headers: Mapping[str, str], data: Any, body: bytes, profile: ModelProfile
    ) -> ProviderError:
        err = data.get("error") if isinstance(data, dict) else None
        err = err if isinstance(err, dict) else {}
        message = str(err.get("message") or f"HTTP {status}")
        code = err.get("code")
        cls = error_for_status(status, headers)
        if code == "context_length_exceeded":
            cls = ContextLengthError
        elif status == 400 and (message.startswith("Invalid schema for") or err.get("param") == "response_format"):
            cls = SchemaRejectedError
        elif status == 404 and (code == "model_not_found" or "model" in message.lower()):
            cls = ModelNotFoundError
        elif status == 429 and code == "insufficient_quota":
            cls = QuotaExceededError
        return provider_error(
            cls, message, self.provider, profile.model_id, status, body, code=code, retry_after=retry_after(headers)
        )


class OpenAIChatStream(StreamReader):
    """Chat Completions SSE (PROVIDERS.md §11.1): `data:` chunks to `data: [DONE]`, text in `delta.content`, a
    forced tool call's arguments in `delta.tool_calls[index 0]`, usage in an extra chunk with no choices."""

    def __init__(self, adapter: OpenAIChatAdapter, profile: ModelProfile) -> None:
        super().__init__(adapter.provider, profile.model_id)
        self._adapter = adapter
        self._profile = profile
        self._sse = SseDecoder()
        self._content: list[str] = []
        self._arguments: list[str] = []
        self._refusal: list[str] = []
        self._finish: str | None = None
        self._usage = Usage()
        self._model = ""
        self._done = False

    def feed(self, data: bytes) -> list[str]:
        pieces: list[str] = []
        for event in self._sse.feed(data):
            if self._done:
                break
            if event.data.startswith("[DONE]"):
                self._done = True
                break
            pieces += self._chunk(event.data)
        return pieces

    def _chunk(self, data: str) -> list[str]:
        chunk = self._object(data, "a stream chunk")
        if chunk is None:
            return []
        if chunk.get("error"):
            raise self._error(chunk, data)
        return self._read(chunk)

    def _read(self, chunk: dict[str, Any]) -> list[str]:
        """The pieces of one parsed chunk (a hook for servers whose chunks differ in detail)."""
        self._model = str(chunk.get("model") or self._model)
        if isinstance(usage := chunk.get("usage"), dict):
            self._usage = Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)
        pieces: list[str] = []
        for choice in chunk.get("choices") or []:  # [] on the usage chunk and on Azure's annotation chunks
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            delta = delta if isinstance(delta, dict) else {}  # Azure's late annotation chunks have none
            if refusal := delta.get("refusal"):
                self._refusal.append(str(refusal))
            if content := delta.get("content"):
                self._content.append(str(content))
                if not self._arguments:
                    pieces.append(str(content))
            for call in delta.get("tool_calls") or []:
                if not isinstance(call, dict) or call.get("index", 0) != 0:  # the forced call: no parallel calls
                    continue
                if arguments := (call.get("function") or {}).get("arguments"):
                    self._arguments.append(str(arguments))
                    pieces.append(str(arguments))
            if choice.get("finish_reason"):
                self._finish = str(choice["finish_reason"])
        return pieces

    def finish(self) -> Completion:
        if not self._done and self._finish is None:
            pending = self._sse.pending()
            if pending:
                self._chunk(pending)  # an error event left without its blank line still names the error
            raise self._cut("the stream ended before its finish chunk and `data: [DONE]`")
        refusal = "".join(self._refusal) or None
        finish = "refusal" if refusal else _FINISH.get(self._finish or "stop", "other")
        text = "".join(self._arguments) or "".join(self._content)
        return Completion(
            text=text,
            finish_reason=finish,
            usage=self._usage,
            model_id=self._model,
            refusal=refusal or (text if finish == "refusal" else None),
        )

    def _error(self, chunk: dict[str, Any], data: str) -> ProviderError:
        err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
        kind = str(err.get("code") or err.get("type") or "")
        status = STREAM_ERROR_STATUS.get(kind, 500)
        return self._adapter._error(status, {}, {"error": err}, data.encode(), self._profile)
