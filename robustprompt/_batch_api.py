"""Provider batch APIs: `task.submit(inputs, model=...)` sends every input as one item of a provider batch and
returns a `BatchJob`, a handle to keep (`to_json`), poll, and collect into the outcomes `map` gives.

    job = classify.submit(reviews, model="openai:gpt-4.1-mini")   # uploaded and created: nothing runs here
    Path("job.json").write_text(job.to_json())                      # another process may pick it up
    job = rp.BatchJob.from_json(Path("job.json").read_text(), classify)
    outputs = job.collect()                                         # waits for the provider, then as `map`

Each item is the live call's first request as the adapter prepares it (the same output mode, schema, settings and
fingerprint), and each result goes through the engine's own parse, validate and re-ask path (`run_answered`): an
answer that fails validation is re-asked live within the policy's budget, an item the provider failed with a
retryable error is sent again live within its transport retries, and the Run's notes say which items needed that.
An item the batch never ran (expired, cancelled, a whole batch failed) or whose result line cannot be read is a
`BatchItemError`: reported, never dropped, never re-sent behind the user's back.

The protocol is the adapter's (`batch_wire()`): this module names no provider. A batch over the provider's count
or size limit is split into several, and a single request over the size limit is refused, the limit named.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from robustprompt._errors import BatchItemError, ConfigError, ProviderError, RobustPromptError, contained, run_of, typed
from robustprompt._http import HttpBackend
from robustprompt._ledger import Ledger
from robustprompt._model import Model
from robustprompt._policy import Policy
from robustprompt._resolve import model as make_model
from robustprompt._resolve import resolve
from robustprompt._retry import Request, Sent, send
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

__all__ = ["BatchJob", "BatchProgress", "chunked", "submit"]

O = TypeVar("O")
T = TypeVar("T")

FORMAT = 1  # of `to_json`
_ENVELOPE = 64  # bytes a batch adds around its lines (the upload's form fields, the JSON list's brackets)
_RESULT_BYTES = 2 * 1024 * 1024 * 1024  # a results file is as large as the batch's answers: up to the provider
_PROTOCOL_TRIES = 5  # sends of one poll or download; a creation is sent again only when refused unprocessed
_UNPROCESSED = frozenset({429, 503, 529})  # refused before any work: sending a creation again makes no duplicate
_CUSTOM_ID = "rp-{}"  # ^[a-zA-Z0-9_-]{1,64}$, unique within a job


# The settings a resumed job's model is made with, so that a re-ask after the batch is asked as the batch was.
_SETTINGS = ("temperature", "max_output_tokens", "seed", "timeout")


def _model(name: str, base_url: Any, settings: Any) -> Model:
    chosen = {k: v for k, v in settings.items() if k in _SETTINGS} if isinstance(settings, dict) else {}
    return make_model(name, base_url=base_url if isinstance(base_url, str) else None, **chosen)


def _custom_id(index: int) -> str:
    return _CUSTOM_ID.format(index)


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


def _drive(backend: HttpBackend, exchange: Exchange[T], resend: bool) -> T:
    """Carry a batch protocol's exchanges. A refused or failed request is sent again after a pause (polls and
    downloads always; a creation or an upload only when `resend`, i.e. when the refusal says nothing was made)."""
    answer: HttpAnswer | None = None
    while True:
        try:  # an exchange may need no request at all (a failed batch has no result file to read)
            call = next(exchange) if answer is None else exchange.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        answer = _answer(backend, call, resend or call.method == "GET")


def _answer(backend: HttpBackend, call: HttpCall, idempotent: bool) -> HttpAnswer:
    for attempt in range(_PROTOCOL_TRIES):
        last = attempt == _PROTOCOL_TRIES - 1
        try:
            answer = backend.exchange(call, _RESULT_BYTES)
        except ProviderError as exc:  # no answer at all: a connection or a timeout
            if not (exc.retryable and idempotent) or last:
                raise
        else:
            retryable = error_for_status(answer.status, answer.headers).retryable
            if last or not (answer.status in _UNPROCESSED or (idempotent and retryable)):
                return answer
        time.sleep(min(2.0**attempt, 30.0))
    raise AssertionError("unreachable")  # pragma: no cover


def _lines(
    task: TaskDeclaration[Any, Any], values: Sequence[Any], model: Model, policy: Policy, wire: BatchWire
) -> Iterator[tuple[int, bytes]]:
    """Each input's first request as the batch's line. An input no request can be made of (too long for the
    window) is left out: collecting it meets the same error, as that input's outcome."""
    from robustprompt._engine import first_prompt

    backend, _ = _wire(model)
    for index, value in enumerate(values):
        try:
            prompt = first_prompt(task, value, model, policy)
        except ProviderError:
            continue
        call = backend.adapter.prepare(prompt, model.profile, model.settings, backend.endpoint)
        yield index, wire.line(_custom_id(index), call)


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
    each); `on_part(job)` sees the job after each batch is created, e.g. to store the handle at once. `keys` label
    the items (default: their indices) for whoever resumes the job."""
    handle = resolve(model)
    backend, wire = _wire(handle)
    policy = policy or Policy()
    values = list(inputs)
    labels = [str(i) for i in range(len(values))] if keys is None else list(keys)
    if len(labels) != len(values):
        raise ConfigError(f"submit: {len(labels)} keys for {len(values)} inputs: give one key per input")
    if max_items is not None and max_items < 1:
        raise ConfigError(f"submit: max_items must be at least 1, got {max_items}")
    limit = min(wire.max_requests, max_items or wire.max_requests)
    job = BatchJob(task, handle, policy, [task.input_json(v) for v in values], labels, [], _values=values)
    start = 0
    try:
        for part in chunked(_lines(task, values, handle, policy, wire), limit, wire.max_bytes, wire.name):
            batch_id = _drive(backend, wire.submit([line for _, line in part], backend.endpoint), resend=False)
            if not batch_id:
                raise ProviderError(f"{wire.name} created a batch without an id", provider=handle.profile.provider)
            stop = part[-1][0] + 1
            job.parts.append(_Part(batch_id, start, stop))
            start = stop
            if on_part is not None:
                on_part(job)
    except ConfigError as exc:  # an input found unfit after some batches went: they would be paid for nothing
        if job.parts:
            job.cancel()
            raise ConfigError(f"{exc} (the {len(job.parts)} batch(es) already submitted were cancelled)") from None
        raise
    if job.parts:  # the inputs after the last line, left out, are the last batch's to account for
        job.parts[-1] = replace(job.parts[-1], stop=len(values))
    job.complete = True
    if on_part is not None:
        on_part(job)
    return job


@dataclass(eq=False)
class BatchJob(Generic[O]):
    """Inputs sent to a provider's batch API: poll it, wait for it, collect its outcomes. Keep it across processes
    with `to_json` / `BatchJob.from_json(text, task)`: the handle holds the batch ids, the model's name and address
    (never its key) and the inputs, so a resumed job polls and collects instead of submitting again."""

    task: TaskDeclaration[Any, O]
    model: Model
    policy: Policy
    inputs: list[str] = field(repr=False)  # each input's JSON, as the task serialises it
    keys: list[str] = field(repr=False)
    parts: list[_Part]
    complete: bool = False  # every batch was created (a handle stored while submitting may have fewer)
    _values: list[Any] | None = field(default=None, repr=False)
    _states: dict[str, BatchState] = field(default_factory=dict, repr=False)

    @property
    def batch_ids(self) -> list[str]:
        return [part.id for part in self.parts]

    def __len__(self) -> int:
        return len(self.inputs)

    def to_json(self) -> str:
        backend = self.model.backend
        return json.dumps(
            {
                "format": FORMAT,
                "task": self.task.name,
                "fingerprint": self.task.fingerprint,
                "model": self.model.name,
                "base_url": backend.base_url if isinstance(backend, HttpBackend) else None,
                "settings": {name: getattr(self.model.settings, name) for name in _SETTINGS},
                "parts": [[p.id, p.start, p.stop] for p in self.parts],
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
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"not a batch job handle ({type(exc).__name__}: {exc}): pass what to_json() wrote"
            ) from None
        if version != FORMAT:
            raise ConfigError(f"batch job handle format {version}, this robustprompt reads {FORMAT}: upgrade it")
        if fingerprint != task.fingerprint:
            raise ConfigError(
                f"this batch was submitted for another version of task {data.get('task')!r} (its instructions, "
                "types or examples changed since): collect it with that version, or submit again"
            )
        handle = resolve(model) if model is not None else _model(name, data.get("base_url"), data.get("settings"))
        return cls(task, handle, policy or Policy(), inputs, keys, parts, bool(data.get("complete")))

    # Watching the provider.

    def poll(self) -> BatchProgress:
        """Ask the provider how every batch not yet ended stands (one request each)."""
        return self._each_open(lambda wire, batch_id, endpoint: wire.poll(batch_id, endpoint))

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
        batches go on: wait or collect again later, from this handle)."""
        started = time.monotonic()
        while not (progress := self.poll()).ended:
            if timeout is not None and time.monotonic() - started >= timeout:
                raise ConfigError(f"the batches did not end within {timeout:g} s ({progress}): collect them later")
            time.sleep(interval)
        return progress

    def cancel(self) -> BatchProgress:
        """Ask the provider to cancel every batch not yet ended; what finished stays collectable."""
        return self._each_open(lambda wire, batch_id, endpoint: wire.cancel(batch_id, endpoint))

    def _each_open(self, step: Callable[[BatchWire, str, Endpoint], Exchange[BatchState]]) -> BatchProgress:
        backend, wire = _wire(self.model)
        for part in self.parts:
            state = self._states.get(part.id)
            if state is None or not state.ended:
                self._states[part.id] = _drive(backend, step(wire, part.id, backend.endpoint), resend=True)
        return self.progress()

    # Collecting.

    def outcomes(
        self, *, interval: float = 30.0, timeout: float | None = None
    ) -> Iterator[tuple[int, Run[O] | RobustPromptError]]:
        """(index, outcome) for every item, batch by batch as each ends (waiting for it), the whole Run or the
        typed error that ended the item."""
        backend, wire = _wire(self.model)
        started = time.monotonic()
        for part in self.parts:
            state = self._ended(part, interval, None if timeout is None else started + timeout)
            items = _drive(backend, wire.results(state, backend.endpoint), resend=True)
            found = {item.custom_id: item for item in items if item.custom_id}
            unread = [item.message for item in items if not item.custom_id]
            for index in range(part.start, part.stop):
                item = found.pop(_custom_id(index), None)
                yield index, self._outcome(index, item, state, unread, wire)
        if self.complete and not self.parts:  # no input could be sent: each meets its own error
            nothing = BatchState("", "not submitted", True)
            for index in range(len(self.inputs)):
                yield index, self._outcome(index, None, nothing, [], wire)

    def collect(
        self, *, runs: bool = False, ledger: Ledger | None = None, interval: float = 30.0, timeout: float | None = None
    ) -> list[O | RobustPromptError]:
        """Wait for the batches, then item i is input i's validated output or the typed error that ended it, as
        `map` gives (whole Runs with `runs=True`). `ledger` totals the items at the batch's price."""
        results: list[Any] = [None] * len(self.inputs)
        for index, outcome in self.outcomes(interval=interval, timeout=timeout):
            if ledger is not None:
                ledger.add(self.task.name, outcome)
            results[index] = outcome if runs or isinstance(outcome, RobustPromptError) else outcome.output
        return results

    def _ended(self, part: _Part, interval: float, deadline: float | None) -> BatchState:
        backend, wire = _wire(self.model)
        while True:
            state = self._states.get(part.id)
            if state is not None and state.ended:
                return state
            self._states[part.id] = state = _drive(backend, wire.poll(part.id, backend.endpoint), resend=True)
            if state.ended:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise ConfigError(f"batch {part.id} did not end in time ({state.status}): collect it later")
            time.sleep(interval)

    def _value(self, index: int) -> Any:
        if self._values is not None:
            return self._values[index]
        return self.task.input_from_json(self.inputs[index])

    def _outcome(
        self, index: int, item: BatchItem | None, state: BatchState, unread: list[str], wire: BatchWire
    ) -> Run[O] | RobustPromptError:
        from robustprompt._engine import run_answered

        def answer(request: Request) -> Sent:
            return self._sent(request, item, state, unread)

        try:
            run = run_answered(self.task, self._value(index), self.model, self.policy, answer, wire.discount)
        except RobustPromptError as exc:
            _note(run_of(exc), state)
            return exc
        except Exception as exc:
            if contained(exc):
                return typed(exc, None)
            raise
        _note(run, state)
        return run

    def _sent(self, request: Request, item: BatchItem | None, state: BatchState, unread: list[str]) -> Sent:
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
            live = send(replace(request, tries=request.tries - 1), self.policy)
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
