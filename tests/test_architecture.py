"""The package's shape: layers that only import downwards, and no import cycle.

The graph (tests/import_graph.py) is read from the source, counting every import statement: those inside functions
and those under TYPE_CHECKING too, since a cycle hidden in either is still a cycle a reader has to follow. A new
module must be placed in a layer here, which is the point: where it goes is a decision, written down.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import GRAPH, MODULES, cycles

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "declarations: values, profiles, the catalog, tasks, events and process state (no I/O)",
        {
            "_errors",
            "_deadline",
            "_text",
            "_completion",
            "_prompt",
            "_tokens",
            "_parse",
            "_parse.*",
            "_grammar_schema",
            "_validate",
            "_partial",
            "_profile",
            "_model",
            "_policy",
            "_run",
            "_catalog",
            "_task",
            "_events",
            "_breaker",
            "_state",
            "_lifecycle",
            "_version",
            "_renderings",
            "_spans",
            "_declared",
            "_adaptation",
            # Pure standard-library statistics: the adaptation records' intervals use them too.
            "evals._stats",
            "_secrets",
            "_decoding",
            "_demotions",
            "_ledger",
        },
    ),
    (
        "adapters: one module per provider API, the registry, and the embedded runtime's crash probe",
        {"adapters", "adapters.*", "_runtime_probe"},
    ),
    (
        "runtime: transport, name resolution, the engine, batches, tasks, pipelines, hooks, tracing",
        {
            "_transport",
            "_sync_transport",
            "_http",
            "_resolve",
            "_retry",
            "_sqlite",
            "_db",
            "_cache",
            "_hooks",
            "_otel",
            "_engine",
            "_streaming",
            "_batch",
            "_batch_api",
            "_ray_limits",
            "_calling",
            "_adapt",
            "_pipeline",
        },
    ),
    ("evals: cases, results, comparison, statistics, reports, store, replay, eval commands", {"evals", "evals.*"}),
    (
        "surfaces: the package facade, the command line, the test kits",
        {"", "__main__", "cli", "_doctor", "pytest_plugin", "testing", "testing.*"},
    ),
]


def _layer(module: str) -> int:
    short = module.removeprefix("robustprompt").removeprefix(".")
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if short == member or (member.endswith(".*") and short.startswith(member[:-1])):
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def test_the_graph_sees_the_package() -> None:
    # A finder that resolved nothing would find no cycle and no violation.
    assert {"robustprompt._engine", "robustprompt.adapters.openai", "robustprompt.evals._report"} <= set(GRAPH)
    assert "robustprompt._task" in GRAPH["robustprompt._engine"]
    assert "robustprompt._otel" in GRAPH["robustprompt._hooks"]  # a function-level import counts
    assert "robustprompt._model" in GRAPH["robustprompt._cache"]  # a TYPE_CHECKING import counts


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        _layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(module: str) -> None:
    mine = _layer(module)
    above = sorted(t for t in GRAPH[module] if _layer(t) > mine)
    assert not above, f"{module} ({LAYERS[mine][0].split(':')[0]}) imports from higher layers: {above}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_there_is_no_import_cycle_package_facades_included() -> None:
    assert cycles(GRAPH) == []
