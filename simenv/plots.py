"""Figures of a run: one line per policy over ticks, mean over seeds with a 95% band."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scenarios.schema import Scenario
from simenv import metrics as registry


def plot_run(metrics: pd.DataFrame, scenario: Scenario, folder: Path) -> list[Path]:
    """Write ``<metric>.png`` for each of ``scenario.plots`` and ``overview.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [m for m in scenario.plots if m in metrics.columns]
    written = []
    for name in names:
        fig, ax = plt.subplots(figsize=(6, 4))
        _draw(ax, metrics, name)
        ax.legend(fontsize=8)
        fig.suptitle(scenario.name, fontsize=10)
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if names:
        cols = min(2, len(names))
        rows = int(np.ceil(len(names) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
        for ax, name in zip(axes.ravel(), names, strict=False):
            _draw(ax, metrics, name)
        for ax in axes.ravel()[len(names) :]:
            ax.axis("off")
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"{scenario.name}: seeds {scenario.seeds}", fontsize=11)
        fig.tight_layout()
        path = folder / "overview.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _draw(ax: plt.Axes, metrics: pd.DataFrame, name: str) -> None:
    for label, frame in metrics.groupby("policy", sort=False):
        stats = frame.groupby("tick")[name].agg(["mean", "std", "count"])
        half = 1.96 * stats["std"].fillna(0) / np.sqrt(stats["count"].clip(lower=1))
        line = ax.plot(stats.index, stats["mean"], label=str(label), lw=1.6)[0]
        if (stats["count"] > 1).any():
            ax.fill_between(
                stats.index,
                stats["mean"] - half,
                stats["mean"] + half,
                color=line.get_color(),
                alpha=0.15,
            )
    ax.set_xlabel("tick")
    ax.set_ylabel(name)
    ax.set_title(_title(name), fontsize=9)
    ax.grid(alpha=0.3)


def _title(name: str) -> str:
    try:
        metric = registry.get(name)
    except ValueError:
        return name
    arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}
    return f"{name}{arrow[metric.higher_is_better]}"
