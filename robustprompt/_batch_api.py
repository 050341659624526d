"""Provider batch APIs: `task.submit(inputs, model=...)` sends every input as one item of a provider batch and
returns a `BatchJob`, a handle to keep (`to_json`), poll, and collect into the outcomes `map` gives.

    job = classify.submit(reviews, model="openai:gpt-4.1-mini")   # uploaded and created: nothing runs here
    Path("job.json").write_text(job.to_json())                      # another process may pick it up
    job = rp.BatchJob.from_json(Path("job.json").read_text(), classify)
    outputs = job.collect()                                         # waits for the provider, then as `map`

Each item is the live call's first request as the adapter prepares it (the same output mode, schema, settings and
fingerprint), and each result goes through the engine's own parse, validate and re-ask path (`answered`): an
answer that fails validation is re-asked live within the policy's budget, an item the provider failed with a
retryable error is sent again live within its transport retries, and the Run's notes say which items needed that.
An item the batch never ran (expired, cancelled, a whole batch failed) or whose result line cannot be read is a
`BatchItemError`: reported, never dropped, never re-sent behind the user's back.

A job has a random token: its custom_ids (`rp-{token}-{index}`) and, where the API keeps metadata, its batches
carry it. `on_part` sees the job just before each batch is created (with that batch `pending`) and just after, so
a handle kept then lets a process that stopped in between find the batch (`wire.find`) instead of paying twice.

Each operation is written once, as a flow that yields what it needs done (an HTTP exchange, a pause, a live
request, an outcome handed out) and receives the result; a sync and an async driver carry it, as the engine's
drivers carry its attempt flow. The protocol is the adapter's (`batch_wire()`): this module names no provider. A
batch over the provider's count or size limit is split into several, and a single request over the size limit is
refused, the limit named.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeAlias, TypeVar

from robustprompt._errors import BatchItemError, ConfigError, ProviderError, RobustPromptError, contained, run_of, typed
from robustprompt._http import HttpBackend
from robustprompt._ledger import Ledger
from robustprompt._model import Model
from robustprompt._policy import Policy
from robustprompt._resolve import model as make_model
from robustprompt._resolve import resolve
from robustprompt._retry import Request, Sent, asend, send
from robustprompt._run import Run
from robustprompt._task import TaskDeclaration
from robustprompt.adapters import (
    BatchAdapter,
    BatchItem,
    BatchState,
    BatchWire,
    Endpoint,
    Exchange,
    HttpAnswer,
    HttpCall,
)
from robustprompt.adapters._common import error_for_status

__all__ = ["BatchJob", "BatchProgress", "asubmit", "chunked", "submit"]

O = TypeVar("O")
T = TypeVar("T")

FORMAT = 2  # of `to_json`; 1 had no token (its custom_ids were `rp-{index}`) and no pending creation
_ENVELOPE = 64  # bytes a batch adds around its lines (the upload's form fields, the JSON list's brackets)
_RESULT_BYTES = 2 * 1024 * 1024 * 1024  # a results file is as large as the batch's answers: up to the provider
_PROTOCOL_TRIES = 5  # sends of one poll or download; a creation is sent again only when refused unprocessed
_UNPROCESSED = frozenset({429, 503, 529})  # refused before any work: sending a creation again makes no duplicate
_SKEW = 3600.0  # seconds the provider's clock may be behind ours: the batch list is read that much further back
_RECHECK = 30.0  # seconds between looks at unconfirmed candidates, for operations given no interval


# The settings a resumed job's model is made with, so that a re-ask after the batch is asked as the batch was.
_SETTINGS = ("temperature", "max_output_tokens", "seed", "timeout")


def _model(name: str, base_url: Any, settings: Any) -> Model:
    chosen = {k: v for k, v in settings.items() if k in _SETTINGS} if isinstance(settings, dict) else {}
    return make_model(name, base_url=base_url if isinstance(base_url, str) else None, **chosen)


def chunked(
    lines: Iterable[tuple[int, bytes]], max_requests: int, max_bytes: int, name: str
) -> Iterator[list[tuple[int, bytes]]]:
    """The encoded requests (index, line) cut into batches, in order, each as large as the provider's count and
    size limits allow; made as they are read, so no more than one batch's lines are held. A request larger than the
    size limit on its own is refused, naming the limit."""
    part: list[tuple[int, bytes]] = []
    size = _ENVELOPE
    for index, line in lines:
        if len(line) + 1 + _ENVELOPE > max_bytes:
            raise ConfigError(
                f"request {index} is {len(line):,} bytes encoded, over {name}'s limit of {max_bytes:,} bytes per "
                "batch: shorten its input (or its examples), or call it live with `map`"
            )
        if len(part) == max_requests or size + len(line) + 1 > max_bytes:
            yield part
            part, size = [], _ENVELOPE
        part.append((index, line))
        size += len(line) + 1
    if part:
        yield part


@dataclass(frozen=True, slots=True)
class _Part:
    """One provider batch of the job: the items from `start` to before `stop` (those whose request could be made)."""

    id: str
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """A job as the provider last reported it: each batch's status, the items counted by the provider's words
    (OpenAI: completed, failed, total; Anthropic: processing, succeeded, errored, canceled, expired), and whether
    every batch ended (its results can be collected)."""

    statuses: tuple[str, ...]
    counts: dict[str, int]
    ended: bool

    def __str__(self) -> str:
        counts = ", ".join(f"{name} {value}" for name, value in sorted(self.counts.items()))
        return f"{'ended' if self.ended else 'running'}: {', '.join(self.statuses)} ({counts})"


@dataclass(frozen=True, slots=True)
class _Intent:
    """A batch about to be created: its items (from `start` to before `stop`), how many requests it holds and
    when (Unix seconds) its creation began."""

    start: int
    stop: int
    count: int
    since: float


# The flows' effects. The driver answers an HttpCall with its HttpAnswer (or throws the ProviderError it met), a
# Request with its Sent, a pause with None, and hands a given value out to its caller.


@dataclass(frozen=True, slots=True)
class _Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Give:
    value: Any


_Effect: TypeAlias = HttpCall | Request | _Pause | _Give
_Flow: TypeAlias = Generator[_Effect, Any, T]


def _wire(model: Model) -> tuple[HttpBackend, BatchWire]:
    backend = model.backend
    adapter = backend.adapter if isinstance(backend, HttpBackend) else None
    wire = adapter.batch_wire() if isinstance(adapter, BatchAdapter) else None
    if not isinstance(backend, HttpBackend) or wire is None:
        raise ConfigError(
            f"{model.name}: no batch API robustprompt speaks for {model.profile.provider} (its adapter declares "
            "none); run the inputs live with `map` instead"
        )
    return backend, wire


@dataclass(frozen=True, slots=True)
class _Failed:
    """An HttpCall that got no answer: the driver throws the error into the flow."""

    error: ProviderError


def _step(backend: HttpBackend, policy: Policy, effect: _Effect) -> Any:
    if isinstance(effect, _Pause):
        return time.sleep(effect.seconds)
    if isinstance(effect, Request):
        return send(effect, policy)
    assert isinstance(effect, HttpCall)
    try:
        return backend.exchange(effect, _RESULT_BYTES)
    except ProviderError as exc:
        return _Failed(exc)


async def _astep(backend: HttpBackend, policy: Policy, effect: _Effect) -> Any:
    if isinstance(effect, _Pause):
        return await asyncio.sleep(effect.seconds)
    if isinstance(effect, Request):
        return await asend(effect, policy)
    assert isinstance(effect, HttpCall)
    try:
        return await backend.aexchange(effect, _RESULT_BYTES)
    except ProviderError as exc:
        return _Failed(exc)


def _resume(flow: _Flow[None], reply: Any) -> _Effect | None:
    """The flow's next effect after `reply` (None once it ended)."""
    try:
        return flow.throw(reply.error) if isinstance(reply, _Failed) else flow.send(reply)
    except StopIteration:
        return None


