"""OpenTelemetry: a span per call with a child per attempt, attributes after the GenAI semantic conventions, never a
prompt, input, answer or key; and no OpenTelemetry import at all for a program that does not use it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import robustprompt as rp
from robustprompt._cache import Cache
from robustprompt._hooks import AttemptEnd, AttemptStart, CallInfo, Hook, RunEnd, hooks
from robustprompt._otel import _operation, _request_attributes
from robustprompt._prompt import Prompt
from robustprompt.testing import FunctionModel, OpenAIServer, ScriptedModel
from robustprompt.testing._openai_server import chat_reply
from tests.models import Review, classify_task

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

FAST = rp.Policy(backoff_initial=0.001, backoff_max=0.002)


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    # The global provider can be set once per process: reuse an SDK provider another module may have set.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def split(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The call's span and its attempts' spans, checking that each attempt is a child of the call."""
    finished = exporter.get_finished_spans()
    (call,) = [s for s in finished if s.name.startswith("task ")]
    attempts = [s for s in finished if s is not call]
    assert call.context is not None
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in attempts)
    return call, attempts


def test_a_call_with_a_reask_gives_a_call_span_and_two_inference_spans(spans: InMemorySpanExporter) -> None:
    answers = [
        rp.Completion('{"label": "great"}', usage=rp.Usage(30, 4), model_id="scripted-2025"),
        rp.Completion('{"label": "positive"}', usage=rp.Usage(40, 3), model_id="scripted-2025"),
    ]
    task = classify_task()
    task(Review(text="x"), model=ScriptedModel(answers))
    call, attempts = split(spans)
    assert (
        call.name == "task classify" and call.kind is SpanKind.INTERNAL and call.status.status_code is StatusCode.UNSET
    )
    assert dict(call.attributes or {}) == {
        "robustprompt.task.name": "classify",
        "robustprompt.task.fingerprint": task.fingerprint,
        "robustprompt.model": "test:scripted",
        "robustprompt.attempts": 2,
        "robustprompt.cache_hit": False,
        "robustprompt.answered_by": "test:scripted",
    }
    assert [s.name for s in attempts] == ["chat scripted", "chat scripted"]
    first, second = (dict(s.attributes or {}) for s in attempts)
    assert first == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "test",
        "gen_ai.request.model": "scripted",
        "gen_ai.response.model": "scripted-2025",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 4,
        "robustprompt.output_mode": "prompted",
        "robustprompt.attempt": 1,
        "robustprompt.valid": False,
        "robustprompt.transport_retries": 0,
    }
    assert second["robustprompt.attempt"] == 2 and second["robustprompt.valid"] is True
    assert all(s.kind is SpanKind.CLIENT and s.status.status_code is StatusCode.UNSET for s in attempts)


def test_errors_set_error_type_and_status(spans: InMemorySpanExporter) -> None:
    dead = ScriptedModel([rp.ModelNotFoundError("gone")], name="test:dead")
    fallback = FunctionModel(lambda _: '{"label": "neutral"}')
    classify_task()(Review(text="x"), model=dead, policy=rp.Policy(fallbacks=(fallback,)))
    call, (failed, answered) = split(spans)
    assert failed.attributes is not None and failed.attributes["error.type"] == "ModelNotFoundError"
    assert failed.status.status_code is StatusCode.ERROR and "gen_ai.response.model" not in failed.attributes
    assert answered.status.status_code is StatusCode.UNSET and call.status.status_code is StatusCode.UNSET
    assert call.attributes is not None and call.attributes["robustprompt.answered_by"] == fallback.name

    spans.clear()
    with pytest.raises(rp.OutputError):
        classify_task()(Review(text="x"), model=ScriptedModel(['{"label": "great"}'] * 2))
    call, attempts = split(spans)
    assert call.attributes is not None and call.attributes["error.type"] == "OutputError"
    assert "robustprompt.answered_by" not in call.attributes
    assert call.status.status_code is StatusCode.ERROR and len(attempts) == 2


