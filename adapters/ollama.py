"""Ollama's native chat API (`POST /api/chat`), local or Ollama Cloud.

Output modes, best first: `format` set to the JSON Schema (grammar-constrained decoding), `format: "json"`, or
prompted; Ollama cannot force a tool call (it has no tool choice). Facts that matter (PROVIDERS.md §5.1, §7):
`stream` defaults to true, so send false; the docs advise giving the schema in the prompt text too, so the
schema mode does; a schema the grammar converter refuses comes back as "invalid JSON schema in format" with
status 500 (observed), so the message, not the status, marks the rejection; 404 means the model is not pulled
(never retried); 503 means the request queue is full; Ollama Cloud has no structured outputs. `OLLAMA_HOST` may be
a bare "host:port" and is read the way Ollama's own client reads it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from robustprompt._completion import Completion, Usage
from robustprompt._errors import (
    BadRequestError,
    ConfigError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    SchemaRejectedError,
    ServerError,
)
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import OutputMode, Prompt, schema_text
from robustprompt.adapters import Endpoint, HttpCall
from robustprompt.adapters._common import StreamReader, error_for_status, json_body, provider_error, retry_after
from robustprompt.adapters._sse import Lines

__all__ = ["OllamaAdapter", "OllamaStream", "ollama_base_url"]

_MODES = (OutputMode.JSON_SCHEMA, OutputMode.JSON_OBJECT, OutputMode.PROMPTED)
_FINISH = {"stop": "stop", "length": "length"}
# The grammar converter's refusals [spec: llm/server.go]: a schema it cannot compile, or a format of the wrong kind.
_SCHEMA_REFUSED = re.compile(r"invalid JSON schema in format|invalid format:")
_CLOUD_TAG = re.compile(r"[-:]cloud$")  # "gpt-oss:120b-cloud", "glm-4.6:cloud"
_DEFAULT_PORT = "11434"
# Addresses a server binds to but a client cannot dial; Ollama's client dials loopback instead.
_BIND_ALL = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class OllamaAdapter:
    provider: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str] = "http://localhost:11434"
    base_url_env: ClassVar[tuple[str, ...]] = ("OLLAMA_HOST",)
    api_key_env: ClassVar[tuple[str, ...]] = ("OLLAMA_API_KEY",)  # only Ollama Cloud checks a key
    api_key_required: ClassVar[bool] = False

    def default_profile(self, model_id: str) -> ModelProfile:
        # 4096 tokens is the context Ollama gives a model on a machine with under 24 GiB of VRAM; it truncates
        # longer prompts silently, so budgeting for more would lose the start of the prompt.
        cloud = _CLOUD_TAG.search(model_id) is not None
        return ModelProfile(
            self.provider,
            model_id,
            modes=(OutputMode.PROMPTED,) if cloud else _MODES,
            context_window=4096,
            max_output_tokens=1024,
            input_price=None if cloud else 0.0,
            output_price=None if cloud else 0.0,
        )

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        body: dict[str, Any] = {"model": profile.model_id, "messages": _messages(prompt), "stream": False}
        if (fmt := _format(prompt, profile)) is not None:
            body["format"] = fmt
        if options := _options(settings):
            body["options"] = options
        headers = {"content-type": "application/json"}
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        return HttpCall("POST", f"{ollama_base_url(endpoint.base_url)}/api/chat", headers, body)

    def prepare_stream(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall:
        call = self.prepare(prompt, profile, settings, endpoint)
        return HttpCall(call.method, call.url, call.headers, {**call.body, "stream": True})

    def stream_decoder(self, profile: ModelProfile) -> OllamaStream:
        return OllamaStream(self, profile)

    def read(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> Completion:
        data = self._decode(status, body, profile)
        failed = not 200 <= status < 300 or (isinstance(data, dict) and "error" in data)
        if failed:
            raise self._error(status, headers, data, body, profile)
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            raise provider_error(
                BadRequestError, "response has no message", self.provider, profile.model_id, status, body
            )
        return Completion(
            text=message.get("content") or "",
            finish_reason=_FINISH.get(data.get("done_reason") or "stop", "other"),
            usage=Usage(data.get("prompt_eval_count") or 0, data.get("eval_count") or 0),
            model_id=data.get("model", ""),
        )

    def _decode(self, status: int, body: bytes, profile: ModelProfile) -> Any:
        try:
            return json_body(body, provider=self.provider, model=profile.model_id, status=status)
        except ProviderConnectionError:
            # A client error in plain text (gin's "404 page not found" for a wrong base URL, a proxy's page):
            # the status says enough, and retrying it cannot help.
            if 400 <= status < 500:
                return None
            raise

    def _error(
        self, status: int, headers: Mapping[str, str], data: Any, body: bytes, profile: ModelProfile
    ) -> ProviderError:
        text = data.get("error") if isinstance(data, dict) else None
        message = str(text or body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}")
        # A 200 carrying an error is a runner that failed mid-answer: the server's fault, worth another try.
        cls = error_for_status(status, headers) if status >= 300 else ServerError
        if _SCHEMA_REFUSED.search(message):
            cls = SchemaRejectedError
        elif status == 404 and text:
            cls = ModelNotFoundError
            if "pull" not in message:
                message = f"{message}: pull it first (ollama pull {profile.model_id})"
        elif status == 404:
            message = f"{message}: no /api/chat here, check that the base URL is an Ollama server's address"
        return provider_error(
            cls, message, self.provider, profile.model_id, status, body, retry_after=retry_after(headers)
        )


class OllamaStream(StreamReader):
    """`/api/chat` NDJSON (PROVIDERS.md §11.8): one JSON object a line, text in `message.content`, the last line
    with `"done": true`, the stop reason and the counts; `{"error": "..."}` is a runner that failed mid-answer."""

    def __init__(self, adapter: OllamaAdapter, profile: ModelProfile) -> None:
        super().__init__(adapter.provider, profile.model_id)
        self._adapter = adapter
        self._profile = profile
        self._lines = Lines()
        self._text: list[str] = []
        self._last: dict[str, Any] | None = None

    def feed(self, data: bytes) -> list[str]:
        pieces: list[str] = []
        for line in self._lines.feed(data):
            if line.strip() and self._last is None:
                pieces += self._line(line)
        return pieces

    def _line(self, line: str) -> list[str]:
        data = self._object(line, "a stream line")
        if data is None:
            return []
        if "error" in data:
            raise self._adapter._error(200, {}, data, line.encode(), self._profile)
        if data.get("done"):
            self._last = data
        message = data.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not content:
            return []
        self._text.append(str(content))
        return [str(content)]

    def finish(self) -> Completion:
        if self._last is None and (rest := self._lines.rest()).strip():
            self._line(rest)  # a last line sent without its newline
        if self._last is None:
            raise self._cut('the stream ended before its line with "done": true')
        last = self._last
        return Completion(
            text="".join(self._text),
            finish_reason=_FINISH.get(last.get("done_reason") or "stop", "other"),
            usage=Usage(last.get("prompt_eval_count") or 0, last.get("eval_count") or 0),
            model_id=str(last.get("model") or ""),
        )


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    # Ollama takes the plain "system" role and lets each model's chat template place it.
    system = prompt.system
    if prompt.mode is OutputMode.JSON_SCHEMA:
        # The grammar enforces the shape; the docs advise the text as well, so the model knows what it fills in.
        system = f"{system}\n\n{schema_text(prompt.output)}"
    return [{"role": "system", "content": system}, *({"role": m.role, "content": m.content} for m in prompt.messages)]


def _format(prompt: Prompt, profile: ModelProfile) -> dict[str, Any] | str | None:
    if prompt.mode is OutputMode.JSON_SCHEMA:
        return prompt.output.schema  # the grammar converter takes full JSON Schema ($ref, anyOf, bounds)
    if prompt.mode is OutputMode.JSON_OBJECT:
        return "json"
    if prompt.mode is OutputMode.PROMPTED:
        return None
    raise ConfigError(
        f"output mode {prompt.mode.value!r} is not available on {profile.name} (Ollama has no forced tool call "
        f"and takes no raw grammar); choose one of {', '.join(m.value for m in _MODES)}"
    )


def _options(settings: Settings) -> dict[str, Any]:
    options = {"temperature": settings.temperature, "seed": settings.seed, "num_predict": settings.max_output_tokens}
    return {name: value for name, value in options.items() if value is not None}


def ollama_base_url(value: str) -> str:
    """A base URL from an address in any form `OLLAMA_HOST` takes, read as Ollama's client reads it.

    "host", "host:port", ":port" and full URLs are accepted; without a scheme it is http on port 11434 (with
    one, the scheme's own port); "ollama.com" alone means https://ollama.com:443; bind-all addresses such as
    0.0.0.0 are dialled on loopback. [spec: envconfig.Host, ConnectableHost]
    """
    text = value.strip().strip("\"'").strip()
    scheme, sep, rest = text.partition("://")
    default_port = _DEFAULT_PORT
    if not sep:
        scheme, rest = ("https", "ollama.com:443") if text == "ollama.com" else ("http", text)
    elif scheme in ("http", "https"):
        default_port = "80" if scheme == "http" else "443"
    hostport, _, path = rest.partition("/")
    host, port = _split_host_port(hostport, default_port)
    if not port.isdigit() or int(port) > 65535:
        port = default_port
    host = _BIND_ALL.get(host, host)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}" + (f"/{path.rstrip('/')}" if path.rstrip("/") else "")


def _split_host_port(hostport: str, default_port: str) -> tuple[str, str]:
    """Go's net.SplitHostPort, falling back as Ollama does: no port means the default one."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end > 0 and hostport[end + 1 : end + 2] == ":":
            return hostport[1:end], hostport[end + 2 :]
    else:
        host, sep, port = hostport.rpartition(":")
        if sep and ":" not in host:
            return host, port
    bare = hostport.strip("[]")
    try:
        return str(ipaddress.ip_address(bare)), default_port
    except ValueError:
        return bare or "127.0.0.1", default_port