def _carried(model: Model, policy: Policy, flow: _Flow[None]) -> Iterator[Any]:
    """Carry `flow` with blocking I/O, yielding what it gives."""
    backend, _ = _wire(model)
    with contextlib.closing(flow):
        effect = _resume(flow, None)
        while effect is not None:
            if isinstance(effect, _Give):
                yield effect.value
            effect = _resume(flow, None if isinstance(effect, _Give) else _step(backend, policy, effect))


async def _acarried(model: Model, policy: Policy, flow: _Flow[None]) -> AsyncIterator[Any]:
    """The async twin of `_carried`."""
    backend, _ = _wire(model)
    with contextlib.closing(flow):
        effect = _resume(flow, None)
        while effect is not None:
            if isinstance(effect, _Give):
                yield effect.value
            effect = _resume(flow, None if isinstance(effect, _Give) else await _astep(backend, policy, effect))


def _given(flow: _Flow[T]) -> _Flow[None]:
    """A flow that gives its result instead of returning it, for the drivers to hand out."""
    yield _Give((yield from flow))


def _result(model: Model, policy: Policy, flow: _Flow[T]) -> T:
    return next(iter(_carried(model, policy, _given(flow))))  # type: ignore[no-any-return]


async def _aresult(model: Model, policy: Policy, flow: _Flow[T]) -> T:
    async for value in _acarried(model, policy, _given(flow)):
        return value  # type: ignore[no-any-return]
    raise AssertionError("unreachable")  # pragma: no cover


