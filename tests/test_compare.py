"""`recloop compare`: plots and a table of finished runs side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simenv.cli import main


def _run(out: Path, size: int) -> Path:
    args = ["run", "filter_bubble_llm", "--decider", "utility", "--no-progress", "--out", str(out)]
    for kv in (f"population.size={size}", "ticks=3", "seeds=[0, 1]", "catalog.n_items=200"):
        args += ["--set", kv]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    return _run(root / "small", 30), _run(root / "large", 300)


def test_compare_writes_plots_and_table(runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert (
        main(["compare", *map(str, runs), "--label", "S", "--label", "L", "--out", str(out)]) == 0
    )
    table = pd.read_csv(out / "comparison.csv")
    assert set(table["run"]) == {"S", "L"}
    assert set(table["policy"]) == {"random", "mf", "mmr(mf)"}
    plotted = ["ctr", "mean_rating", "intra_list_diversity", "user_genre_entropy"]
    assert set(table["metric"]) == {*plotted, "exposure_gini", "homogenization"}
    assert (table["seeds"] == 2).all() and (table["ticks"] == 3).all()
    # the table's numbers are the runs' own: mean over ticks per seed, then over seeds
    metrics = pd.read_parquet(runs[0] / "metrics.parquet")
    mf = metrics[metrics["policy"] == "mf"]
    expected = mf.groupby("seed")["ctr"].mean().mean()
    row = table[(table["run"] == "S") & (table["policy"] == "mf") & (table["metric"] == "ctr")]
    assert row["mean"].item() == pytest.approx(expected)
    plots = {p.name for p in (out / "plots").glob("*.png")}
    assert {"overview.png", "ctr.png", "homogenization.png"} <= plots


def test_compare_default_labels_are_folder_names(runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "comparison.csv")["run"]) == {"small", "large"}


def test_compare_bad_input(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        ([str(runs[0])], "at least two"),
        ([str(runs[0]), str(tmp_path)], "not a finished run folder"),
        ([*map(str, runs), "--label", "x"], "1 labels for 2 runs"),
        ([*map(str, runs), "--label", "x", "--label", "x"], "must differ"),
    ]
    for extra, message in cases:
        assert main(["compare", *extra, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_importing_plots_leaves_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    """A notebook user's backend is theirs: recloop never calls matplotlib.use."""
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg'); "
        "import simenv.studies.plots, simenv.studies.runner; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_time_axes_have_whole_ticks(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from simenv.studies.plots import _draw

    frame = pd.DataFrame({"policy": "p", "seed": 0, "tick": [0, 1], "ctr": [0.1, 0.2]})
    ax = Figure().subplots()
    _draw(ax, frame, "ctr")
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 1]
    assert ticks and all(float(t).is_integer() for t in ticks)
