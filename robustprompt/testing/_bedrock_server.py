"""A loopback server that answers like Amazon Bedrock's Converse API, for tests with no network.

It checks auth the way AWS does: a Bedrock API key (`Authorization: Bearer`), or a SigV4 signature that it
recomputes with botocore from the raw request and the known test secret, so a request whose body, path or
signed headers differ from what was signed is refused with AWS's 403.

    with BedrockServer(access_key_id="AKIDTEST", secret_access_key="secret", region="us-east-1") as server:
        server.enqueue(throttled(), converse_reply('{"answer": 42}'))
        ...  # call server.base_url with those credentials in the environment and AWS_REGION=us-east-1

Bodies follow botocore's `bedrock-runtime` service model (`ConverseResponse`); errors carry their type in the
`x-amzn-ErrorType` header and a `{"message"}` body, as Bedrock's do.
"""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
import json
import re
import string
import struct
import threading
import uuid
import zlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from robustprompt.testing._server import Headers, LoopbackServer, Received, Reply, json_reply, text_pieces

__all__ = [
    "BedrockServer",
    "BedrockWire",
    "access_denied",
    "context_too_long",
    "converse_reply",
    "converse_stream",
    "end_of_life",
    "error_reply",
    "event_frame",
    "internal_error",
    "invalid_model_id",
    "model_not_ready",
    "model_timeout",
    "needs_inference_profile",
    "schema_rejected",
    "service_unavailable",
    "throttled",
    "tool_choice_unsupported",
]

CONVERSE_PATH = re.compile(r"/model/([^/]+)/converse(?:-stream)?")
_CORAL = "http://internal.amazon.com/coral/com.amazon.bedrock/"  # the header's suffix after the type
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?"
    r"SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})"
)
_MAX_SKEW = dt.timedelta(minutes=5)  # AWS refuses a signature whose X-Amz-Date is further off than this


# ---------------------------------------------------------------- replies


def converse_reply(
    text: str | None,
    *,
    stop_reason: str = "end_turn",
    input_tokens: int = 10,
    output_tokens: int = 5,
    tool_input: Any = None,
    tool_name: str = "output",
    headers: Headers = (),
) -> Reply:
    """A Converse response. With `tool_input`, the answer is a `toolUse` block calling `tool_name` (give
    `stop_reason="tool_use"`, as a forced tool call ends); `text`, when given too, comes before it."""
    content: list[dict[str, Any]] = [] if text is None else [{"text": text}]
    if tool_input is not None:
        tool_use = {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": tool_name, "input": tool_input}
        content.append({"toolUse": tool_use})
    payload = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": 420},
    }
    return json_reply(200, payload, [("x-amzn-requestid", str(uuid.uuid4())), *headers])


