"""OpenTelemetry spans for every call, following the GenAI semantic conventions (the `gen_ai.provider.name`
generation, semantic-conventions v1.37 and later).

Imported only once the app has imported OpenTelemetry's API (see `_hooks`). Each call gives one span, `task {name}`,
with a child per attempt: an inference span named `{gen_ai.operation.name} {gen_ai.request.model}`, of kind CLIENT
(INTERNAL for the in-process runtime), covering that attempt's transport retries as the conventions ask. Each span is
current while it runs, so spans of instrumented HTTP clients nest under their attempt.

Recorded: the operation, provider, requested and answering model, sampling settings, finish reason, token usage,
output mode, attempt number, whether the answer validated; on failure `error.type`, the class name of the
robustprompt error (`RateLimitError`, `OutputError`...) or of what interrupted the call. Never recorded: the prompt,
the input, the answer, error messages (they may quote the answer) or anything from the model's address. What a
span says of the provider (its name in the conventions, the operation, in process or not) comes from its adapter.
"""

from __future__ import annotations

from contextvars import Token
from dataclasses import dataclass

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from robustprompt._events import AttemptEnd, AttemptStart, CallInfo, Hook, RunEnd
from robustprompt._model import Model
from robustprompt._prompt import OutputMode
from robustprompt._version import __version__
from robustprompt.adapters._registry import telemetry

__all__ = ["tracing_hook"]

_JSON_MODES = frozenset({OutputMode.JSON_SCHEMA, OutputMode.JSON_OBJECT, OutputMode.GRAMMAR})  # an output format


@dataclass(frozen=True, slots=True)
class _Open:
    span: Span
    token: Token[Context]  # restores the context that was current before the span

    def close(self) -> None:
        self.span.end()
        context.detach(self.token)


def _open(name: str, kind: SpanKind, attributes: dict[str, AttributeValue]) -> _Open:
    span = trace.get_tracer("robustprompt", __version__).start_span(name, kind=kind, attributes=attributes)
    return _Open(span, context.attach(trace.set_span_in_context(span)))


def _fail(span: Span, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__name__)
    span.set_status(StatusCode.ERROR)


def _operation(model: Model) -> str:
    named = telemetry(model.profile.provider).operation
    if named is not None:
        return named
    return "text_completion" if model.profile.prompt_style == "completion" else "chat"


def _request_attributes(model: Model, mode: OutputMode, operation: str) -> dict[str, AttributeValue]:
    profile, settings = model.profile, model.settings
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": telemetry(profile.provider).provider,
        "gen_ai.request.model": profile.model_id,
        "robustprompt.output_mode": mode.value,
    }
    optional = {
        "gen_ai.request.temperature": settings.temperature,
        "gen_ai.request.max_tokens": settings.max_output_tokens,
        "gen_ai.request.seed": settings.seed,
        "gen_ai.output.type": "json" if mode in _JSON_MODES else None,
    }
    attributes.update({key: value for key, value in optional.items() if value is not None})
    return attributes


class _Tracing(Hook):
    """Spans for calls. Open spans are kept by call id: calls run concurrently in threads and tasks."""

    def __init__(self) -> None:
        self._calls: dict[int, _Open] = {}
        self._attempts: dict[int, _Open] = {}

    def run_start(self, call: CallInfo) -> None:
        attributes: dict[str, AttributeValue] = {
            "robustprompt.task.name": call.task.name,
            "robustprompt.task.fingerprint": call.task.fingerprint,
            "robustprompt.model": call.model.name,
        }
        self._calls[call.id] = _open(f"task {call.task.name}", SpanKind.INTERNAL, attributes)

    def attempt_start(self, event: AttemptStart) -> None:
        operation = _operation(event.model)
        attributes = _request_attributes(event.model, event.mode, operation)
        attributes["robustprompt.attempt"] = event.number
        kind = SpanKind.INTERNAL if telemetry(event.model.profile.provider).in_process else SpanKind.CLIENT
        name = f"{operation} {event.model.profile.model_id}"
        self._attempts[event.call.id] = _open(name, kind, attributes)

    def attempt_end(self, event: AttemptEnd) -> None:
        opened = self._attempts.pop(event.call.id, None)
        if opened is None:
            return
        span, attempt = opened.span, event.attempt
        if event.response is not None:
            if event.response.model_id:
                span.set_attribute("gen_ai.response.model", event.response.model_id)
            span.set_attribute("gen_ai.response.finish_reasons", [event.response.finish_reason])
        if attempt.usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", attempt.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", attempt.usage.output_tokens)
        if attempt.first_chunk is not None:  # streamed: seconds from the request to the first chunk of the answer
            span.set_attribute("gen_ai.response.time_to_first_chunk", attempt.first_chunk)
        if attempt.first_partial is not None:
            span.set_attribute("robustprompt.time_to_first_partial", attempt.first_partial)
        span.set_attribute("robustprompt.valid", attempt.ok)
        span.set_attribute("robustprompt.transport_retries", len(attempt.transport_errors))
        if event.error is not None:
            _fail(span, event.error)
        opened.close()

    def run_end(self, event: RunEnd) -> None:
        interrupted = self._attempts.pop(event.call.id, None)  # the call stopped during a request
        if interrupted is not None:
            if event.error is not None:
                _fail(interrupted.span, event.error)
            interrupted.close()
        opened = self._calls.pop(event.call.id, None)
        if opened is None:
            return
        span = opened.span
        span.set_attribute("robustprompt.attempts", 0 if event.cached else len(event.run.attempts))
        span.set_attribute("robustprompt.cache_hit", event.cached)
        if event.error is None:
            span.set_attribute("robustprompt.answered_by", event.run.model)
        else:
            _fail(span, event.error)
        opened.close()


tracing_hook = _Tracing()
