"""Google Gemini generateContent (`POST /v1beta/models/{model}:generateContent`).

Output modes: `responseJsonSchema` (JSON Schema with constrained decoding, Gemini 2.5+), a forced function call
(`functionCallingConfig` mode ANY, parameters in the OpenAPI schema subset every Gemini generation takes), JSON
mode (`responseMimeType: application/json`), or prompted. A model that predates `responseJsonSchema` lists
no json_schema mode in its profile and gets schema-constrained output through the function call instead.

Facts that matter (PROVIDERS.md §4, §7): the key travels in `x-goog-api-key`, never in the query string; a
blocked prompt has no candidates, only `promptFeedback.blockReason`; thought tokens are billed as output;
errors are google.rpc Status bodies: a bad key is a 400 `API_KEY_INVALID`, a retired model a 404, a 429 names
its quota, and one counted per day will not clear by retrying.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple
from urllib.parse import quote

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
)
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, OutputSpec, Prompt
from robustprompt.adapters import Endpoint, HttpCall
from robustprompt.adapters._common import (
    PerSpec,
    StreamReader,
    error_for_status,
    json_body,
    provider_error,
    retry_after,
)
from robustprompt.adapters._gemini_schema import to_gemini_json_schema, to_gemini_openapi_schema
from robustprompt.adapters._sse import Lines, SseDecoder

__all__ = ["GeminiAdapter", "GeminiStream"]

API_VERSION = "v1beta"

_MODES = (OutputMode.JSON_SCHEMA, OutputMode.TOOL_CALL, OutputMode.JSON_OBJECT, OutputMode.PROMPTED)
_ROLES = {"user": "user", "assistant": "model"}
_REFUSALS = ("SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII")
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(_REFUSALS, "refusal")}

# A 400 that names the schema, the function declaration or the response MIME type rejected the output mode
# (including "JSON mode is not enabled for models/..." and "too many states for serving").
_MODE_REJECTED = re.compile(
    r"schema|function.?declaration|function calling|mime.?type|json mode|too many states|tool.?config", re.I
)
_TOO_LONG = re.compile(r"input token count|exceeds the maximum number of tokens", re.I)
_DURATION = re.compile(r"(\d+(?:\.\d*)?)s")  # google.protobuf.Duration in JSON: "17s", "0.5s"


class _Output(NamedTuple):
    config: dict[str, Any]  # merged into generationConfig
    request: dict[str, Any]  # merged into the request body


class GeminiAdapter:
    provider: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("GOOGLE_GEMINI_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    api_key_required: ClassVar[bool] = True
    otel_provider: ClassVar[str] = "gcp.gemini"
    otel_operation: ClassVar[str] = "generate_content"

    def __init__(self) -> None:
        # The dialect transforms walk the whole schema; do each once per output spec, not once per request.
        self._schemas: PerSpec[dict[str, Any]] = PerSpec()

    def default_profile(self, model_id: str) -> ModelProfile:
        if model_id.startswith("gemma-"):
            # Gemma on the Gemini API answers "Developer instruction is not enabled" to a system instruction
            # and "JSON mode is not enabled" to a MIME type, and has no function calling.
            return ModelProfile(self.provider, model_id, modes=(OutputMode.PROMPTED,), system_role="user")
        return ModelProfile(self.provider, model_id, modes=_MODES, context_window=1_048_576, max_output_tokens=65_536)

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        output = self._output(prompt, profile)
        body: dict[str, Any] = {"contents": _contents(prompt, profile)}
        if prompt.system and profile.system_role != "user":
            body["systemInstruction"] = {"parts": [{"text": prompt.system}]}
        config = {**output.config, **_sampling(settings, profile)}
        if config:
            body["generationConfig"] = config
        body.update(output.request)
        headers = {"content-type": "application/json"}
        if endpoint.api_key:
            headers["x-goog-api-key"] = endpoint.api_key
        url = f"{endpoint.base_url}/{API_VERSION}/models/{quote(profile.model_id, safe='')}:generateContent"
        return HttpCall("POST", url, headers, body)

    def prepare_stream(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        call = self.prepare(prompt, profile, settings, endpoint)
        # Without `alt=sse` the stream is one JSON array growing element by element, not SSE.
        url = call.url.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
        return HttpCall(call.method, url, call.headers, call.body)

    def stream_decoder(self, profile: ModelProfile) -> GeminiStream:
        return GeminiStream(self, profile)

    def _output(self, prompt: Prompt, profile: ModelProfile) -> _Output:
        spec = prompt.output
        if prompt.mode is OutputMode.JSON_SCHEMA:
            schema = self._schema(spec, to_gemini_json_schema)
            return _Output({"responseMimeType": "application/json", "responseJsonSchema": schema}, {})
        if prompt.mode is OutputMode.TOOL_CALL:
            # No responseMimeType here: Gemini 2.x rejects function calling together with a JSON MIME type.
            function = {
                "name": spec.name,
                "description": spec.description or f"Record the answer as {spec.name}.",
                "parameters": self._schema(spec, to_gemini_openapi_schema),
            }
            calling = {"mode": "ANY", "allowedFunctionNames": [spec.name]}
            tools = {"tools": [{"functionDeclarations": [function]}], "toolConfig": {"functionCallingConfig": calling}}
            return _Output({}, tools)
        if prompt.mode is OutputMode.JSON_OBJECT:
            return _Output({"responseMimeType": "application/json"}, {})
        if prompt.mode is OutputMode.PROMPTED:
            return _Output({}, {})
        raise ConfigError(
            f"output mode {prompt.mode.value!r} is not available on {profile.name}; "
            f"choose one of {', '.join(m.value for m in _MODES)}"
        )

    def _schema(self, spec: OutputSpec, transform: Callable[[Mapping[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        return self._schemas.get(spec, lambda: transform(spec.schema), transform.__name__)

    def read(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> Completion:
        if not 200 <= status < 300:
            raise self._error(status, headers, body, profile)
        data = json_body(body, provider=self.provider, model=profile.model_id, status=status)
        data = data if isinstance(data, dict) else {}
        usage = _usage(data.get("usageMetadata") or {})
        model_id = str(data.get("modelVersion") or "")
        candidates = data.get("candidates") or []
        if not candidates:
            blocked = (data.get("promptFeedback") or {}).get("blockReason")
            if blocked:  # the prompt itself was refused: no candidate was generated
                return Completion("", "refusal", usage, model_id, refusal=f"the prompt was blocked ({blocked})")
            raise provider_error(
                BadRequestError, "response has no candidates", self.provider, profile.model_id, status, body
            )
        candidate = candidates[0]
        reason = str(candidate.get("finishReason") or "")
        finish = _FINISH.get(reason, "other")
        text = _answer((candidate.get("content") or {}).get("parts") or [])
        # Whatever text came before the stop is a cut-off answer, not the model's explanation.
        refusal = f"the answer was stopped ({reason})" if finish == "refusal" else None
        return Completion(text, finish, usage, model_id, refusal)

    def _error(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> ProviderError:
        err = _status_body(body)
        message = str(err.get("message") or f"HTTP {status}")
        details = [d for d in err.get("details") or () if isinstance(d, dict)]
        cls = error_for_status(status, headers)
        if _error_reason(details).startswith("API_KEY_"):  # a wrong or expired key comes back as a 400
            cls = AuthError
        elif status == 400 and _TOO_LONG.search(message):
            cls = ContextLengthError
        elif status == 400 and _MODE_REJECTED.search(" ".join([message, *_field_violations(details)])):
            cls = SchemaRejectedError
        elif status == 404 and err.get("status") == "NOT_FOUND":
            cls = ModelNotFoundError
        elif status == 429 and any("PerDay" in quota for quota in _quota_ids(details)):
            cls = QuotaExceededError
        return provider_error(
            cls,
            message,
            self.provider,
            profile.model_id,
            status,
            body,
            code=err.get("status"),
            retry_after=_retry_delay(details) or retry_after(headers),
        )


def _contents(prompt: Prompt, profile: ModelProfile) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in prompt.messages:
        # Gemini rejects an empty text part, which an answer re-asked after thinking spent the whole budget
        # would be. Without it two user turns meet, and they go out as one turn of two parts.
        if not message.content:
            continue
        role = _ROLES[message.role]
        if turns and turns[-1]["role"] == role:
            turns[-1]["parts"].append({"text": message.content})
        else:
            turns.append({"role": role, "parts": [{"text": message.content}]})
    if prompt.system and profile.system_role == "user":
        # No system instruction on this model: the instructions open the first user turn (prompts start with
        # one) as a part of their own.
        turns[0]["parts"].insert(0, {"text": prompt.system})
    return turns


def _sampling(settings: Settings, profile: ModelProfile) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if settings.max_output_tokens is not None:
        config["maxOutputTokens"] = settings.max_output_tokens
    # Gemini 3 (a reasoning profile) is meant to run at its default temperature: lower values make it loop.
    if settings.temperature is not None and not profile.reasoning:
        config["temperature"] = settings.temperature
    if settings.seed is not None:
        config["seed"] = settings.seed
    return config


def _answer(parts: list[Any]) -> str:
    """The forced call's arguments as JSON text, else the text parts that are not thoughts."""
    parts = [p for p in parts if isinstance(p, dict)]
    for part in parts:
        if isinstance(part.get("functionCall"), dict):
            return json.dumps(part["functionCall"].get("args") or {}, ensure_ascii=False)
    return "".join(str(p.get("text") or "") for p in parts if not p.get("thought"))


