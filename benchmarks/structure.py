"""Shape figures of the shipped code: files per folder, import cycles, provider touch points, duplicate pairs and
the longest functions. Reads the source only (nothing is imported or run); `python3 benchmarks/structure.py`.

Import edges count every import statement, including those inside functions and under TYPE_CHECKING. A
provider's touch points are the files that name it (as a string, a module or a catalog file): its own adapter,
schema module, server, catalog and tests, and any other file a new provider would have to edit likewise.
"""

from __future__ import annotations

import ast
import collections
import json
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED = ("robustprompt", "adapters")


def modules() -> dict[str, pathlib.Path]:
    found: dict[str, pathlib.Path] = {}
    for base in SHIPPED:
        for path in sorted((ROOT / base).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] == ("robustprompt", "adapters"):  # the symlink to adapters/
                continue
            parts = list(rel.with_suffix("").parts)
            if base == "adapters":
                parts = ["robustprompt", *parts]
            found[".".join(parts)] = path
    return found


def import_graph(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """Module -> modules it imports (package facades resolved to what they import themselves)."""

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name

    graph: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in mods.items():
        is_init = path.name == "__init__.py"
        package = name.removesuffix(".__init__") if is_init else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in map(resolve, targets):
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), package facades left out: an
    `__init__` re-exporting its package's modules is not a cycle a reader has to follow."""
    facades = {n for n in graph if n.endswith("__init__")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w in facades or v in facades:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def providers() -> dict[str, str]:
    """Provider -> its catalog file: a file of models per provider, and vendors declared in vendors.json."""
    folder = ROOT / "robustprompt" / "catalog"
    found = {p.stem: p.name for p in folder.glob("*.json") if p.stem != "vendors"}
    if (folder / "vendors.json").exists():
        for entry in json.loads((folder / "vendors.json").read_text())["vendors"]:
            found[entry["provider"]] = "vendors.json"
    return dict(sorted(found.items()))


def touch_points() -> dict[str, list[str]]:
    """Per provider, the files that name it: a string that is its name or its adapter module, an import of its
    adapter, schema or server module, or a file named after it. Model names in examples ("openai:gpt-4.1") do
    not count: they document, they are not a place a new provider must edit."""
    files = [p for base in (*SHIPPED, "tests") for p in sorted((ROOT / base).rglob("*.py"))]
    files = [p for p in files if p.relative_to(ROOT).parts[:2] != ("robustprompt", "adapters")]
    trees = {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text()) for p in files}
    out: dict[str, list[str]] = {}
    for provider, catalog_file in providers().items():
        mod = provider.replace("-", "_")
        module = re.compile(rf"(adapters|testing)\.(_?{mod}(_server|_schema)?)\b")
        named = []
        for rel, tree in trees.items():
            if re.search(rf"(^|/)_?{mod}(_server|_schema)?\.py$", rel) or any(
                (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and (node.value == provider or module.search(node.value))
                )
                or (isinstance(node, ast.ImportFrom) and node.module and module.search(node.module + "."))
                or (
                    isinstance(node, ast.ImportFrom)
                    and node.module in ("robustprompt.adapters", "adapters")
                    and any(a.name == mod for a in node.names)
                )
                for node in ast.walk(tree)
            ):
                named.append(rel)
        out[provider] = [*named, f"robustprompt/catalog/{catalog_file}"]
    return out


def core_files(paths: list[str]) -> list[str]:
    """The files of the core among `paths`: robustprompt/ minus the test kits, catalog and evals."""
    return [
        p
        for p in paths
        if p.startswith("robustprompt/")
        and not p.startswith(("robustprompt/testing/", "robustprompt/catalog/", "robustprompt/evals/"))
    ]


def duplicate_pairs() -> dict[str, str]:
    if shutil.which("duplicates") is None:
        return {base: "duplicates not installed" for base in SHIPPED}
    out = {}
    for base in SHIPPED:
        run = subprocess.run(
            ["duplicates", "--repo", str(ROOT / base), "--most", "200", "--seconds", "60"],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = run.stdout.splitlines()
        rows = [line for line in lines if re.match(r"D\d+ ", line)]
        boiler = [row for row in rows if "boilerplate" in row]
        out[base] = f"{lines[0] if lines else '?'}; {len(rows) - len(boiler)} not boilerplate"
    return out


def longest_functions(mods: dict[str, pathlib.Path], n: int = 5) -> list[tuple[int, str]]:
    sizes = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                sizes.append((node.end_lineno - node.lineno + 1, f"{name.removeprefix('robustprompt.')}.{node.name}"))
    return sorted(sizes, reverse=True)[:n]


def main() -> None:
    mods = modules()
    folders = collections.Counter(p.parent.relative_to(ROOT).as_posix() for p in mods.values())
    print("files per folder (.py):")
    for folder, count in sorted(folders.items()):
        print(f"  {folder}/: {count}")
    found = cycles(import_graph(mods))
    print(f"import cycles (all imports counted): {len(found)}")
    for component in found:
        print("  - " + ", ".join(m.removeprefix("robustprompt.") for m in component))
    print("provider touch points (files naming the provider; core files among them):")
    all_core: set[str] = set()
    for provider, paths in touch_points().items():
        core = core_files(paths)
        all_core.update(core)
        print(f"  {provider}: {len(paths)} files, core: {', '.join(core) or 'none'}")
    print(f"core files naming any provider: {len(all_core)} {sorted(all_core)}")
    print("duplicate pairs:")
    for base, line in duplicate_pairs().items():
        print(f"  {base}/: {line}")
    print("longest functions (lines):")
    for size, name in longest_functions(mods):
        print(f"  {size:4d} {name}")


if __name__ == "__main__":
    main()