def test_transport_retries_stay_inside_one_attempt_span(spans: InMemorySpanExporter) -> None:
    model = ScriptedModel([rp.RateLimitError("slow down"), '{"label": "positive"}'])
    classify_task()(Review(text="x"), model=model, policy=FAST)
    _, (attempt,) = split(spans)
    assert attempt.attributes is not None and attempt.attributes["robustprompt.transport_retries"] == 1


def test_an_http_call_records_the_conventions_and_no_secret(spans: InMemorySpanExporter) -> None:
    key, marker = "sk-planted-otel-51c7d2", "private-input-9b1e"
    task: rp.Task[str, str] = rp.Task(
        "summarise", input=str, output=str, instructions="Summarise the text. secret-instruction-77"
    )
    with OpenAIServer(api_key=key) as server, httpx.Client() as client:
        server.enqueue(chat_reply('{"answer": "short"}', prompt_tokens=12, completion_tokens=3))
        model = rp.model(
            "openai:gpt-4.1-mini",
            base_url=server.base_url,
            api_key=key,
            temperature=0,
            max_output_tokens=200,
            seed=3,
            http_client=client,
        )
        task(f"{marker} text", model=model)
    _, (attempt,) = split(spans)
    assert attempt.name == "chat gpt-4.1-mini" and attempt.kind is SpanKind.CLIENT
    attributes = dict(attempt.attributes or {})
    assert (
        attributes
        | {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4.1-mini",
            "gen_ai.response.model": "gpt-4.1-mini-2025-04-14",
            "gen_ai.request.temperature": 0,
            "gen_ai.request.max_tokens": 200,
            "gen_ai.request.seed": 3,
            "gen_ai.output.type": "json",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 3,
        }
        == attributes
    )
    everything = repr([(s.name, dict(s.attributes or {}), s.events) for s in spans.get_finished_spans()])
    for secret in (key, marker, "secret-instruction-77", "short", "127.0.0.1"):
        assert secret not in everything


def test_spans_made_during_an_attempt_nest_under_it(spans: InMemorySpanExporter) -> None:
    def traced(_: Prompt) -> str:
        with trace.get_tracer("test").start_as_current_span("inner"):
            return '{"label": "positive"}'

    classify_task()(Review(text="x"), model=FunctionModel(traced))
    finished = {s.name: s for s in spans.get_finished_spans()}
    inner, attempt = finished["inner"], finished["chat function"]
    assert inner.parent is not None and attempt.context is not None
    assert inner.parent.span_id == attempt.context.span_id


def test_other_hooks_see_the_spans_as_current(spans: InMemorySpanExporter) -> None:
    class Seen(Hook):
        def __init__(self) -> None:
            self.names: list[str] = []

        def _note(self) -> None:
            self.names.append(getattr(trace.get_current_span(), "name", "none"))

        def run_start(self, call: CallInfo) -> None:
            self._note()

        def attempt_start(self, event: AttemptStart) -> None:
            self._note()

        def attempt_end(self, event: AttemptEnd) -> None:
            self._note()

        def run_end(self, event: RunEnd) -> None:
            self._note()

    with hooks.added(Seen()) as seen:
        classify_task()(Review(text="x"), model=ScriptedModel(['{"label": "positive"}']))
    assert seen.names == ["task classify", "chat scripted", "chat scripted", "task classify"]


def test_concurrent_calls_get_separate_traces(spans: InMemorySpanExporter) -> None:
    model = FunctionModel(lambda _: '{"label": "positive"}')

    async def three() -> None:
        task = classify_task()
        await asyncio.gather(*(task.acall(Review(text=str(i)), model=model) for i in range(3)))

    asyncio.run(three())
    finished = spans.get_finished_spans()
    calls = [s for s in finished if s.name.startswith("task ")]
    assert len(calls) == 3 and len({s.context.trace_id for s in calls if s.context}) == 3
    for call in calls:
        children = [
            s for s in finished if s.parent is not None and call.context and s.parent.span_id == call.context.span_id
        ]
        assert len(children) == 1 and children[0].context and call.context
        assert children[0].context.trace_id == call.context.trace_id


