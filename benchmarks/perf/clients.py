"""One throughput measurement: N typed calls at concurrency C through one client, in this process.

    python clients.py --client NAME --url http://127.0.0.1:PORT [--n 2000] [--concurrency 50] [--cpu 1]

Prints one JSON line: req/s, client CPU ms per call (getrusage of this process over the timed calls),
latency p50/p99, peak RSS. Every call renders the request, sends it, parses the answer and validates it into
`workload.Person`; every result is checked against the expected object. A warm-up (connections, lazy
imports, caches) runs first and is not timed. Run inside the venv that has the client's packages.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import INSTRUCTIONS, MODEL_ID, PERSON, Doc, Person, pin, request_body, text

Call = Callable[[int], Awaitable[Person]]
Close = Callable[[], Awaitable[None]]
API_KEY = "bench"


# ----------------------------------------------------------------------------- raw transports (the floor)


def _content(data: dict[str, Any]) -> Person:
    return Person.model_validate_json(data["choices"][0]["message"]["content"])


async def aiohttp_raw(url: str) -> tuple[Call, Close]:
    import aiohttp

    session = aiohttp.ClientSession()  # default connector: 100 connections, keep-alive
    endpoint = f"{url}/v1/chat/completions"
    headers = {"authorization": f"Bearer {API_KEY}"}

    async def call(i: int) -> Person:
        async with session.post(endpoint, json=request_body(i), headers=headers) as response:
            response.raise_for_status()
            return _content(json.loads(await response.read()))

    return call, session.close


def _httpx_like(module: Any, client: Any, url: str) -> tuple[Call, Close]:
    endpoint = f"{url}/v1/chat/completions"
    headers = {"authorization": f"Bearer {API_KEY}"}

    async def call(i: int) -> Person:
        response = await client.post(endpoint, json=request_body(i), headers=headers)
        response.raise_for_status()
        return _content(response.json())

    return call, client.aclose


async def httpx_raw(url: str) -> tuple[Call, Close]:
    import httpx

    return _httpx_like(httpx, httpx.AsyncClient(), url)  # default pool: 100 connections, 20 kept alive


async def httpx_raw_pool(url: str) -> tuple[Call, Close]:
    import httpx

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    return _httpx_like(httpx, httpx.AsyncClient(limits=limits), url)


async def httpx2_raw(url: str) -> tuple[Call, Close]:
    import httpx2

    return _httpx_like(httpx2, httpx2.AsyncClient(), url)


async def httpx_aiohttp_raw(url: str) -> tuple[Call, Close]:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    return _httpx_like(httpx, httpx.AsyncClient(transport=AiohttpTransport()), url)


async def httpx_rp_transport_raw(url: str) -> tuple[Call, Close]:
    """The floor under robustprompt's default: a bare httpx client on the transport robustprompt builds."""
    import httpx

    from robustprompt._transport import default_async_client

    return _httpx_like(httpx, default_async_client(), url)


# ----------------------------------------------------------------------------------------------- peers


async def openai_sdk(url: str) -> tuple[Call, Close]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY)  # defaults: max_retries=2, its own pool

    async def call(i: int) -> Person:
        completion = await client.chat.completions.parse(
            model=MODEL_ID,
            messages=[
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": "Input:\n" + Doc(text=text(i)).model_dump_json()},
            ],
            response_format=Person,
        )
        parsed = completion.choices[0].message.parsed
        assert parsed is not None
        return parsed

    return call, client.close


async def _instructor(url: str, mode_name: str) -> tuple[Call, Close]:
    import instructor
    from openai import AsyncOpenAI

    raw = AsyncOpenAI(base_url=url, api_key=API_KEY)
    client = instructor.from_openai(raw, mode=getattr(instructor.Mode, mode_name))

    async def call(i: int) -> Person:
        result: Person = await client.chat.completions.create(
            model=MODEL_ID,
            response_model=Person,
            messages=[
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": "Input:\n" + Doc(text=text(i)).model_dump_json()},
            ],
        )
        return result

    return call, raw.close


async def instructor_json_schema(url: str) -> tuple[Call, Close]:
    return await _instructor(f"{url}/v1", "JSON_SCHEMA")


async def instructor_tools(url: str) -> tuple[Call, Close]:
    return await _instructor(f"{url}/tool/Person/v1", "TOOLS")  # its default mode: a forced tool call


async def _pydantic_ai(url: str, native: bool) -> tuple[Call, Close]:
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=url, api_key=API_KEY)
    model = OpenAIChatModel(MODEL_ID, provider=provider)
    output: Any = NativeOutput(Person) if native else Person
    agent = Agent(model, output_type=output, instructions=INSTRUCTIONS)

    async def call(i: int) -> Person:
        result = await agent.run("Input:\n" + Doc(text=text(i)).model_dump_json())
        return result.output

    async def close() -> None:
        await provider.client.close()

    return call, close


async def pydantic_ai_native(url: str) -> tuple[Call, Close]:
    return await _pydantic_ai(f"{url}/v1", native=True)


async def pydantic_ai_tool(url: str) -> tuple[Call, Close]:
    return await _pydantic_ai(f"{url}/tool/final_result/v1", native=False)  # its default: the output tool


# ------------------------------------------------------------------------------------------ robustprompt


def _rp_task() -> Any:
    import robustprompt as rp

    return rp.Task("extract_person", input=Doc, output=Person, instructions=INSTRUCTIONS)


