"""Provider adapters: one module per API.

An HTTP adapter is pure translation (no I/O): it turns a provider-neutral `Prompt` into an `HttpCall`, and a raw
HTTP response into a `Completion` or a `ProviderError`; `robustprompt._http` does the I/O. An in-process adapter
(`local`) opens a model that computes in this process instead. `_registry` says which adapter serves which
provider; third-party adapters register through the entry-point group `robustprompt.adapters` (name = the
model-string prefix, value = the adapter class).

Optional class attributes, for tracing (OpenTelemetry GenAI conventions): `otel_provider`, the provider's name
there when it differs from ours; `otel_operation`, when the operation is not "chat" ("text_completion" for a
completion-style model); `in_process`, for a runtime with no network hop.

An HTTP adapter whose provider has a batch API says so with `batch_wire()`, returning a `BatchWire`: the batch
protocol's pure translation, as the adapter is the live call's (`robustprompt._batch_api` drives it).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

from robustprompt._completion import Completion
from robustprompt._model import Model
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Prompt

__all__ = [
    "Adapter",
    "BatchAdapter",
    "BatchCandidate",
    "BatchItem",
    "BatchState",
    "BatchWire",
    "Endpoint",
    "Exchange",
    "HttpAnswer",
    "HttpCall",
    "InProcessAdapter",
    "StreamDecoder",
    "StreamingAdapter",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to call: the provider settings axis."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class HttpCall:
    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)  # carries the credentials
    body: Any
    content: bytes | None = field(default=None, repr=False)  # the exact bytes to send (a signature covers them)


class Adapter(Protocol):
    provider: ClassVar[str]
    default_base_url: ClassVar[str]  # "" when the user must give one (a deployment, a self-hosted server)
    base_url_env: ClassVar[tuple[str, ...]]  # variables that may name the base URL, first set wins
    api_key_env: ClassVar[tuple[str, ...]]  # first set variable wins
    api_key_required: ClassVar[bool]  # False for servers that may run without auth

    def default_profile(self, model_id: str) -> ModelProfile:
        """The profile of a model the catalog does not list."""
        ...

    def prepare(self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint) -> HttpCall: ...

    def read(self, status: int, headers: Mapping[str, str], body: bytes, profile: ModelProfile) -> Completion:
        """The completion of a 2xx response; raises a `ProviderError` subclass for anything else."""
        ...


class StreamDecoder(Protocol):
    """One streamed response body, decoded as it arrives (pure: the backend feeds it the bytes)."""

    def feed(self, data: bytes) -> list[str]:
        """The answer text this data completes (pieces, in order); raises the `ProviderError` a non-streamed
        call would raise when the server reports an error inside the stream."""
        ...

    def finish(self) -> Completion:
        """The whole answer once the body ended; raises a retryable `ProviderError` if it ended too soon."""
        ...


@runtime_checkable
class StreamingAdapter(Protocol):
    """An HTTP adapter that can also ask for the answer as a stream, in its provider's own wire format. A 2xx
    response is fed to its decoder; any other status is read by `read`, as a non-streamed response is."""

    def prepare_stream(
        self, prompt: Prompt, profile: ModelProfile, settings: Settings, endpoint: Endpoint
    ) -> HttpCall: ...

    def stream_decoder(self, profile: ModelProfile) -> StreamDecoder | None:
        """A decoder for one response, or None when this API's streams are not decoded yet (a subclass of an
        adapter that streams may speak another stream format)."""
        ...


@runtime_checkable
class InProcessAdapter(Protocol):
    """A provider whose models run in this process: it opens the handle itself."""

    provider: ClassVar[str]
    in_process: ClassVar[bool]

    def open(self, model_id: str, settings: Settings, profile: ModelProfile | None) -> Model: ...


# Batch APIs. A batch protocol is a few HTTP exchanges (upload, create, poll, download), each written as a generator
# that yields the request to send and receives the answer, so the wire stays pure and the runtime does the I/O.


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """An HTTP response as a batch protocol reads it."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)


Exchange: TypeAlias = Generator[HttpCall, HttpAnswer, T]


@dataclass(frozen=True, slots=True)
class BatchState:
    """A submitted batch as the provider last reported it. `ended`: no item will change any more (completed,
    expired, cancelled or failed), so its results can be read; `outcome` is the provider's word for how it
    ended; `results` where to read them (file ids or URLs, the wire's own)."""

    id: str
    status: str
    ended: bool
    counts: Mapping[str, int] = field(default_factory=dict)
    results: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # why the whole batch failed, when it did


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request's result in a batch. `answer` is the response the live call would have got (status and body),
    read by the adapter's `read`; without one, `kind` says why (errored, expired, canceled, malformed) and
    `message` what the provider said."""

    custom_id: str
    kind: Literal["answered", "errored", "expired", "canceled", "malformed"]
    answer: HttpAnswer | None = None
    message: str = ""
    code: str | None = None


@dataclass(frozen=True, slots=True)
class BatchCandidate:
    """A listed batch that may be the one a job was creating when its process stopped. `confirmed`: the
    provider's own record says it carries the job's mark; otherwise only its size and time fit (its results,
    once it ends, tell)."""

    id: str
    confirmed: bool


class BatchWire(Protocol):
    """A provider's batch API. Limits are the provider's (PROVIDERS.md §8); `discount` is the share of the list
    price a batch item costs (0.5: half)."""

    name: ClassVar[str]
    max_requests: ClassVar[int]
    max_bytes: ClassVar[int]
    discount: ClassVar[float]

    def line(self, custom_id: str, call: HttpCall) -> bytes:
        """The batch's encoding of the live call `call` (the adapter's own request), one JSON line."""
        ...

    def submit(self, lines: Sequence[bytes], endpoint: Endpoint, mark: str) -> Exchange[str]:
        """Send `lines` as one batch stamped with `mark` (the job's custom_id prefix), where the API keeps such a
        stamp; returns its id."""
        ...

    def find(self, mark: str, count: int, since: float, endpoint: Endpoint) -> Exchange[list[BatchCandidate]]:
        """The batches created since `since` (Unix seconds) that may be the job's `count`-request batch marked
        `mark`, from the provider's list of batches (newest first, read no further back than `since`)."""
        ...

    def poll(self, batch_id: str, endpoint: Endpoint) -> Exchange[BatchState]: ...

    def results(self, state: BatchState, endpoint: Endpoint) -> Exchange[list[BatchItem]]:
        """Every result line of an ended batch, in the provider's order (not the input's)."""
        ...

    def cancel(self, batch_id: str, endpoint: Endpoint) -> Exchange[BatchState]: ...


@runtime_checkable
class BatchAdapter(Protocol):
    """An HTTP adapter that may send its requests as a provider batch."""

    def batch_wire(self) -> BatchWire | None:
        """Its provider's batch protocol, or None when this API (or this subclass's server) has none."""
        ...
