"""The notebooks run: their code cells execute top to bottom in a fresh folder."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no .ipynb file"


@pytest.mark.slow  # ~1 min: two small runs and the embedded model for the interview
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded_model: Path
) -> None:
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # notebooks write runs/ beside themselves
    namespace: dict[str, object] = {"__name__": "__notebook__"}
    for i, source in enumerate(code_cells(path)):
        try:
            exec(compile(source, f"{path.name}[cell {i}]", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{path.name}, code cell {i} failed: {e!r}\n{source}") from e
    assert (tmp_path / "runs").is_dir()
