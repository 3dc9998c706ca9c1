"""The notebooks run: their code cells execute top to bottom in a fresh folder, at a small size.

Each notebook has one code cell tagged ``parameters`` (the papermill convention) holding its
sizes; the test runs a cell of `SMALL` right after it, so the notebook runs end to end at a size
the suite affords. Notebooks are committed without outputs.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import matplotlib
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# what the test runs after each notebook's parameters cell
SMALL = {
    "filter_bubble.ipynb": "USERS = 200\nTICKS = 6\nSEEDS = [0, 1]",
    "quickstart.ipynb": "USERS = 150\nTICKS = 5\nSEEDS = [0, 1]",
    "train_exploration_sb3.ipynb": (
        "STEPS = 512\nN_ENVS = 4\nROLLOUT = 64\nTICKS = 3\n"
        "EVAL_SEEDS = [100, 101]\nPROGRESS = False"
    ),
    "llm_personas.ipynb": 'USERS = 4\nTICKS = 2\nPOLICIES = ["mf"]',
}


def cells(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["cells"])


def code_cells(path: Path) -> list[str]:
    """The sources of the code cells, with `SMALL` run right after the parameters cell."""
    sources = []
    for cell in cells(path):
        if cell["cell_type"] != "code":
            continue
        sources.append("".join(cell["source"]))
        if "parameters" in cell["metadata"].get("tags", []):
            sources.append(SMALL[path.name])
    return sources


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no .ipynb file"
    names = {p.name for p in NOTEBOOKS}
    assert {"quickstart.ipynb", "train_exploration_sb3.ipynb", "llm_personas.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_parameters_cell_and_a_small_size(path: Path) -> None:
    tagged = [
        c
        for c in cells(path)
        if c["cell_type"] == "code" and "parameters" in c["metadata"].get("tags", [])
    ]
    assert len(tagged) == 1, f"{path.name}: one code cell tagged 'parameters', found {len(tagged)}"
    assert path.name in SMALL, f"{path.name}: no small size in tests/test_notebooks.py SMALL"
    # every name the test sets is a parameter of the notebook (a renamed one would be ignored)
    params: dict[str, object] = {}
    exec("".join(tagged[0]["source"]), params)
    small: dict[str, object] = {}
    exec(SMALL[path.name], small)
    assert set(small) - {"__builtins__"} <= set(params), f"{path.name}: unknown parameter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_are_stripped(path: Path) -> None:
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name} cell {i} has outputs: strip them"
            assert cell["execution_count"] is None, f"{path.name} cell {i} has a count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_logic_lives_in_the_packages(path: Path) -> None:
    """Notebooks call public functions: they define no function or class of their own and
    import no private name."""
    for i, source in enumerate(code_cells(path)):
        for node in ast.walk(ast.parse(source)):
            where = f"{path.name} code cell {i}, line {getattr(node, 'lineno', '?')}"
            assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Lambda), (
                f"{where}: defines logic; move it into a package (simenv/studies)"
            )
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{where}: imports private {private}"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                raise AssertionError(f"{where}: uses private attribute {node.attr}")


# not marked slow: at the small sizes each notebook took 5-25 s on a quiet 2-core machine (the
# two that load the embedded model 25 s; over 70 s while other jobs shared the cores)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if path.name in {"filter_bubble.ipynb", "llm_personas.ipynb"}:
        request.getfixturevalue("embedded_model")  # they interview users: skip without it
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # notebooks write runs/ beside themselves
    namespace: dict[str, object] = {"__name__": "__notebook__"}
    for i, source in enumerate(code_cells(path)):
        try:
            exec(compile(source, f"{path.name}[cell {i}]", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{path.name}, code cell {i} failed: {e!r}\n{source}") from e
    assert (tmp_path / "runs").is_dir()