def event_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream frame (PROVIDERS.md §11.9): the prelude (total and headers lengths) with its CRC-32,
    the string headers in the given order, the payload, and the CRC-32 of all of it before the last four bytes."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", 7, len(raw_value)) + raw_value
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def converse_stream(
    text: str,
    *,
    pieces: int | None = None,
    split: list[int] | None = None,
    stop_reason: str = "end_turn",
    tool: bool = False,
    tool_name: str = "output",
    chunk_delay: float = 0.0,
    exception: str | None = None,
    cut: bool = False,
) -> Reply:
    """A ConverseStream answer as Bedrock sends it (PROVIDERS.md §11.9): binary frames `messageStart`, (with
    `tool`, a `contentBlockStart` naming the tool, whose input then arrives as `toolUse.input` fragments) the
    `contentBlockDelta`s, `contentBlockStop`, `messageStop`, and `metadata` with the usage after it; every payload
    carries the random `p` padding. With `exception` (an exception type such as "throttlingException"), an
    exception frame follows half the deltas and the stream ends; with `cut`, the connection drops mid-stream."""
    padding = itertools.cycle(string.ascii_letters)

    def event(kind: str, **fields: Any) -> bytes:
        pad = "".join(next(padding) for _ in range(1 + len(kind) % 7))
        payload = json.dumps({**fields, "p": pad}, separators=(",", ":"), ensure_ascii=False).encode()
        return event_frame(
            {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}, payload
        )

    events = [event("messageStart", role="assistant")]
    if tool:
        start = {"toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": tool_name}}
        events.append(event("contentBlockStart", contentBlockIndex=0, start=start))
    texts = text_pieces(text, pieces, split)
    deltas = [
        event("contentBlockDelta", contentBlockIndex=0, delta={"toolUse": {"input": t}} if tool else {"text": t})
        for t in texts
    ]
    if exception is not None:
        headers = {":exception-type": exception, ":content-type": "application/json", ":message-type": "exception"}
        failure = event_frame(headers, json.dumps({"message": f"{exception} in the stream"}).encode())
        events += [*deltas[: len(deltas) // 2], failure]
        return Reply(200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay)
    events += [*deltas, event("contentBlockStop", contentBlockIndex=0)]
    events.append(event("messageStop", stopReason="tool_use" if tool else stop_reason))
    usage = {"inputTokens": 10, "outputTokens": len(texts), "totalTokens": 10 + len(texts)}
    events.append(event("metadata", usage=usage, metrics={"latencyMs": 420}))
    return Reply(
        200, headers=_STREAM_HEADERS, chunks=tuple(events), chunk_delay=chunk_delay, fault="truncate" if cut else None
    )


_STREAM_HEADERS = (
    ("content-type", "application/vnd.amazon.eventstream"),
    ("x-amzn-requestid", "5b4f1c2e-0000-4000-8000-000000000000"),
)


def error_reply(status: int, error_type: str | None, message: str, headers: Headers = ()) -> Reply:
    """An error as Bedrock sends it: `x-amzn-ErrorType: <type>:<coral namespace>` and `{"message": ...}`."""
    sent = [("x-amzn-requestid", str(uuid.uuid4())), *headers]
    if error_type is not None:
        sent.append(("x-amzn-errortype", f"{error_type}:{_CORAL}"))
    return json_reply(status, {"message": message}, sent)


def throttled() -> Reply:
    """429 ThrottlingException. Bedrock sends no Retry-After: clients back off on their own."""
    return error_reply(429, "ThrottlingException", "Too many requests, please wait before trying again.")


def model_not_ready() -> Reply:
    """429 ModelNotReadyException: the model is loading (imported models); retryable."""
    message = (
        "The model specified in the request is not ready to serve inference requests. "
        "The AWS SDK will automatically retry the operation up to 5 times."
    )
    return error_reply(429, "ModelNotReadyException", message)


def service_unavailable() -> Reply:
    return error_reply(503, "ServiceUnavailableException", "Bedrock is unable to process your request.")


def internal_error() -> Reply:
    return error_reply(500, "InternalServerException", "An internal server error occurred. Retry your request.")


def model_timeout() -> Reply:
    message = "The request took too long to process. Processing time exceeded the model timeout length."
    return error_reply(408, "ModelTimeoutException", message)


def invalid_model_id() -> Reply:
    """400 ValidationException: how Bedrock answers an unknown model id."""
    return error_reply(400, "ValidationException", "The provided model identifier is invalid.")


def end_of_life() -> Reply:
    """404 ResourceNotFoundException for a retired (legacy) model version."""
    message = (
        "This model version has reached the end of its life. Please refer to the AWS documentation for more details."
    )
    return error_reply(404, "ResourceNotFoundException", message)


def needs_inference_profile(model: str) -> Reply:
    """400 for a model that can only be invoked through a cross-region inference profile (`us.…`, `global.…`)."""
    message = (
        f"Invocation of model ID {model} with on-demand throughput isn’t supported. Retry your request with "
        "the ID or ARN of an inference profile that contains this model."
    )
    return error_reply(400, "ValidationException", message)


def access_denied() -> Reply:
    return error_reply(403, "AccessDeniedException", "You don't have access to the model with the specified model ID.")


def context_too_long() -> Reply:
    return error_reply(400, "ValidationException", "Input is too long for requested model.")


def schema_rejected(detail: str = "schema.properties.age.minimum: Extra inputs are not permitted") -> Reply:
    """400 when Claude's layer refuses the structured-output schema; Bedrock quotes the model's own field
    (`output_config.format…`)."""
    return error_reply(
        400, "ValidationException", f"The model returned the following errors: output_config.format.{detail}"
    )


def tool_choice_unsupported(choice: str = "tool") -> Reply:
    """400 from a model that cannot be forced to call a tool."""
    message = (
        f"This model doesn't support the toolConfig.toolChoice.{choice} field. Remove toolConfig.toolChoice.{choice} "
        "and try again."
    )
    return error_reply(400, "ValidationException", message)


# Why a request failed auth -> (status, x-amzn-ErrorType, message) as AWS answers it.
_AUTH_FAILURES: dict[str, tuple[int, str | None, str]] = {
    "missing": (403, "MissingAuthenticationTokenException", "Missing Authentication Token"),
    "incomplete": (
        400,
        "IncompleteSignatureException",
        "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' with host and x-amz-date.",
    ),
    "unrecognized": (403, "UnrecognizedClientException", "The security token included in the request is invalid."),
    "scope": (
        403,
        "InvalidSignatureException",
        "Credential should be scoped to a valid region and the service 'bedrock'.",
    ),
    "expired": (
        403,
        "InvalidSignatureException",
        "Signature expired: the X-Amz-Date is more than 5 minutes off the server's time.",
    ),
    "signature": (
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.",
    ),
    # Observed body of a bad Bedrock API key; the error type it comes with was not verified, so none is sent.
    "bearer": (403, None, "Authentication failed: Please make sure your API Key is valid."),
}


# ---------------------------------------------------------------- the server


class BedrockWire:
    """Converse's path, AWS auth (SigV4 verified with botocore, or a Bedrock API key) and error shapes.

    The `api_key` a LoopbackServer passes to `authorized` is the access key id that SigV4 requests must name.
    """

    base_path: ClassVar[str] = ""
    response_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        secret_access_key: str | None = None,
        session_token: str | None = None,
        bearer_token: str | None = None,
    ) -> None:
        self.region = region
        self._secret = secret_access_key
        self._token = session_token
        self._bearer = bearer_token
        # Per handler thread: the verdict of `authorized`, which `unauthorized` reports.
        self._pending = threading.local()

    def __repr__(self) -> str:
        return f"BedrockWire(region={self.region!r})"

    def serves(self, method: str, path: str) -> bool:
        return method == "POST" and CONVERSE_PATH.fullmatch(path) is not None

    def authorized(self, received: Received, api_key: str) -> bool:
        self._pending.failure = self._auth_failure(received, api_key)
        return self._pending.failure is None

    def unauthorized(self) -> Reply:
        status, kind, message = _AUTH_FAILURES[getattr(self._pending, "failure", None) or "missing"]
        if kind is None:
            return json_reply(status, {"Message": message})
        return error_reply(status, kind, message)

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, "UnknownOperationException", f"No operation matches {method} {path}")

    def invalid_json(self) -> Reply:
        return error_reply(400, "SerializationException", "The request body could not be parsed as JSON.")

    def rejected(self, violations: list[str]) -> Reply:
        count = f"{len(violations)} validation error{'s' if len(violations) > 1 else ''} detected: "
        return error_reply(400, "ValidationException", count + "; ".join(violations))

    def server_error(self, message: str) -> Reply:
        return error_reply(500, "InternalServerException", message)

    def _auth_failure(self, received: Received, access_key_id: str) -> str | None:
        authorization = received.headers.get("authorization", "")
        if not authorization:
            return "missing"
        if authorization.startswith("Bearer "):
            given = authorization.removeprefix("Bearer ").encode()
            ok = self._bearer is not None and hmac.compare_digest(given, self._bearer.encode())
            return None if ok else "bearer"
        return self._sigv4_failure(received, access_key_id, authorization)

    def _sigv4_failure(self, received: Received, access_key_id: str, authorization: str) -> str | None:
        match = _AUTHORIZATION.fullmatch(authorization)
        if match is None:
            return "incomplete"
        key, day, region, service, signed, signature = match.groups()
        names = signed.split(";")
        amz_date = received.headers.get("x-amz-date", "")
        if not {"host", "x-amz-date"} <= set(names) or any(name not in received.headers for name in names):
            return "incomplete"
        if self._secret is None or key != access_key_id:
            return "unrecognized"
        if self._token is not None and received.headers.get("x-amz-security-token") != self._token:
            return "unrecognized"
        if region != self.region or service != "bedrock" or not amz_date.startswith(day):
            return "scope"
        if not _fresh(amz_date):
            return "expired"
        headers = {name: received.headers[name] for name in names}
        expected = _signature(received, headers, received.raw, key, self._secret, self._token, region, amz_date)
        return None if hmac.compare_digest(expected, signature) else "signature"


