"""Compare finished runs: the same metrics over ticks, one line style per run.

`compare_runs` reads each run folder's ``metrics.parquet`` and resolved ``config.yaml``, writes
plots (a colour per policy, a line style per run) and ``comparison.csv``: per run, policy and
metric, the mean over ticks and the last tick's value, each averaged over seeds. Metrics that are
rates per user or per impression (CTR, diversity, Gini...) compare across population sizes, which
is what `make demo` does: LLM personas at a small size against parametric ones at a large size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from simenv.studies.run_folder import CONFIG, METRICS, RunFolder, check_output_folder


def load_run(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """A run folder's metrics and the metrics its scenario plots."""
    run = RunFolder(folder)
    if not run.is_finished():
        raise FileNotFoundError(
            f"{folder} is not a finished run folder (needs {METRICS} and {CONFIG}; "
            "an interrupted run finishes when `recloop run` is run again with --out set to it)"
        )
    return run.read_metrics(), run.scenario().plots


def run_label(folder: Path) -> str:
    return Path(folder).resolve().name


def compare_runs(
    folders: Sequence[Path], out: Path, labels: Sequence[str] | None = None
) -> tuple[list[Path], pd.DataFrame]:
    """Plots and ``comparison.csv`` of ``folders`` in ``out``; returns the files and the table."""
    if len(folders) < 2:
        raise ValueError("compare needs at least two run folders")
    out = check_output_folder(Path(out), into_run=False)  # comparing never changes a run
    names = list(labels) if labels else [run_label(f) for f in folders]
    if len(names) != len(folders):
        raise ValueError(f"{len(names)} labels for {len(folders)} runs: give one --label per run")
    if len(set(names)) != len(names):
        raise ValueError(f"run labels must differ, got {names}: name them with --label")
    runs: dict[str, pd.DataFrame] = {}
    plots: list[str] = []
    for name, folder in zip(names, folders, strict=True):
        runs[name], wanted = load_run(Path(folder))
        plots += [m for m in wanted if m not in plots]
    shared = [m for m in plots if all(m in frame.columns for frame in runs.values())]
    if not shared:
        raise ValueError("the runs have no plotted metric in common")
    from simenv.studies.plots import plot_compare

    files = plot_compare(runs, shared, out / "plots")
    table = comparison_table(runs, shared)
    table.to_csv(out / "comparison.csv", index=False)
    return [*files, out / "comparison.csv"], table


def comparison_table(runs: dict[str, pd.DataFrame], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per run, policy and metric: mean over ticks and last-tick value, over seeds."""
    rows = []
    for run, frame in runs.items():
        last = frame["tick"].max()
        for policy, part in frame.groupby("policy", sort=False):
            seeds = part["seed"].nunique()
            for metric in metrics:
                rows.append(
                    {
                        "run": run,
                        "policy": str(policy),
                        "metric": metric,
                        "mean": part.groupby("seed")[metric].mean().mean(),
                        "final": part.loc[part["tick"] == last, metric].mean(),
                        "seeds": seeds,
                        "ticks": int(last) + 1,
                    }
                )
    return pd.DataFrame(rows)
