"""robustprompt's own cost per call, stage by stage, with no network: where the CPU over the transport goes.

    python overhead.py [--n 5000] [--cpu 1]

Each stage runs alone, n times in a loop on one core, and is reported in µs per call (best of 3):

- the pure stages of one call (input to JSON, render, adapter.prepare, adapter.read, parse + validate), the
  request build and JSON encoding httpx does for it, and tenacity's per-call set-up;
- a whole `task.arun` on an in-memory backend that returns the answer at once (the engine alone: everything
  but the adapter and HTTP);
- HttpBackend.acomplete alone (prepare, build, stream with a size bound, read) against a bare `post`;
- a whole `task.arun` through robustprompt's HttpBackend over an httpx.MockTransport, against the same
  request made with a bare `httpx.AsyncClient.post` over the same MockTransport: the difference is what
  robustprompt adds over the transport, minus the connection pool (which no in-memory transport has).

Prints one JSON line. Private names are used on purpose: this measures internals; a stage whose internals have
moved is reported as null rather than failing the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from payload import API_KEY, completion
from workload import INSTRUCTIONS, MODEL_ID, Doc, Person, pin, request_body, text


def _best(fn: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return 1e6 * best / n


async def _abest(fn: Callable[[], Awaitable[object]], n: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        best = min(best, time.perf_counter() - start)
    return 1e6 * best / n


def _stage(results: dict[str, float | None], name: str, measure: Callable[[], float]) -> None:
    try:
        results[name] = round(measure(), 2)
    except Exception as exc:  # internals moved: report, do not fail the suite
        results[name] = None
        results[f"{name}_error"] = f"{type(exc).__name__}: {exc}"  # type: ignore[assignment]


async def main_async(n: int) -> dict[str, Any]:
    import httpx
    import tenacity

    import robustprompt as rp
    from robustprompt._completion import Completion, Usage
    from robustprompt._model import Model
    from robustprompt._parse import parse
    from robustprompt._prompt import OutputMode

    body = completion()
    content = json.loads(body)["choices"][0]["message"]["content"]
    task = rp.Task("extract_person", input=Doc, output=Person, instructions=INSTRUCTIONS)
    model = rp.model(f"openai:{MODEL_ID}", base_url="http://bench.invalid/v1", api_key=API_KEY)
    backend: Any = model.backend
    adapter, profile, settings, endpoint = backend.adapter, model.profile, model.settings, backend._endpoint
    doc = Doc(text=text(1))
    input_json = task.input_json(doc)
    from robustprompt import _engine
    from robustprompt._renderings import Configuration

    default = Configuration()  # today's rendering, turns/json

    prompt = _engine._render(task, input_json, model, OutputMode.JSON_SCHEMA, default)
    call = adapter.prepare(prompt, profile, settings, endpoint)
    headers = httpx.Headers({"content-type": "application/json"})
    client = httpx.AsyncClient()
    out: dict[str, Any] = {"n": n}

    _stage(out, "input_json", lambda: _best(lambda: task.input_json(doc), n))
    mode = OutputMode.JSON_SCHEMA
    _stage(out, "render", lambda: _best(lambda: _engine._render(task, input_json, model, mode, default), n))
    _stage(out, "adapter_prepare", lambda: _best(lambda: adapter.prepare(prompt, profile, settings, endpoint), n))
    _stage(
        out,
        "httpx_build_request_json",
        lambda: _best(lambda: client.build_request("POST", call.url, headers=call.headers, json=call.body), n),
    )
    _stage(out, "adapter_read", lambda: _best(lambda: adapter.read(200, headers, body, profile), n))
    _stage(
        out,
        "parse_validate",
        lambda: _best(lambda: task.validator.validate(parse(content, task.spec.schema).value), n),
    )
    _stage(out, "pydantic_validate_json_only", lambda: _best(lambda: Person.model_validate_json(content), n))

    async def answer() -> str:
        return content

    async def via_tenacity() -> str:
        retrying = tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(3), reraise=True)
        return await retrying(answer)

    out["tenacity_async_retrying_per_call"] = round(await _abest(via_tenacity, n) - await _abest(answer, n), 2)

    class Instant:
        """A backend that answers at once: the engine alone."""

        def complete(self, p: Any) -> Completion:
            return Completion(content, "stop", Usage(112, 31), MODEL_ID)

        async def acomplete(self, p: Any) -> Completion:
            return Completion(content, "stop", Usage(112, 31), MODEL_ID)

        def count_tokens(self, t: str) -> Any:
            return backend.count_tokens(t)

    instant = Model(model.name, profile, settings, Instant(), key="bench:instant")
    out["engine_arun_in_memory"] = round(await _abest(lambda: task.arun(doc, model=instant), n), 2)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    mock_client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    mocked = rp.model(
        f"openai:{MODEL_ID}", base_url="http://127.0.0.1:9/v1", api_key=API_KEY, async_http_client=mock_client
    )
    out["robustprompt_arun_mock_transport"] = round(await _abest(lambda: task.arun(doc, model=mocked), n), 2)
    endpoint_url = "http://127.0.0.1:9/v1/chat/completions"
    auth = {"authorization": f"Bearer {API_KEY}"}

    async def raw_call() -> Person:
        response = await mock_client.post(endpoint_url, json=request_body(1), headers=auth)
        return Person.model_validate_json(response.json()["choices"][0]["message"]["content"])

    out["httpx_post_validate_mock_transport"] = round(await _abest(raw_call, n), 2)

    async def raw_post() -> httpx.Response:
        return await mock_client.post(endpoint_url, json=request_body(1), headers=auth)

    out["httpx_post_mock_transport"] = round(await _abest(raw_post, n), 2)
    mocked_backend: Any = mocked.backend
    out["backend_acomplete_mock_transport"] = round(await _abest(lambda: mocked_backend.acomplete(prompt), n), 2)
    out["robustprompt_over_httpx_no_network"] = round(
        out["robustprompt_arun_mock_transport"] - out["httpx_post_validate_mock_transport"], 2
    )
    await client.aclose()
    await mock_client.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    pin(args.cpu)
    print(json.dumps(asyncio.run(main_async(args.n))), flush=True)


if __name__ == "__main__":
    main()