def test_an_interrupted_call_closes_its_spans_and_restores_the_context(spans: InMemorySpanExporter) -> None:
    class Stop(BaseException):
        pass

    def interrupted(_: Prompt) -> str:
        raise Stop

    with pytest.raises(Stop):
        classify_task()(Review(text="x"), model=FunctionModel(interrupted))
    call, (attempt,) = split(spans)
    for span in (call, attempt):
        assert span.attributes is not None and span.attributes["error.type"] == "Stop"
        assert span.status.status_code is StatusCode.ERROR
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_cache_hit_is_a_call_span_without_attempts(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    model, review = FunctionModel(lambda _: '{"label": "positive"}'), Review(text="x")
    with Cache(tmp_path / "c.sqlite") as cache:
        classify_task()(review, model=model, cache=cache)
        spans.clear()
        classify_task()(review, model=model, cache=cache)
    call, attempts = split(spans)
    assert attempts == [] and call.attributes is not None
    assert call.attributes["robustprompt.cache_hit"] is True and call.attributes["robustprompt.attempts"] == 0


@pytest.mark.parametrize(
    ("provider", "style", "operation", "name"),
    [
        ("gemini", "chat", "generate_content", "gcp.gemini"),
        ("bedrock", "chat", "chat", "aws.bedrock"),
        ("azure", "chat", "chat", "azure.ai.openai"),
        ("mistral", "chat", "chat", "mistral_ai"),
        ("openai-responses", "chat", "chat", "openai"),
        ("anthropic", "chat", "chat", "anthropic"),
        ("local", "completion", "text_completion", "local"),
    ],
)
def test_provider_and_operation_names_follow_the_conventions(
    provider: str, style: str, operation: str, name: str
) -> None:
    profile = rp.ModelProfile(provider, "m", prompt_style=style)  # type: ignore[arg-type]
    model = rp.Model(f"{provider}:m", profile, rp.Settings(), FunctionModel(lambda _: "{}").backend)
    assert _operation(model) == operation
    attributes = _request_attributes(model, rp.OutputMode.TOOL_CALL, operation)
    assert attributes["gen_ai.provider.name"] == name and "gen_ai.output.type" not in attributes


def test_opentelemetry_is_not_imported_unless_the_app_imported_it() -> None:
    program = (
        "import sys, robustprompt as rp\n"
        "from robustprompt.testing import FunctionModel\n"
        "task = rp.Task('t', input=str, output=str, instructions='Echo.')\n"
        "assert task('x', model=FunctionModel(lambda _: '{\"answer\": \"x\"}')) == 'x'\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.local_model
def test_the_in_process_runtime_gives_internal_text_completion_spans(spans: InMemorySpanExporter) -> None:
    gemma = rp.model("local:gemma3-270m", temperature=0, max_output_tokens=32)
    classify_task()(Review(text="Absolutely wonderful, I love it."), model=gemma)
    _, attempts = split(spans)
    attempt = attempts[0]
    assert attempt.name == "text_completion gemma3-270m" and attempt.kind is SpanKind.INTERNAL
    assert attempt.attributes is not None and attempt.attributes["gen_ai.provider.name"] == "local"
    assert attempt.attributes["gen_ai.usage.output_tokens"] > 0  # type: ignore[operator]


def test_a_streamed_attempt_records_its_time_to_first_chunk_and_partial(spans: InMemorySpanExporter) -> None:
    from robustprompt.testing._openai_server import chat_stream

    with OpenAIServer(api_key="sk-test-otel-stream") as server:
        server.enqueue(chat_stream('{"label": "positive"}', pieces=6, chunk_delay=0.05))
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="sk-test-otel-stream")
        *_, output = classify_task().stream_output(Review(text="x"), model=model)
    assert output.label == "positive"
    _, (attempt,) = split(spans)
    attributes = dict(attempt.attributes or {})
    first_chunk = attributes["gen_ai.response.time_to_first_chunk"]
    first_partial = attributes["robustprompt.time_to_first_partial"]
    assert isinstance(first_chunk, float) and isinstance(first_partial, float)
    assert 0 < first_chunk < first_partial  # the label shows only once whole: after several chunks
    assert first_partial - first_chunk >= 0.2  # "positive" is whole in the last of 7 pieces sent 0.05 s apart