async def _robustprompt(url: str, async_client: Any = None) -> tuple[Call, Close]:
    import robustprompt as rp

    task = _rp_task()
    model = rp.model(f"openai:{MODEL_ID}", base_url=f"{url}/v1", api_key=API_KEY, async_http_client=async_client)

    async def call(i: int) -> Person:
        result: Person = await task.acall(Doc(text=text(i)), model=model)
        return result

    async def close() -> None:
        if async_client is not None:
            await async_client.aclose()

    return call, close


async def robustprompt_default(url: str) -> tuple[Call, Close]:
    return await _robustprompt(url)


async def robustprompt_pool(url: str) -> tuple[Call, Close]:
    import httpx

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    return await _robustprompt(url, httpx.AsyncClient(limits=limits))


async def robustprompt_aiohttp(url: str) -> tuple[Call, Close]:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    return await _robustprompt(url, httpx.AsyncClient(transport=AiohttpTransport()))


async def robustprompt_httpx(url: str) -> tuple[Call, Close]:
    import httpx

    return await _robustprompt(url, httpx.AsyncClient())  # httpx's own pool, as before the aiohttp transport


async def robustprompt_httpx2(url: str) -> tuple[Call, Close]:
    import httpx2

    return await _robustprompt(url, httpx2.AsyncClient())


CLIENTS: dict[str, Callable[[str], Awaitable[tuple[Call, Close]]]] = {
    "aiohttp": aiohttp_raw,
    "httpx": httpx_raw,
    "httpx-pool100": httpx_raw_pool,
    "httpx2": httpx2_raw,
    "httpx+aiohttp": httpx_aiohttp_raw,
    "httpx+rp-transport": httpx_rp_transport_raw,
    "openai": openai_sdk,
    "instructor": instructor_json_schema,
    "instructor-tools": instructor_tools,
    "pydantic-ai": pydantic_ai_native,
    "pydantic-ai-tool": pydantic_ai_tool,
    "robustprompt": robustprompt_default,
    "robustprompt-httpx": robustprompt_httpx,
    "robustprompt-pool100": robustprompt_pool,
    "robustprompt+aiohttp": robustprompt_aiohttp,
    "robustprompt+httpx2": robustprompt_httpx2,
}


# ------------------------------------------------------------------------------------------------ driver


async def _drive(call: Call, n: int, concurrency: int, latencies: list[float]) -> int:
    """n calls through a pool of `concurrency` workers; returns how many results were wrong."""
    pending = iter(range(n))
    wrong = 0

    async def worker() -> None:
        nonlocal wrong
        for i in pending:
            start = time.perf_counter()
            result = await call(i)
            latencies.append(time.perf_counter() - start)
            wrong += not isinstance(result, Person) or result.model_dump() != PERSON  # peers may return subclasses

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return wrong


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def _measure(name: str, url: str, n: int, concurrency: int, warmup: int, profile: str | None) -> dict[str, Any]:
    call, close = await CLIENTS[name](url)
    await _drive(call, warmup, concurrency, [])
    gc.collect()
    sampler = None
    if profile:  # "PYSPY_BINARY:OUTPUT_FILE:CPU:RATE"
        from profiling import Sampler

        pyspy, out, cpu, rate = profile.split(":")
        sampler = Sampler(pyspy, out, rate=int(rate), cpu=int(cpu))
        sampler.start()
    latencies: list[float] = []
    cpu0, wall0 = _cpu(), time.perf_counter()
    wrong = await _drive(call, n, concurrency, latencies)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    if sampler is not None:
        sampler.stop()
    await close()
    return _result(name, n, concurrency, wall, cpu, latencies, wrong)


async def _measure_amap(url: str, n: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """robustprompt's own batch API: `await task.amap(inputs, batch=rp.Batch(concurrency=C), runs=True)`; latency
    from Run."""
    import robustprompt as rp

    task = _rp_task()
    model = rp.model(f"openai:{MODEL_ID}", base_url=f"{url}/v1", api_key=API_KEY)
    await task.amap(
        [Doc(text=text(i)) for i in range(warmup)], model=model, batch=rp.Batch(concurrency=concurrency, progress=False)
    )
    inputs = [Doc(text=text(i)) for i in range(n)]
    gc.collect()
    cpu0, wall0 = _cpu(), time.perf_counter()
    runs = await task.amap(inputs, model=model, batch=rp.Batch(concurrency=concurrency, progress=False), runs=True)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    wrong = sum(not isinstance(r, rp.Run) or r.output.model_dump() != PERSON for r in runs)
    latencies = [r.latency for r in runs if isinstance(r, rp.Run)]
    return _result("robustprompt-amap", n, concurrency, wall, cpu, latencies, wrong)


def _result(
    name: str, n: int, concurrency: int, wall: float, cpu: float, latencies: list[float], wrong: int
) -> dict[str, Any]:
    return {
        "client": name,
        "n": n,
        "concurrency": concurrency,
        "wall_s": wall,
        "rps": n / wall,
        "cpu_ms_per_call": 1000 * cpu / n,
        "cpu_util": cpu / wall,
        "p50_ms": 1000 * _quantile(latencies, 0.50),
        "p99_ms": 1000 * _quantile(latencies, 0.99),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wrong": wrong,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", required=True, choices=[*CLIENTS, "robustprompt-amap"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--profile", default=None, help="PYSPY:OUT:CPU:RATE - py-spy the timed calls into OUT (raw)")
    args = parser.parse_args()
    pin(args.cpu)
    if args.client == "robustprompt-amap":
        result = asyncio.run(_measure_amap(args.url, args.n, args.concurrency, args.warmup))
    else:
        result = asyncio.run(_measure(args.client, args.url, args.n, args.concurrency, args.warmup, args.profile))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
