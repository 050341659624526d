"""Streamed calls: the engine's attempt loop, with each answer read as it arrives.

The flow, its budgets, re-asks, downgrades, fallbacks, breakers, cache and hooks are the engine's own (`_Call`);
only the send differs. A streamed send feeds the answer's text to a `PartialJson` and yields a `Partial` whenever
what it shows changed, then hands the whole completion to the flow exactly as a non-streamed send would. When a
new request follows one that showed partials (a transport retry, a re-ask, a downgrade, a fallback), a `Restart`
says they are void. A backend that cannot stream answers in one piece: the call then yields only its output.
Leaving the loop closes the stream and with it the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import Any, TypeVar, cast

import tenacity

from robustprompt._cache import Cache
from robustprompt._completion import Completion
from robustprompt._deadline import bounded
from robustprompt._engine import _Call
from robustprompt._errors import ProviderConnectionError, ProviderError
from robustprompt._model import Model, StreamingBackend
from robustprompt._partial import Partial, PartialJson, Restart
from robustprompt._policy import Policy
from robustprompt._retry import Request, Sent, _not_past_deadline, _retrying_args, asend, send
from robustprompt._run import Run
from robustprompt._task import TaskDeclaration

__all__ = ["stream_async", "stream_async_run", "stream_sync", "stream_sync_run"]

O = TypeVar("O")

Item = Partial[Any] | Restart


def _streams(request: Request) -> StreamingBackend | None:
    backend = request.model.backend
    return backend if isinstance(backend, StreamingBackend) and backend.streams else None


class _Reading:
    """One streamed response on its way to a Completion, with the partials it showed."""

    def __init__(self, task: TaskDeclaration[Any, Any], attempt: int) -> None:
        self.reader = PartialJson(task.spec.schema)
        self.attempt = attempt
        self.shown = False
        self.completion: Completion | None = None
        self.started = time.perf_counter()
        self.first_chunk: float | None = None
        self.first_partial: float | None = None

    def take(self, item: str | Completion) -> Partial[Any] | None:
        if isinstance(item, Completion):
            self.completion = item
            return None
        if self.first_chunk is None:
            self.first_chunk = time.perf_counter() - self.started
        if not self.reader.feed(item) or not isinstance(snapshot := self.reader.snapshot(), dict):
            return None
        if self.first_partial is None and snapshot:  # `{}` shows no field yet
            self.first_partial = time.perf_counter() - self.started
        self.shown = True
        return Partial(snapshot, self.attempt)

    def result(self, model: Model) -> Completion:
        if self.completion is None:  # a backend's stream must end in its Completion
            raise ProviderConnectionError("the stream ended without an answer", model=model.name)
        return self.completion


class _Tries:
    """The bookkeeping of one streamed send over its transport retries, shared by both drivers."""

    def __init__(self, call: _Call, request: Request, shown: bool) -> None:
        self.call = call
        self.request = request
        self.shown = shown  # whether the partials of the try before are still on the consumer's screen
        self.log: list[str] = []
        self.start = time.perf_counter()
        self.attempt = len(call.run.attempts) + 1
        self.result: Completion | ProviderError | None = None
        self.last: _Reading | None = None  # the latest try's reading, for its timings

    def restart(self) -> Restart | None:
        if not self.shown:
            return None
        self.shown = False
        if self.log:
            return Restart(self.attempt, f"transport retry after {self.log[-1]}")
        last = self.call.run.attempts[-1] if self.call.run.attempts else None
        why = f"attempt {len(self.call.run.attempts)} failed: {last.errors[0]}" if last and last.errors else "retry"
        return Restart(self.attempt, why)

    def reading(self) -> _Reading:
        _not_past_deadline(self.request)
        return _Reading(self.call.task, self.attempt)

    def settle(self, retry: tenacity.AttemptManager, reading: _Reading, failure: ProviderError | None) -> None:
        """Tell tenacity how the try went, outside the stream: a consumer leaving the loop is not a failure."""
        self.shown, self.last = reading.shown, reading
        with retry:
            self.result = reading.result(self.request.model) if failure is None else failure
            if isinstance(self.result, ProviderError):
                raise self.result

    def sent(self, failure: ProviderError | None) -> tuple[Sent, bool]:
        result = failure or self.result
        assert result is not None  # tenacity ends on a success or re-raises the last failure
        first_chunk, first_partial = (self.last.first_chunk, self.last.first_partial) if self.last else (None, None)
        latency = time.perf_counter() - self.start
        return Sent(result, tuple(self.log), latency, first_chunk, first_partial), self.shown


def _send(
    call: _Call, request: Request, backend: StreamingBackend, shown: bool
) -> Generator[Item, None, tuple[Sent, bool]]:
    tries = _Tries(call, request, shown)
    try:
        for retry in tenacity.Retrying(**_retrying_args(request, call.policy, tries.log)):
            if (restart := tries.restart()) is not None:
                yield restart
            reading, failure = tries.reading(), None
            try:
                with contextlib.closing(backend.stream(request.prompt)) as pieces:
                    yield from _partials(reading, pieces, request.deadline)
            except ProviderError as exc:
                failure = exc
            tries.settle(retry, reading, failure)
    except ProviderError as exc:
        return tries.sent(exc)
    return tries.sent(None)


# The deadline bounds each step of a stream (the request's timeout is read from it), never the consumer's code
# between steps: a context variable set across a yield would leak into the loop body.


def _partials(reading: _Reading, pieces: Iterator[str | Completion], deadline: float | None) -> Iterator[Partial[Any]]:
    while True:
        with bounded(deadline):
            item = next(pieces, None)
        if item is None:
            return
        if (partial := reading.take(item)) is not None:
            yield partial


async def _asend(
    call: _Call, request: Request, backend: StreamingBackend, shown: bool
) -> AsyncGenerator[Item | tuple[Sent, bool], None]:
    tries = _Tries(call, request, shown)
    try:
        async for retry in tenacity.AsyncRetrying(**_retrying_args(request, call.policy, tries.log)):
            if (restart := tries.restart()) is not None:
                yield restart
            reading, failure = tries.reading(), None
            try:
                async with contextlib.aclosing(backend.astream(request.prompt)) as pieces:
                    while True:
                        with bounded(request.deadline):
                            item = await anext(pieces, None)
                        if item is None:
                            break
                        if (partial := reading.take(item)) is not None:
                            yield partial
            except ProviderError as exc:
                failure = exc
            tries.settle(retry, reading, failure)
    except ProviderError as exc:
        yield tries.sent(exc)
        return
    yield tries.sent(None)


def _unstreamed(call: _Call, request: Request) -> None:
    note = f"{request.model.name} answered in one piece: its backend does not stream"
    if note not in call.run.notes:
        call.run.notes.append(note)


def stream_sync(
    task: TaskDeclaration[Any, O], value: Any, model: Model | str | None, policy: Policy | None, cache: Cache | None
) -> Generator[Partial[O] | Restart | O, None, None]:
    run = yield from stream_sync_run(task, value, model, policy, cache)
    yield cast("O", run.output)


async def stream_async(
    task: TaskDeclaration[Any, O], value: Any, model: Model | str | None, policy: Policy | None, cache: Cache | None
) -> AsyncGenerator[Partial[O] | Restart | O, None]:
    async with contextlib.aclosing(stream_async_run(task, value, model, policy, cache)) as items:
        async for item in items:
            yield cast("O", item.output) if isinstance(item, Run) else item


def stream_sync_run(
    task: TaskDeclaration[Any, O], value: Any, model: Model | str | None, policy: Policy | None, cache: Cache | None
) -> Generator[Partial[O] | Restart, None, Run[O]]:
    """The streamed call's items, returning its whole Run (for a caller that keeps it: a pipeline's link)."""
    call = _Call(task, value, model, policy, cache)
    try:
        with call.observed():
            if not call.lookup():
                request: Request | None = call.first()
                shown = False
                while request is not None:
                    backend = _streams(request)
                    if backend is None:
                        _unstreamed(call, request)
                        sent = send(request, call.policy)
                    else:
                        sent, shown = yield from _send(call, request, backend, shown)
                    request = call.step(request, sent)
                call.store()
    finally:
        call.close()
    return cast("Run[O]", call.result)


async def stream_async_run(
    task: TaskDeclaration[Any, O], value: Any, model: Model | str | None, policy: Policy | None, cache: Cache | None
) -> AsyncGenerator[Partial[O] | Restart | Run[O], None]:
    """The async twin of `stream_sync_run`: an async generator cannot return, so the Run is its last item."""
    call = _Call(task, value, model, policy, cache)
    try:
        with call.observed():
            if call.cache is None or not await asyncio.to_thread(call.lookup):
                await call.embed_ahead()
                request: Request | None = call.first()
                shown = False
                while request is not None:
                    backend = _streams(request)
                    if backend is None:
                        _unstreamed(call, request)
                        sent = await asend(request, call.policy)
                    else:
                        async with contextlib.aclosing(_asend(call, request, backend, shown)) as items:
                            async for item in items:
                                if isinstance(item, tuple):
                                    sent, shown = item
                                else:
                                    yield item
                    request = call.step(request, sent)
                if call.cache is not None:
                    await asyncio.to_thread(call.store)
    finally:
        call.close()
    yield cast("Run[O]", call.result)
