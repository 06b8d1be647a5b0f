"""Layers that point one way: kernels ← model ← runtime ← engine ← offline tools ← CLI, and engine ← the
rest of the server (API, brokers, workers) ← CLI. No exemptions.

Checked on the source (every import statement, function-local ones included), so a new import
against the grain fails here rather than as a cycle or a torch import in a process that needs none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "eqr"
SERVING = ("eqr.server.api", "eqr.server.broker", "eqr.server.worker", "eqr.server.cli", "eqr.server.serve")


def modules(typing_too: bool = True) -> dict[str, set[str]]:
    """Every module under eqr/ → the modules it imports (``typing_too`` False: leaving out the imports
    under ``if TYPE_CHECKING:``, which annotations alone use)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        imported = set()
        tree = ast.parse(path.read_text())
        if not typing_too:
            for node in ast.walk(tree):
                if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
        found[name] = imported
    return found


def offenders(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{mod} imports {imp}"
        for mod, imports in sorted(modules().items())
        if mod.startswith(prefix)
        for imp in sorted(imports)
        if imp.startswith(forbidden)
    ]


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("eqr.kernels", ("eqr.model", "eqr.runtime", "eqr.server", "eqr.offline")),
        ("eqr.model", ("eqr.runtime", "eqr.server", "eqr.offline")),
        ("eqr.runtime", ("eqr.server", "eqr.offline")),
        ("eqr.server.engine", ("eqr.offline", *SERVING)),
        ("eqr.offline", SERVING),
        ("eqr.server.jobs", ("eqr.offline", "eqr.server.engine", *SERVING)),
    ],
)
def test_no_layer_imports_a_layer_above_it(layer, forbidden):
    assert not offenders(layer, forbidden)


def test_the_scheduler_and_policies_decide_without_torch():
    """The scheduler and the policies work on plain data (decisions, host states): no tensor reaches them."""
    found = modules()
    for mod in ("eqr.server.engine.scheduler", "eqr.server.engine.policies", "eqr.server.engine.plan",
                "eqr.runtime.decisions"):  # fmt: skip
        assert not {i for i in found[mod] if i.split(".")[0] == "torch"}, mod
    assert "eqr.runtime.decisions" in found["eqr.server.engine.scheduler"]


def test_the_wire_types_are_torch_free():
    imports = modules()["eqr.server.jobs"]
    assert not {i for i in imports if i.split(".")[0] in ("torch", "numpy") or i.startswith("eqr.")}


# what layers outside eqr/model/tasks may import of it: the interface, its error, the registry that
# builds a model folder's task, and the training data of every task (which the trainer feeds on)
TASK_INTERFACE = {"eqr.model.tasks", "eqr.model.tasks.base", "eqr.model.tasks.errors", "eqr.model.tasks.registry",
                  "eqr.model.tasks.data"}  # fmt: skip


def test_no_layer_outside_tasks_knows_a_particular_task():
    """The engine, scheduler, API, CLI, metrics and Redis protocol go through the task a model folder
    declares; only ``tasks/`` itself (and its registry) names Sudoku or Maze."""
    found = [
        f"{mod} imports {imp}"
        for mod, imports in sorted(modules().items())
        if not mod.startswith("eqr.model.tasks")
        for imp in sorted(imports)
        if imp.startswith("eqr.model.tasks") and imp not in TASK_INTERFACE
    ]
    client = Path(__file__).resolve().parents[1] / "client"
    found += [str(p) for p in client.rglob("*.py") if "eqr.model" in p.read_text()]
    assert not found


def test_no_module_imports_itself_through_others():
    """No import cycle among eqr's modules, counting imports inside functions: a cycle is a layer
    boundary in the wrong place even where a deferred import keeps it from failing at start-up. Imports
    for annotations only (``if TYPE_CHECKING:``) run nowhere and do not count."""
    graph = modules(typing_too=False)
    edges = {m: {n for n in deps if n in graph and n != m} for m, deps in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycles.append([*path[path.index(n) :], n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