def _fresh(amz_date: str) -> bool:
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return False
    return abs(dt.datetime.now(dt.timezone.utc) - when) <= _MAX_SKEW


def _signature(
    received: Received,
    headers: Mapping[str, str],
    raw: bytes,
    access_key_id: str,
    secret: str,
    token: str | None,
    region: str,
    amz_date: str,
) -> str:
    """The SigV4 signature AWS would compute for this request, by botocore's own canonicalisation."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://{headers['host']}{received.path}" + (f"?{received.query}" if received.query else "")
    request = AWSRequest(method=received.method, url=url, data=raw, headers=dict(headers))
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key_id, secret, token), "bedrock", region)
    return signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)


class BedrockServer(LoopbackServer):
    """Converse on 127.0.0.1, answering from a FIFO script of replies; a context manager.

    Give `access_key_id` and `secret_access_key` (and `session_token` for temporary credentials) to require
    SigV4 requests signed with them, and/or `bearer_token` to accept a Bedrock API key; with none, auth is not
    checked. `base_url` has no path: the client adds `/model/{modelId}/converse`.
    """

    wire: BedrockWire

    def __init__(
        self,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        bearer_token: str | None = None,
        region: str = "us-east-1",
        check: Callable[[Any], list[str]] | None = None,
        responder: Callable[[Received], Reply] | None = None,
    ) -> None:
        wire = BedrockWire(
            region=region, secret_access_key=secret_access_key, session_token=session_token, bearer_token=bearer_token
        )
        # LoopbackServer checks auth when it has a key; a bearer-only server names no access key id ("").
        expected = access_key_id if access_key_id is not None else ("" if bearer_token is not None else None)
        super().__init__(wire, api_key=expected, check=check, responder=responder)