def _usage(meta: Mapping[str, Any]) -> Usage:
    # candidatesTokenCount leaves out the thinking, which is billed as output all the same.
    output = int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0)
    return Usage(int(meta.get("promptTokenCount") or 0), output)


def _status_body(body: bytes) -> dict[str, Any]:
    """The google.rpc Status of an error body, or {} when it is not one (an HTML page from a wrong URL)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def _details(details: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in details if str(d.get("@type", "")).endswith(f"google.rpc.{kind}")]


def _error_reason(details: list[dict[str, Any]]) -> str:
    return next((str(d.get("reason", "")) for d in _details(details, "ErrorInfo")), "")


def _field_violations(details: list[dict[str, Any]]) -> list[str]:
    return [
        f"{v.get('field', '')} {v.get('description', '')}"
        for d in _details(details, "BadRequest")
        for v in d.get("fieldViolations") or ()
        if isinstance(v, dict)
    ]


def _quota_ids(details: list[dict[str, Any]]) -> list[str]:
    return [
        str(v.get("quotaId", ""))
        for d in _details(details, "QuotaFailure")
        for v in d.get("violations") or ()
        if isinstance(v, dict)
    ]


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    for info in _details(details, "RetryInfo"):
        match = _DURATION.fullmatch(str(info.get("retryDelay", "")))
        if match:
            return float(match.group(1))
    return None


class GeminiStream(StreamReader):
    """`streamGenerateContent?alt=sse` (PROVIDERS.md §11.5): `data:` lines only, each a whole
    `GenerateContentResponse` for that step whose text parts are deltas; a forced call's `functionCall` arrives
    whole; `usageMetadata` is cumulative (the last one counts); no `[DONE]`: the stream ends at EOF, after the
    chunk with a `finishReason`. An error inside the 200 is a google.rpc Status, as a `data:` payload or as raw
    (often pretty-printed) JSON lines outside the SSE framing, read until the braces balance."""

    def __init__(self, adapter: GeminiAdapter, profile: ModelProfile) -> None:
        super().__init__(adapter.provider, profile.model_id)
        self._adapter = adapter
        self._profile = profile
        self._lines = Lines()
        self._sse = SseDecoder()
        self._raw: list[str] = []  # JSON lines outside the SSE framing: an error body
        self._text: list[str] = []
        self._call: str | None = None
        self._reason = ""
        self._blocked: str | None = None
        self._usage: Mapping[str, Any] = {}
        self._model = ""

    def feed(self, data: bytes) -> list[str]:
        pieces: list[str] = []
        for line in self._lines.feed(data):
            pieces += self._line(line)
        return pieces

    def _line(self, line: str) -> list[str]:
        if self._raw or line.lstrip().startswith("{"):
            self._raw.append(line)
            self._raw_error()
            return []
        event = self._sse.line(line)
        return [] if event is None else self._chunk(event.data)

    def _raw_error(self) -> None:
        try:
            data = json.loads("\n".join(self._raw))
        except ValueError:
            return  # not balanced yet
        self._raw = []
        self._chunk(json.dumps(data))
        raise self._cut("the stream sent JSON outside its `data:` lines that is not an error")

    def _chunk(self, data: str) -> list[str]:
        chunk = self._object(data, "a stream chunk")
        if chunk is None:
            return []
        if isinstance(error := chunk.get("error"), dict):
            code = error.get("code")
            status = code if isinstance(code, int) else 500
            raise self._adapter._error(status, {}, data.encode(), self._profile)
        self._usage = chunk.get("usageMetadata") or self._usage
        self._model = str(chunk.get("modelVersion") or self._model)
        self._blocked = (chunk.get("promptFeedback") or {}).get("blockReason") or self._blocked
        candidates = chunk.get("candidates") or []
        candidate = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        self._reason = str(candidate.get("finishReason") or self._reason)
        pieces: list[str] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if not isinstance(part, dict) or part.get("thought"):
                continue
            if isinstance(call := part.get("functionCall"), dict) and self._call is None:
                self._call = json.dumps(call.get("args") or {}, ensure_ascii=False)
                pieces = [self._call]  # the call is the answer: text before it was not
            elif (text := part.get("text")) and self._call is None:
                self._text.append(str(text))
                pieces.append(str(text))
        return pieces

    def finish(self) -> Completion:
        rest = self._lines.rest()
        if self._raw or rest.lstrip().startswith("{"):
            self._line(rest)  # an error body sent without a last newline
        if self._raw:
            raise self._cut(f"the stream ended inside JSON sent outside its `data:` lines: {self._raw[0][:200]!r}")
        usage, model_id = _usage(self._usage), self._model
        if not self._reason:
            if self._blocked:
                return Completion("", "refusal", usage, model_id, refusal=f"the prompt was blocked ({self._blocked})")
            raise self._cut("the stream ended before a chunk with a finishReason")
        finish = _FINISH.get(self._reason, "other")
        text = self._call if self._call is not None else "".join(self._text)
        refusal = f"the answer was stopped ({self._reason})" if finish == "refusal" else None
        return Completion(text, finish, usage, model_id, refusal)