def _exchanges(exchange: Exchange[T], resend: bool) -> _Flow[T]:
    """A batch protocol's exchanges as a flow. A refused or failed request is sent again after a pause (polls
    and downloads always; a creation or an upload only when `resend`, i.e. when the refusal says nothing was made)."""
    answer: HttpAnswer | None = None
    while True:
        try:  # an exchange may need no request at all (a failed batch has no result file to read)
            call = next(exchange) if answer is None else exchange.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        answer = yield from _answer(call, resend or call.method == "GET")


def _answer(call: HttpCall, idempotent: bool) -> _Flow[HttpAnswer]:
    for attempt in range(_PROTOCOL_TRIES):
        last = attempt == _PROTOCOL_TRIES - 1
        try:
            answer: HttpAnswer = yield call
        except ProviderError as exc:  # no answer at all: a connection or a timeout
            if not (exc.retryable and idempotent) or last:
                raise
        else:
            retryable = error_for_status(answer.status, answer.headers).retryable
            if last or not (answer.status in _UNPROCESSED or (idempotent and retryable)):
                return answer
        yield _Pause(min(2.0**attempt, 30.0))
    raise AssertionError("unreachable")  # pragma: no cover


def _lines(
    task: TaskDeclaration[Any, Any], values: Sequence[Any], model: Model, policy: Policy, job: BatchJob[Any]
) -> Iterator[tuple[int, bytes]]:
    """Each input's first request as the batch's line. An input no request can be made of (too long for the
    window) is left out: collecting it meets the same error, as that input's outcome."""
    from robustprompt._engine import first_prompt

    backend, wire = _wire(model)
    for index, value in enumerate(values):
        try:
            prompt = first_prompt(task, value, model, policy)
        except ProviderError:
            continue
        call = backend.adapter.prepare(prompt, model.profile, model.settings, backend.endpoint)
        yield index, wire.line(job.custom_id(index), call)


def _job(
    task: TaskDeclaration[Any, O],
    inputs: Iterable[Any],
    model: Model | str | None,
    policy: Policy | None,
    keys: Sequence[str] | None,
    max_items: int | None,
) -> BatchJob[O]:
    handle = resolve(model)
    _wire(handle)
    values = list(inputs)
    labels = [str(i) for i in range(len(values))] if keys is None else list(keys)
    if len(labels) != len(values):
        raise ConfigError(f"submit: {len(labels)} keys for {len(values)} inputs: give one key per input")
    if max_items is not None and max_items < 1:
        raise ConfigError(f"submit: max_items must be at least 1, got {max_items}")
    inputs_json = [task.input_json(v) for v in values]
    return BatchJob(
        task, handle, policy or Policy(), inputs_json, labels, [], token=secrets.token_hex(8), _values=values
    )


