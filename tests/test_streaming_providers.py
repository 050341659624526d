"""Streamed calls end to end on each provider's own wire: typed partials from a loopback server speaking it, the
validated output, and the provider's mid-stream error as the typed error of a non-streamed call. Every request is
checked by the provider's checker (the pinned spec where it covers the API, botocore's service model for Bedrock)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import robustprompt as rp
from robustprompt.testing import (
    BedrockServer,
    CohereServer,
    GeminiServer,
    LoopbackServer,
    MistralServer,
    Reply,
    ResponsesServer,
)
from robustprompt.testing._bedrock_server import converse_stream
from robustprompt.testing._cohere_server import chat_stream as cohere_stream
from robustprompt.testing._gemini_server import generate_stream
from robustprompt.testing._mistral_server import chat_stream as mistral_stream
from robustprompt.testing._responses_server import response_stream
from tests.models import Person, Review
from tests.test_bedrock import converse_request_violations
from tests.test_cohere import chat_request_violations as cohere_violations
from tests.test_gemini import MODEL as MODEL_GEMINI
from tests.test_gemini import gemini_request_violations
from tests.test_mistral import chat_request_violations as mistral_violations
from tests.test_openai_responses import responses_request_violations

KEY = "sk-test-planted-5e8d1a"
PERSON = '{"name": "Ada Lovelace", "age": 36, "nickname": null, "tags": ["math", "poetry"]}'
ONCE = rp.Policy(transport_retries=0, backoff_initial=0.01)


@functools.cache
def _stream_shape() -> Any:
    import botocore.session

    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    return model.operation_model("ConverseStream").input_shape


def converse_stream_violations(body: Any) -> list[str]:
    """Converse's rules, and the ConverseStream operation's own input shape in botocore's service model."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate({"modelId": "m", **body}, _stream_shape())
    return converse_request_violations(body) + ([report.generate_report()] if report.has_errors() else [])


@dataclass(frozen=True)
class Wire:
    server: Callable[[], LoopbackServer]
    model: str
    stream: Callable[..., Reply]
    error: Reply  # the provider's own error inside a 200 stream
    raised: type[rp.ProviderError]
    sent: Callable[[Any], bool]  # what a streamed request must carry: the switch, and nothing the API refuses
    options: tuple[tuple[str, Any], ...] = ()


WIRES = {
    "responses": Wire(
        lambda: ResponsesServer(api_key=KEY, check=responses_request_violations),
        "openai-responses:gpt-4.1-mini",
        lambda text, **kw: response_stream(text, **kw),
        response_stream(PERSON, error="nested"),
        rp.RateLimitError,
        lambda received: received.body["stream"] is True and "stream_options" not in received.body,
    ),
    "gemini": Wire(
        lambda: GeminiServer(api_key=KEY, check=gemini_request_violations),
        MODEL_GEMINI,
        lambda text, **kw: generate_stream(text, **kw),
        generate_stream(PERSON, error="raw"),
        rp.RateLimitError,
        lambda received: received.path.endswith(":streamGenerateContent") and received.query == "alt=sse",
    ),
    "mistral": Wire(
        lambda: MistralServer(api_key=KEY, check=mistral_violations),
        "mistral:mistral-small-2506",
        lambda text, **kw: mistral_stream(text, **kw),
        mistral_stream(PERSON, error=True),
        rp.ServerError,
        lambda received: received.body["stream"] is True,  # and no stream_options: the checker refuses it
    ),
    "cohere": Wire(
        lambda: CohereServer(api_key=KEY, check=cohere_violations),
        "cohere:command-a-03-2025",
        lambda text, **kw: cohere_stream(text, **kw),
        cohere_stream(PERSON, error="internal failure"),
        rp.ServerError,
        lambda received: received.body["stream"] is True and received.headers["accept"] == "text/event-stream",
    ),
    "bedrock": Wire(
        lambda: BedrockServer(bearer_token=KEY, region="us-east-1", check=converse_stream_violations),
        "bedrock:global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        lambda text, **kw: converse_stream(text, **kw),
        converse_stream(PERSON, exception="throttlingException"),
        rp.RateLimitError,
        lambda received: received.path.endswith("/converse-stream") and "stream" not in received.body,
    ),
}


@pytest.fixture(params=sorted(WIRES))
def wire(request: pytest.FixtureRequest) -> Iterator[tuple[Wire, LoopbackServer]]:
    chosen = WIRES[request.param]
    with chosen.server() as server:
        yield chosen, server
    assert server.requests and all(chosen.sent(received) for received in server.requests)
    if server.check is not None:
        assert all(server.check(received.body) == [] for received in server.requests)


def make(chosen: Wire, server: LoopbackServer) -> rp.Model:
    return rp.model(chosen.model, base_url=server.base_url, api_key=KEY, max_output_tokens=200, temperature=0)


def person_task() -> rp.Task[Review, Person]:
    return rp.Task("person", input=Review, output=Person, instructions="Who is described?")


def test_partials_grow_on_each_wire_and_end_in_the_validated_output(wire: tuple[Wire, LoopbackServer]) -> None:
    chosen, server = wire
    server.enqueue(chosen.stream(PERSON, pieces=10))
    *partials, final = person_task().stream_output(Review(text="x"), model=make(chosen, server), policy=ONCE)
    assert final == Person(name="Ada Lovelace", age=36, tags=["math", "poetry"])
    assert len(partials) >= 4 and all(isinstance(p, rp.Partial) for p in partials)
    names = [p.get("name") for p in partials if "name" in p.fields]
    assert names and all("Ada Lovelace".startswith(name) for name in names)


def test_each_wires_error_inside_the_stream_is_the_typed_error(wire: tuple[Wire, LoopbackServer]) -> None:
    chosen, server = wire
    server.enqueue(chosen.error)
    seen: list[Any] = []
    with pytest.raises(chosen.raised) as caught:
        seen.extend(person_task().stream_output(Review(text="x"), model=make(chosen, server), policy=ONCE))
    assert KEY not in str(caught.value) and not any(isinstance(item, Person) for item in seen)


def test_a_cut_stream_on_each_wire_is_a_connection_error_and_is_retried(wire: tuple[Wire, LoopbackServer]) -> None:
    chosen, server = wire
    server.enqueue(chosen.stream(PERSON, pieces=10, cut=True), chosen.stream(PERSON))
    policy = rp.Policy(backoff_initial=0.01, backoff_max=0.02)
    items = list(person_task().stream_output(Review(text="x"), model=make(chosen, server), policy=policy))
    assert sum(isinstance(item, rp.Restart) for item in items) == 1 and items[-1].age == 36
