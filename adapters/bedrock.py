"""AWS Bedrock Converse (`POST https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse`).

Output modes: a JSON Schema in `outputConfig.textFormat` (the schema travels as a JSON *string*), a forced tool
(`toolConfig.toolChoice.tool`), or prompted. Converse has no JSON mode.

Facts that matter (PROVIDERS.md §6 and §3, botocore's `bedrock-runtime` service model):
- Auth is SigV4 (service `bedrock`) with the standard AWS credential chain, signed by botocore (the `bedrock`
  extra), or a Bedrock API key sent as `Authorization: Bearer` (`AWS_BEARER_TOKEN_BEDROCK`, or `api_key=`).
- The region comes from the endpoint's host, else `AWS_REGION` / `AWS_DEFAULT_REGION` / the AWS config file;
  `default_base_url` is a template the region fills in, so no base URL needs to be given.
- Errors name their type in the `x-amzn-ErrorType` header with a `{"message"}` body. A bad model id is a 400
  ValidationException ("The provided model identifier is invalid."), a retired one a 404
  ResourceNotFoundException; throttling (429) carries no Retry-After, so backoff applies.
- Native JSON Schema output follows Claude's rules, so the Anthropic dialect transform applies: closed objects,
  no recursion, no numeric, length or pattern constraints (they move into descriptions, and local validation
  still enforces them). A forced tool takes any schema with an object root: non-strict tool input is not
  decoded against a grammar.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from robustprompt._completion import Completion, Usage
from robustprompt._errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    ContextLengthError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    SchemaRejectedError,
    ServerError,
)
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, OutputSpec, Prompt
from robustprompt.adapters import Endpoint, HttpCall
from robustprompt.adapters._anthropic_schema import to_anthropic_schema, tool_input_schema
from robustprompt.adapters._common import (
    PerSpec,
    StreamReader,
    error_for_status,
    json_body,
    provider_error,
    retry_after,
)
from robustprompt.adapters._eventstream import Frame, FrameDecoder, FrameError

if TYPE_CHECKING:
    from botocore.credentials import Credentials, ReadOnlyCredentials
    from botocore.session import Session

__all__ = ["BedrockAdapter", "BedrockStream"]

_EXTRA = "pip install 'robustprompt[bedrock]'"
_REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
# bedrock-runtime.us-east-1.amazonaws.com, its -fips twin, VPC endpoints (….vpce.amazonaws.com) and China (.cn).
_HOST_REGION = re.compile(r"(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$")
# A Claude id's version: claude-3-5-haiku-2024…, claude-sonnet-4-5-2025…, claude-sonnet-4-2025…, claude-opus-4-6.
_CLAUDE_VERSION = re.compile(r"anthropic\.claude-(?:[a-z]+-)?(\d+)(?:-(\d{1,2}))?(?![\d.])")
_NATIVE_SCHEMA_SINCE = (4, 5)  # Bedrock structured outputs: Claude 4.5 and later

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",  # a forced tool call ends this way
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "refusal",
    "content_filtered": "refusal",
}
# By `x-amzn-ErrorType`; ValidationException is sorted by its message in `_error_class`.
_ERRORS: dict[str, type[ProviderError]] = {
    "ThrottlingException": RateLimitError,
    "ServiceUnavailableException": OverloadedError,
    "ModelNotReadyException": OverloadedError,  # 429, but the model is loading, not our quota: retry
    "InternalServerException": ServerError,
    "InternalFailure": ServerError,
    "ModelErrorException": ServerError,  # 424: the model failed while processing this request; often passing
    "ModelStreamErrorException": ServerError,  # the same failure, inside a stream
    "ModelTimeoutException": ProviderTimeout,  # 408
    "ResourceNotFoundException": ModelNotFoundError,  # retired or unknown model, or use-case form missing
    "ServiceQuotaExceededException": QuotaExceededError,  # an account quota, not a per-minute rate
    "AccessDeniedException": AuthError,
    "UnrecognizedClientException": AuthError,
    "InvalidSignatureException": AuthError,
    "IncompleteSignatureException": AuthError,
    "MissingAuthenticationTokenException": AuthError,
    "ExpiredTokenException": AuthError,
}
# The status a non-streamed call gets for the exception a stream sends in a frame instead (`:exception-type`).
_STREAM_STATUS = {
    "ThrottlingException": 429,
    "ValidationException": 400,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ModelStreamErrorException": 424,
}
_MODEL_GONE = ("model identifier is invalid", "end of its life")
_NEEDS_PROFILE = "on-demand throughput isn"
_TOO_LONG = ("too long", "exceed context limit", "context window")
# A 400 that names the output contract (`outputConfig`, its schema, the tool) rejected the mode or the schema.
_SCHEMA_WORDS = (
    *("outputconfig", "output_config", "textformat", "jsonschema", "json_schema"),
    *("toolconfig", "toolchoice", "tool use", "schema is too complex", "grammar"),
)


class BedrockAdapter:
    provider: ClassVar[str] = "bedrock"
    default_base_url: ClassVar[str] = "https://bedrock-runtime.{region}.amazonaws.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL")
    api_key_env: ClassVar[tuple[str, ...]] = ("AWS_BEARER_TOKEN_BEDROCK",)
    api_key_required: ClassVar[bool] = False  # without an API key, requests are signed with AWS credentials
    otel_provider: ClassVar[str] = "aws.bedrock"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Resolved on the first signed call and kept: the credential chain may read files or ask the instance
        # metadata service, and botocore refreshes temporary credentials on its own.
        self._session: Session | None = None
        self._credentials: Credentials | None = None
        self._schemas: PerSpec[str] = PerSpec()

    def default_profile(self, model_id: str) -> ModelProfile:
        version = _claude_version(model_id)
        modes: tuple[OutputMode, ...]
        if version is not None:
            modes = (OutputMode.TOOL_CALL, OutputMode.PROMPTED)
            if version >= _NATIVE_SCHEMA_SINCE:
                modes = (OutputMode.JSON_SCHEMA, *modes)
            return ModelProfile(self.provider, model_id, modes=modes, context_window=200_000, max_output_tokens=8192)
        if "amazon.nova" in model_id:  # forced tool choice and constrained tool decoding (Nova user guide)
            modes = (OutputMode.TOOL_CALL, OutputMode.PROMPTED)
            return ModelProfile(self.provider, model_id, modes=modes, context_window=128_000, max_output_tokens=5000)
        # Other families may reject a forced tool ("This model doesn't support the toolConfig.toolChoice.any field").
        return ModelProfile(self.provider, model_id, context_window=128_000, max_output_tokens=4096)

    # ------------------------------------------------------------ request

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        return self._call(prompt, profile, settings, endpoint, "converse")

    def prepare_stream(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        # The same body; the path is the switch, and the signature covers the path.
        return self._call(prompt, profile, settings, endpoint, "converse-stream")

    def stream_decoder(self, profile: ModelProfile) -> BedrockStream:
        return BedrockStream(self, profile)

    def _call(
        self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint, operation: str
    ) -> HttpCall:
        body = self._body(prompt, profile, settings)
        base = endpoint.base_url
        if "{region}" in base:
            base = base.replace("{region}", self._region(base))
        url = f"{base}/model/{quote(profile.model_id, safe='-_.~')}/{operation}"
        content = json.dumps(body).encode()  # sent as is: the signature covers these exact bytes
        if endpoint.api_key:
            headers = {"content-type": "application/json", "authorization": f"Bearer {endpoint.api_key}"}
        else:
            headers = self._signed_headers(url, content, self._region(base))
        return HttpCall("POST", url, headers, body, content=content)

    def _body(self, prompt: Prompt, profile: ModelProfile, settings: Settings) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": [{"text": m.content}]} for m in prompt.messages],
        }
        if prompt.system:  # a system block's text must not be empty
            body["system"] = [{"text": prompt.system}]
        inference: dict[str, Any] = {}
        if settings.max_output_tokens is not None:
            inference["maxTokens"] = settings.max_output_tokens
        if settings.temperature is not None and not profile.reasoning:
            if not 0 <= settings.temperature <= 1:
                raise ConfigError(f"temperature must be between 0 and 1 on Bedrock, got {settings.temperature:g}")
            inference["temperature"] = settings.temperature
        if inference:
            body["inferenceConfig"] = inference
        # Converse has no seed parameter: `settings.seed` is not sent.
        body.update(self._output(prompt, profile))
        return body

    def _output(self, prompt: Prompt, profile: ModelProfile) -> dict[str, Any]:
        spec = prompt.output
        if prompt.mode is OutputMode.JSON_SCHEMA:
            definition = {"schema": self._schema_text(spec), "name": spec.name}
            if spec.description:
                definition["description"] = spec.description
            structure = {"jsonSchema": definition}
            return {"outputConfig": {"textFormat": {"type": "json_schema", "structure": structure}}}
        if prompt.mode is OutputMode.TOOL_CALL:
            schema = tool_input_schema(spec.schema, provider="Amazon Bedrock")
            tool: dict[str, Any] = {"name": spec.name, "inputSchema": {"json": schema}}
            if spec.description:
                tool["description"] = spec.description
            return {"toolConfig": {"tools": [{"toolSpec": tool}], "toolChoice": {"tool": {"name": spec.name}}}}
        if prompt.mode is OutputMode.PROMPTED:
            return {}
        raise ConfigError(
            f"output mode {prompt.mode.value!r} is not available on {profile.name}: Converse has "
            "json_schema (Claude 4.5 and later), tool_call and prompted"
        )

    def _schema_text(self, spec: OutputSpec) -> str:
        def make() -> str:
            schema = to_anthropic_schema(spec.schema, provider="Amazon Bedrock")
            return json.dumps(schema, ensure_ascii=False, separators=(",", ":"))

        return self._schemas.get(spec, make)

    # ------------------------------------------------------------ auth

    def _region(self, base_url: str) -> str:
        found = _host_region(base_url) or next((v for var in _REGION_VARS if (v := os.environ.get(var))), None)
        if found is None and importlib.util.find_spec("botocore") is not None:
            found = self._botocore_session().get_config_variable("region")  # the AWS config file's profile
        if not found:
            raise ConfigError(
                "no AWS region for bedrock: set AWS_REGION, or pass "
                "base_url='https://bedrock-runtime.<region>.amazonaws.com' to robustprompt.model()"
            )
        return str(found)

    def _signed_headers(self, url: str, content: bytes, region: str) -> dict[str, str]:
        credentials = self._frozen_credentials()
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=url, data=content, headers={"content-type": "application/json"})
        SigV4Auth(credentials, "bedrock", region).add_auth(request)
        return {name.lower(): value for name, value in request.headers.items()}

    def _frozen_credentials(self) -> ReadOnlyCredentials:
        session = self._botocore_session()
        with self._lock:
            if self._credentials is None:
                self._credentials = session.get_credentials()
            credentials = self._credentials
        if credentials is None:
            raise ConfigError(
                "no AWS credentials for bedrock: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                "or use a Bedrock API key: set AWS_BEARER_TOKEN_BEDROCK or pass api_key= to robustprompt.model()"
            )
        return credentials.get_frozen_credentials()  # a consistent snapshot while botocore refreshes

    def _botocore_session(self) -> Session:
        with self._lock:
            if self._session is None:
                try:
                    import botocore.session
                except ImportError:
                    raise ConfigError(
                        f"signing Bedrock requests with AWS credentials needs botocore: {_EXTRA}; "
                        "or use a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK)"
                    ) from None
                self._session = botocore.session.Session()
            return self._session

    # ------------------------------------------------------------ response

    def read(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> Completion:
        if not 200 <= status < 300:
            raise _error(status, headers, _json_or_none(body), body, self.provider, profile.model_id)
        data = json_body(body, provider=self.provider, model=profile.model_id, status=status)
        try:
            content = data["output"]["message"]["content"]
            blocks = [block for block in content if isinstance(block, dict)]
        except (KeyError, TypeError):
            raise provider_error(
                BadRequestError, "response has no output.message.content", self.provider, profile.model_id, status, body
            ) from None
        calls = [block["toolUse"] for block in blocks if isinstance(block.get("toolUse"), dict)]
        # Text blocks only: a reasoning model's `reasoningContent` blocks come before the answer.
        text = "".join(block["text"] for block in blocks if isinstance(block.get("text"), str))
        if calls:
            text = json.dumps(calls[0].get("input"), ensure_ascii=False)
        stop = str(data.get("stopReason") or "")
        finish = _FINISH.get(stop, "other")
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            finish_reason=finish,
            usage=Usage(usage.get("inputTokens", 0), usage.get("outputTokens", 0)),
            model_id=profile.model_id,  # Converse does not echo the model
            refusal=(text or f"stopped: {stop}") if finish == "refusal" else None,
        )


class BedrockStream(StreamReader):
    """ConverseStream (PROVIDERS.md §11.9): binary event-stream frames, each an event named by `:event-type`
    whose payload is the member's fields: `contentBlockDelta` with `delta.text`, or a forced tool's
    `delta.toolUse.input` (a fragment of JSON text); `messageStop` with the stop reason; then `metadata` with the
    usage. A frame whose `:message-type` is `exception` (or `error`) is the typed error of that exception; a bad
    CRC or a frame cut short is a connection error."""

    def __init__(self, adapter: BedrockAdapter, profile: ModelProfile) -> None:
        super().__init__(adapter.provider, profile.model_id)
        self._adapter = adapter
        self._profile = profile
        self._frames = FrameDecoder()
        self._text: list[str] = []
        self._tool: list[str] | None = None  # the input of the tool call, once one started
        self._stop: str | None = None
        self._usage: dict[str, Any] = {}

    def feed(self, data: bytes) -> list[str]:
        try:
            frames = self._frames.feed(data)
        except FrameError as exc:
            raise self._cut(f"the event stream is corrupt: {exc}") from None
        pieces: list[str] = []
        for frame in frames:
            pieces += self._frame(frame)
        return pieces

    def _frame(self, frame: Frame) -> list[str]:
        kind = frame.text(":message-type")
        if kind in ("exception", "error"):
            raise self._error(frame, kind)
        if kind != "event":
            return []
        payload = self._object(frame.payload, "an event payload") or {}
        event = frame.text(":event-type")
        if event == "contentBlockStart" and isinstance((payload.get("start") or {}).get("toolUse"), dict):
            self._tool = self._tool if self._tool is not None else []
        elif event == "contentBlockDelta" and isinstance(delta := payload.get("delta"), dict):
            return self._delta(delta)
        elif event == "messageStop":
            self._stop = str(payload.get("stopReason") or "")
        elif event == "metadata" and isinstance(usage := payload.get("usage"), dict):
            self._usage = usage
        return []  # unknown events are dropped, as botocore drops them

    def _delta(self, delta: dict[str, Any]) -> list[str]:
        if isinstance(text := delta.get("text"), str) and text:
            self._text.append(text)
            return [] if self._tool is not None else [text]
        tool = delta.get("toolUse")
        if self._tool is not None and isinstance(tool, dict) and isinstance(part := tool.get("input"), str) and part:
            self._tool.append(part)
            return [part]
        return []  # reasoning, citations: not the answer

    def finish(self) -> Completion:
        if self._frames.pending:
            raise self._cut(f"the event stream ended inside a frame ({self._frames.pending} bytes of it)")
        if self._stop is None:
            raise self._cut("the event stream ended before `messageStop`")
        text = "".join(self._text)
        if self._tool is not None:
            text = "".join(self._tool) or "{}"
        finish = _FINISH.get(self._stop, "other")
        return Completion(
            text=text,
            finish_reason=finish,
            usage=Usage(int(self._usage.get("inputTokens") or 0), int(self._usage.get("outputTokens") or 0)),
            model_id=self._profile.model_id,
            refusal=(text or f"stopped: {self._stop}") if finish == "refusal" else None,
        )

    def _error(self, frame: Frame, kind: str) -> ProviderError:
        name = frame.text(":exception-type") if kind == "exception" else frame.text(":error-code")
        name = name[:1].upper() + name[1:]  # `throttlingException` in a frame, `ThrottlingException` in a header
        data = _json_or_none(frame.payload) if kind == "exception" else {"message": frame.text(":error-message")}
        status = _STREAM_STATUS.get(name, 500)
        headers = {"x-amzn-errortype": name} if name else {}
        return _error(status, headers, data, frame.payload, self._adapter.provider, self._profile.model_id)


def _claude_version(model_id: str) -> tuple[int, int] | None:
    found = _CLAUDE_VERSION.search(model_id)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or 0)


def _host_region(base_url: str) -> str | None:
    found = _HOST_REGION.search(urlsplit(base_url).hostname or "")
    return found.group(1) if found else None


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _error(status: int, headers: Mapping[str, str], data: Any, body: bytes, provider: str, model: str) -> ProviderError:
    data = data if isinstance(data, dict) else {}
    # `ThrottlingException:http://internal.amazon.com/coral/…`; JSON-protocol bodies say `__type` instead.
    kind = (headers.get("x-amzn-errortype") or str(data.get("__type") or "")).split(":")[0].rsplit("#")[-1]
    message = str(data.get("message") or data.get("Message") or f"HTTP {status}")
    cls = _error_class(kind, message, status, headers)
    if cls is ModelNotFoundError and _NEEDS_PROFILE in message:
        message += f" (use an inference profile id, such as 'us.{model}' or 'global.{model}')"
    return provider_error(
        cls, message, provider, model, status, body, code=kind or None, retry_after=retry_after(headers)
    )


def _error_class(kind: str, message: str, status: int, headers: Mapping[str, str]) -> type[ProviderError]:
    lowered = message.lower()
    if any(words in lowered for words in (*_MODEL_GONE, _NEEDS_PROFILE)):
        return ModelNotFoundError
    if kind == "ValidationException" or (not kind and status == 400):
        if any(words in lowered for words in _TOO_LONG):
            return ContextLengthError
        if any(words in lowered for words in _SCHEMA_WORDS):
            return SchemaRejectedError
        return BadRequestError
    return _ERRORS.get(kind) or error_for_status(status, headers)