def _submitting(
    job: BatchJob[O], max_items: int | None, on_part: Callable[[BatchJob[O]], None] | None
) -> _Flow[BatchJob[O]]:
    backend, wire = _wire(job.model)
    values = job._values or []
    limit = min(wire.max_requests, max_items or wire.max_requests)
    start = 0
    try:
        for part in chunked(_lines(job.task, values, job.model, job.policy, job), limit, wire.max_bytes, wire.name):
            lines = [line for _, line in part]
            stop = part[-1][0] + 1
            job.pending = _Intent(start, stop, len(lines), time.time())
            if on_part is not None:
                on_part(job)  # kept before the batch exists: a process stopped next finds it by its mark
            batch_id = yield from _exchanges(wire.submit(lines, backend.endpoint, job.mark), resend=False)
            if not batch_id:
                raise ProviderError(f"{wire.name} created a batch without an id", provider=job.model.profile.provider)
            job.parts.append(_Part(batch_id, start, stop))
            job.pending = None
            start = stop
            if on_part is not None:
                on_part(job)
    except ConfigError as exc:  # an input found unfit after some batches went: they would be paid for nothing
        if job.parts:
            yield from job._each_open(_cancel)
            raise ConfigError(f"{exc} (the {len(job.parts)} batch(es) already submitted were cancelled)") from None
        raise
    if job.parts:  # the inputs after the last line, left out, are the last batch's to account for
        job.parts[-1] = replace(job.parts[-1], stop=len(values))
    job.complete = True
    if on_part is not None:
        on_part(job)
    return job


def submit(
    task: TaskDeclaration[Any, O],
    inputs: Iterable[Any],
    model: Model | str | None,
    policy: Policy | None = None,
    *,
    keys: Sequence[str] | None = None,
    max_items: int | None = None,
    on_part: Callable[[BatchJob[O]], None] | None = None,
) -> BatchJob[O]:
    """Send `inputs` to `model`'s provider as batches (as many as its limits need, at most `max_items` items
    each); `on_part(job)` sees the job just before and just after each batch is created, e.g. to store the
    handle. `keys` label the items (default: their indices) for whoever resumes the job."""
    job = _job(task, inputs, model, policy, keys, max_items)
    return _result(job.model, job.policy, _submitting(job, max_items, on_part))


async def asubmit(
    task: TaskDeclaration[Any, O],
    inputs: Iterable[Any],
    model: Model | str | None,
    policy: Policy | None = None,
    *,
    keys: Sequence[str] | None = None,
    max_items: int | None = None,
    on_part: Callable[[BatchJob[O]], None] | None = None,
) -> BatchJob[O]:
    """The async twin of `submit`."""
    job = _job(task, inputs, model, policy, keys, max_items)
    return await _aresult(job.model, job.policy, _submitting(job, max_items, on_part))


def _poll(wire: BatchWire, batch_id: str, endpoint: Endpoint) -> Exchange[BatchState]:
    return wire.poll(batch_id, endpoint)


def _cancel(wire: BatchWire, batch_id: str, endpoint: Endpoint) -> Exchange[BatchState]:
    return wire.cancel(batch_id, endpoint)


