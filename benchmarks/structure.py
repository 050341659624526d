"""Shape figures of the shipped code: files per folder, import cycles, provider touch points, duplicate pairs and
the longest functions. Reads the source only (nothing is imported or run); `python3 benchmarks/structure.py`.

Import edges count every import statement, including those inside functions and under TYPE_CHECKING, package
facades included (the graph is tests/import_graph.py's, the one tests/test_architecture.py checks). A
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

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.import_graph import GRAPH, MODULES, ROOT, cycles  # the graph the architecture test pins

SHIPPED = ("robustprompt", "adapters")


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
    mods = MODULES
    folders = collections.Counter(p.parent.relative_to(ROOT).as_posix() for p in mods.values())
    print("files per folder (.py):")
    for folder, count in sorted(folders.items()):
        print(f"  {folder}/: {count}")
    found = cycles(GRAPH)
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
