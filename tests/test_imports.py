"""No import cycle between the modules of the packages, and the direction of imports that
docs/architecture.md promises.

Every import counts, also those inside function bodies (they run when the function does);
imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("simenv", "agents", "policies", "scenarios")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> nx.DiGraph:
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for target in _imports(tree, module, path.name == "__init__.py"):
            if target in files and target != module:
                graph.add_edge(module, target)
    return graph


def test_no_import_cycle() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    # a package's __init__ re-exporting its own submodules is not a cycle of code
    real = [c for c in cycles if not _only_package_reexports(c)]
    assert not real, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in real)


def _only_package_reexports(cycle: list[str]) -> bool:
    return all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in _pairs(cycle))


def _pairs(cycle: list[str]) -> list[tuple[str, str]]:
    return list(zip(cycle, [*cycle[1:], cycle[0]], strict=True))


def test_policies_never_import_agents_or_the_world() -> None:
    graph = import_graph()
    bad = [
        (a, b)
        for a, b in graph.edges
        if a.startswith("policies") and (b.startswith("agents") or b == "simenv.world")
    ]
    assert not bad, f"policies import agents or the world: {bad}"


def test_the_world_never_imports_the_studies() -> None:
    graph = import_graph()
    world = [m for m in graph if not m.startswith(("simenv.studies", "simenv.cli"))]
    bad = [(a, b) for a, b in graph.edges if a in world and b.startswith("simenv.studies")]
    assert not bad, f"the world imports the studies: {bad}"


def test_the_graph_sees_nested_imports() -> None:
    tree = ast.parse("def f():\n    from simenv.world import World\n")
    assert "simenv.world" in _imports(tree, "x", False)
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import simenv.world\n"
    )
    assert "simenv.world" not in _imports(tree, "x", False)