@dataclass(eq=False)
class BatchJob(Generic[O]):
    """Inputs sent to a provider's batch API: poll it, wait for it, collect its outcomes (each with an async
    twin: `apoll`, `acancel`, `aoutcomes`, `acollect`). Keep it across processes with `to_json` /
    `BatchJob.from_json(text, task)`: the handle holds the batch ids, the model's name and address (never its
    key), the inputs and the job's token, so a resumed job polls and collects instead of submitting again, and
    one kept while a batch was being created (`pending`) first looks that batch up at the provider."""

    task: TaskDeclaration[Any, O]
    model: Model
    policy: Policy
    inputs: list[str] = field(repr=False)  # each input's JSON, as the task serialises it
    keys: list[str] = field(repr=False)
    parts: list[_Part]
    complete: bool = False  # every batch was created (a handle stored while submitting may have fewer)
    token: str = ""  # marks the job's custom_ids and batches; "" in a handle of format 1
    pending: _Intent | None = None  # a batch whose creation began and whose id was not kept yet
    _values: list[Any] | None = field(default=None, repr=False)
    _states: dict[str, BatchState] = field(default_factory=dict, repr=False)

    @property
    def batch_ids(self) -> list[str]:
        return [part.id for part in self.parts]

    @property
    def mark(self) -> str:
        """What every custom_id of the job begins with (^[a-zA-Z0-9_-]{1,64}$ with the index after it)."""
        return f"rp-{self.token}-" if self.token else "rp-"

    def custom_id(self, index: int) -> str:
        return f"{self.mark}{index}"

    def __len__(self) -> int:
        return len(self.inputs)

    def to_json(self) -> str:
        backend = self.model.backend
        pending = self.pending
        return json.dumps(
            {
                "format": FORMAT,
                "task": self.task.name,
                "fingerprint": self.task.fingerprint,
                "model": self.model.name,
                "base_url": backend.base_url if isinstance(backend, HttpBackend) else None,
                "settings": {name: getattr(self.model.settings, name) for name in _SETTINGS},
                "token": self.token,
                "parts": [[p.id, p.start, p.stop] for p in self.parts],
                "pending": None if pending is None else [pending.start, pending.stop, pending.count, pending.since],
                "complete": self.complete,
                "keys": self.keys,
                "inputs": self.inputs,
            }
        )

    @classmethod
    def from_json(
        cls, text: str, task: TaskDeclaration[Any, O], *, model: Model | str | None = None, policy: Policy | None = None
    ) -> BatchJob[O]:
        """The job `to_json` wrote, for `task` (the same version: its fingerprint is checked) on `model` (default:
        the model it was submitted to, by name; pass a handle for another address or key)."""
        try:
            data = json.loads(text)
            version, fingerprint, name = data["format"], data["fingerprint"], data["model"]
            parts = [_Part(str(i), int(start), int(stop)) for i, start, stop in data["parts"]]
            keys, inputs = [str(k) for k in data["keys"]], [str(i) for i in data["inputs"]]
            pending = data.get("pending")
            intent = (
                None
                if pending is None
                else _Intent(int(pending[0]), int(pending[1]), int(pending[2]), float(pending[3]))
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConfigError(
                f"not a batch job handle ({type(exc).__name__}: {exc}): pass what to_json() wrote"
            ) from None
        if version not in (1, FORMAT):
            raise ConfigError(f"batch job handle format {version}, this robustprompt reads 1 and {FORMAT}: upgrade it")
        if fingerprint != task.fingerprint:
            raise ConfigError(
                f"this batch was submitted for another version of task {data.get('task')!r} (its instructions, "
                "types or examples changed since): collect it with that version, or submit again"
            )
        handle = resolve(model) if model is not None else _model(name, data.get("base_url"), data.get("settings"))
        complete, token = bool(data.get("complete")), str(data.get("token") or "")
        return cls(task, handle, policy or Policy(), inputs, keys, parts, complete, token, intent)

    # Watching the provider.

    def poll(self) -> BatchProgress:
        """Ask the provider how every batch not yet ended stands (one request each)."""
        return _result(self.model, self.policy, self._each_open(_poll))

    async def apoll(self) -> BatchProgress:
        return await _aresult(self.model, self.policy, self._each_open(_poll))

    def progress(self) -> BatchProgress:
        """What the last poll said (no request)."""
        states = [self._states.get(p.id) for p in self.parts]
        counts: dict[str, int] = {}
        for state in states:
            for name, value in (state.counts if state else {}).items():
                counts[name] = counts.get(name, 0) + value
        statuses = tuple(s.status if s else "not polled" for s in states)
        return BatchProgress(statuses, counts, all(s is not None and s.ended for s in states))

    def wait(self, *, interval: float = 30.0, timeout: float | None = None) -> BatchProgress:
        """Poll every `interval` seconds until every batch ended; ConfigError after `timeout` seconds (the
        batches go on: wait or collect again later, from this handle). Async code awaits `acollect`."""
        started = time.monotonic()
        while not (progress := self.poll()).ended:
            if timeout is not None and time.monotonic() - started >= timeout:
                raise ConfigError(f"the batches did not end within {timeout:g} s ({progress}): collect them later")
            time.sleep(interval)
        return progress

    def cancel(self) -> BatchProgress:
        """Ask the provider to cancel every batch not yet ended; what finished stays collectable."""
        return _result(self.model, self.policy, self._each_open(_cancel))

    async def acancel(self) -> BatchProgress:
        return await _aresult(self.model, self.policy, self._each_open(_cancel))

    def _each_open(self, step: Callable[[BatchWire, str, Endpoint], Exchange[BatchState]]) -> _Flow[BatchProgress]:
        yield from self._recovered(_RECHECK)
        backend, wire = _wire(self.model)
        for part in self.parts:
            state = self._states.get(part.id)
            if state is None or not state.ended:
                self._states[part.id] = yield from _exchanges(step(wire, part.id, backend.endpoint), resend=True)
        return self.progress()

    def _recovered(self, interval: float) -> _Flow[None]:
        """The batch whose creation began when the handle was kept, found at the provider by the job's mark
        (made, it becomes the job's next part; never made, its items are not submitted: `complete` stays False).
        Several unconfirmed candidates are waited for until their results say which is the job's."""
        intent = self.pending
        if intent is None:
            return
        backend, wire = _wire(self.model)
        while True:
            listed = wire.find(self.mark, intent.count, intent.since - _SKEW, backend.endpoint)
            found = [c for c in (yield from _exchanges(listed, resend=True)) if c.id not in self.batch_ids]
            confirmed = [c for c in found if c.confirmed]
            if confirmed or len(found) <= 1:
                break
            yield _Pause(interval)
        for candidate in (confirmed or found)[:1]:
            self.parts.append(_Part(candidate.id, intent.start, intent.stop))
        self.pending = None

    # Collecting.

    def outcomes(
        self, *, interval: float = 30.0, timeout: float | None = None
    ) -> Iterator[tuple[int, Run[O] | RobustPromptError]]:
        """(index, outcome) for every item, batch by batch as each ends (waiting for it), the whole Run or the
        typed error that ended the item."""
        return _carried(self.model, self.policy, self._outcomes(interval, timeout))

    def aoutcomes(
        self, *, interval: float = 30.0, timeout: float | None = None
    ) -> AsyncIterator[tuple[int, Run[O] | RobustPromptError]]:
        """The async twin of `outcomes`: `async for index, outcome in job.aoutcomes()`."""
        return _acarried(self.model, self.policy, self._outcomes(interval, timeout))

    def collect(
        self, *, runs: bool = False, ledger: Ledger | None = None, interval: float = 30.0, timeout: float | None = None
    ) -> list[O | RobustPromptError]:
        """Wait for the batches, then item i is input i's validated output or the typed error that ended it, as
        `map` gives (whole Runs with `runs=True`). `ledger` totals the items at the batch's price."""
        results: list[Any] = [None] * len(self.inputs)
        for index, outcome in self.outcomes(interval=interval, timeout=timeout):
            results[index] = self._kept(outcome, runs, ledger)
        return results

    async def acollect(
        self, *, runs: bool = False, ledger: Ledger | None = None, interval: float = 30.0, timeout: float | None = None
    ) -> list[O | RobustPromptError]:
        """The async twin of `collect`."""
        results: list[Any] = [None] * len(self.inputs)
        async for index, outcome in self.aoutcomes(interval=interval, timeout=timeout):
            results[index] = self._kept(outcome, runs, ledger)
        return results

    def _kept(self, outcome: Run[O] | RobustPromptError, runs: bool, ledger: Ledger | None) -> Any:
        if ledger is not None:
            ledger.add(self.task.name, outcome)
        return outcome if runs or isinstance(outcome, RobustPromptError) else outcome.output

    def _outcomes(self, interval: float, timeout: float | None) -> _Flow[None]:
        yield from self._recovered(interval)
        backend, wire = _wire(self.model)
        deadline = None if timeout is None else time.monotonic() + timeout
        for part in self.parts:
            state = yield from self._ended(part, interval, deadline)
            items = yield from _exchanges(wire.results(state, backend.endpoint), resend=True)
            found = {item.custom_id: item for item in items if item.custom_id}
            unread = [item.message for item in items if not item.custom_id]
            for index in range(part.start, part.stop):
                item = found.pop(self.custom_id(index), None)
                yield _Give((index, (yield from self._outcome(index, item, state, unread, wire))))
        if self.complete and not self.parts:  # no input could be sent: each meets its own error
            nothing = BatchState("", "not submitted", True)
            for index in range(len(self.inputs)):
                yield _Give((index, (yield from self._outcome(index, None, nothing, [], wire))))

    def _ended(self, part: _Part, interval: float, deadline: float | None) -> _Flow[BatchState]:
        backend, wire = _wire(self.model)
        while True:
            state = self._states.get(part.id)
            if state is not None and state.ended:
                return state
            state = yield from _exchanges(wire.poll(part.id, backend.endpoint), resend=True)
            self._states[part.id] = state
            if state.ended:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise ConfigError(f"batch {part.id} did not end in time ({state.status}): collect it later")
            yield _Pause(interval)

    def _value(self, index: int) -> Any:
        if self._values is not None:
            return self._values[index]
        return self.task.input_from_json(self.inputs[index])

    def _outcome(
        self, index: int, item: BatchItem | None, state: BatchState, unread: list[str], wire: BatchWire
    ) -> _Flow[Run[O] | RobustPromptError]:
        from robustprompt._engine import answered

        try:
            flow = answered(self.task, self._value(index), self.model, self.policy, wire.discount)
            request = next(flow)
            sent = yield from self._first(request, item, state, unread)
            while True:
                request = flow.send(sent)
                sent = yield request
        except StopIteration as stop:
            run: Run[O] = stop.value
            _note(run, state)
            return run
        except RobustPromptError as exc:
            _note(run_of(exc), state)
            return exc
        except Exception as exc:
            if contained(exc):
                return typed(exc, None)
            raise

    def _first(self, request: Request, item: BatchItem | None, state: BatchState, unread: list[str]) -> _Flow[Sent]:
        """What the batch brought back for the item's first request."""
        backend, _ = _wire(self.model)
        result: Any
        if item is None or item.answer is None:
            result = self._missing(item, state, unread)
        else:
            try:
                result = backend.read_answer(item.answer)
            except ProviderError as exc:
                result = exc
        if isinstance(result, ProviderError) and result.retryable and request.tries > 1:
            # The provider failed this item the way a live call may fail once: the live call's retry, now.
            live: Sent = yield replace(request, tries=request.tries - 1)
            failed = f"{type(result).__name__} in batch {state.id}: {result}"
            return Sent(live.result, (failed, *live.transport_errors), live.latency)
        return Sent(result, (), 0.0)

    def _missing(self, item: BatchItem | None, state: BatchState, unread: list[str]) -> BatchItemError:
        profile = self.model.profile
        code: str
        if item is not None:
            code, why = item.kind, item.message
        elif state.errors:
            code, why = "failed", f"the batch failed: {'; '.join(state.errors)}"
        else:
            code = "missing"
            why = f"no result for this item in batch {state.id} ({state.status})"
            if unread:
                why += f"; {len(unread)} result line(s) could not be read, the first: {unread[0]}"
        return BatchItemError(why, provider=profile.provider, model=profile.model_id, code=code)


def _note(run: Run[Any] | None, state: BatchState) -> None:
    """Say on the Run how the item was answered: by the batch alone, or with live requests after it."""
    if run is None:
        return
    live = len(run.attempts) - 1 + sum(len(a.transport_errors) for a in run.attempts[:1])
    if live > 0:
        run.notes.append(f"batch {state.id}: {live} live request(s) after the batch's answer (re-ask or retry)")
    else:
        run.notes.append(f"batch {state.id}: answered by the batch")
