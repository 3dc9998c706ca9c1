"""Figures of a run: one line per policy over ticks, mean over seeds with a 95% band.

Figures are `matplotlib.figure.Figure` objects saved straight to files: nothing here touches
pyplot's global state or the backend, so importing this module in a notebook changes nothing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scenarios.schema import Scenario
from simenv import metrics as registry


def plot_run(metrics: pd.DataFrame, scenario: Scenario, folder: Path) -> list[Path]:
    """Write ``<metric>.png`` for each of ``scenario.plots`` and ``overview.png``."""
    names = [m for m in scenario.plots if m in metrics.columns]
    return _write_figures(
        folder,
        names,
        lambda ax, name: _draw(ax, metrics, name),
        titles=(scenario.name, f"{scenario.name}: seeds {scenario.seeds}"),
        size=(6, 4),
        panel=(6, 3.6),
        legend={"fontsize": 8},
    )


def plot_compare(runs: dict[str, pd.DataFrame], names: list[str], folder: Path) -> list[Path]:
    """Write ``<metric>.png`` and ``overview.png`` comparing runs: a colour per policy, a line
    style per run (``runs`` maps a run label to its metrics frame)."""
    policies = list(dict.fromkeys(p for m in runs.values() for p in m["policy"].unique()))
    colours = {p: f"C{i % 10}" for i, p in enumerate(policies)}
    styles = dict(zip(runs, ["-", "--", ":", "-."] * (1 + len(runs) // 4), strict=False))
    title = " vs ".join(runs)

    def draw(ax: Axes, name: str) -> None:
        for run, metrics in runs.items():
            if name in metrics.columns:
                _draw(ax, metrics, name, colours=colours, style=styles[run], run=run)

    return _write_figures(
        folder,
        names,
        draw,
        titles=(title, title),
        size=(7, 4.5),
        panel=(6.5, 3.8),
        legend={"fontsize": 7, "ncol": 2},
    )


class NotebookFigure(Figure):
    """A `Figure` that Jupyter shows as a cell's value by itself (``_repr_png_``), also when
    nothing in the notebook has touched pyplot or chosen a backend."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def metrics_figure(
    metrics: pd.DataFrame,
    names: list[str],
    *,
    title: str | None = None,
    columns: int = 2,
) -> NotebookFigure:
    """One panel per metric of ``names``, the figures of `plot_run` side by side: a line per
    policy over ticks, mean over seeds with a 95% band. A `Figure` not attached to pyplot
    (a notebook shows it as the cell's value; ``fig.savefig(path)`` writes it)."""
    missing = [n for n in names if n not in metrics.columns]
    if not names or missing:
        raise ValueError(f"no such metric in the frame: {', '.join(missing) or '(none named)'}")
    cols = max(1, min(columns, len(names)))
    rows = int(np.ceil(len(names) / cols))
    fig = NotebookFigure(figsize=(5.5 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        _draw(ax, metrics, name)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _write_figures(
    folder: Path,
    names: list[str],
    draw: Callable[[Axes, str], None],
    titles: tuple[str, str],
    size: tuple[float, float],
    panel: tuple[float, float],
    legend: dict[str, Any],
) -> list[Path]:
    """``<name>.png`` (``size`` inches, title ``titles[0]``) for each of ``names`` and
    ``overview.png`` with all of them (``panel`` inches each, title ``titles[1]``);
    ``draw(ax, name)`` draws one metric."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        fig = Figure(figsize=size)
        ax = fig.subplots()
        draw(ax, name)
        ax.legend(**legend)
        fig.suptitle(titles[0], fontsize=10)
        fig.tight_layout()
        written.append(folder / f"{name}.png")
        fig.savefig(written[-1], dpi=110)
    if names:
        cols = min(2, len(names))
        rows = int(np.ceil(len(names) / cols))
        fig = Figure(figsize=(panel[0] * cols, panel[1] * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, name in zip(axes.ravel(), names, strict=False):
            draw(ax, name)
        for ax in axes.ravel()[len(names) :]:
            ax.axis("off")
        axes[0, 0].legend(**legend)
        fig.suptitle(titles[1], fontsize=11)
        fig.tight_layout()
        written.append(folder / "overview.png")
        fig.savefig(written[-1], dpi=110)
    return written


def _draw(
    ax: Axes,
    metrics: pd.DataFrame,
    name: str,
    colours: dict[str, str] | None = None,
    style: str = "-",
    run: str | None = None,
) -> None:
    for label, frame in metrics.groupby("policy", sort=False):
        stats = measured(frame.groupby("tick")[name].agg(["mean", "std", "count"]))
        half = 1.96 * stats["std"].fillna(0) / np.sqrt(stats["count"].clip(lower=1))
        text = str(label) if run is None else f"{label} ({run})"
        colour = None if colours is None else colours[str(label)]
        line = ax.plot(stats.index, stats["mean"], style, label=text, lw=1.6, color=colour)[0]
        if (stats["count"] > 1).any():
            ax.fill_between(
                stats.index,
                stats["mean"] - half,
                stats["mean"] + half,
                color=line.get_color(),
                alpha=0.15,
            )
    ax.set_xlabel("tick")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # ticks are whole days
    ax.set_ylabel(name)
    ax.set_title(metric_title(name), fontsize=9)
    ax.grid(alpha=0.3)


def measured(stats: pd.DataFrame) -> pd.DataFrame:
    """The rows of per-tick ``stats`` (a ``count`` column) where some seed has a value: the
    ticks a metric was computed at (``metrics_every`` leaves the heavy ones ``nan`` between),
    so a line joins them instead of breaking at every skipped tick."""
    return stats[stats["count"] > 0]


def metric_title(name: str) -> str:
    """The metric's name with "(higher is better)" or "(lower is better)" when it is known."""
    try:
        metric = registry.get(name)
    except ValueError:
        return name
    arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}
    return f"{name}{arrow[metric.higher_is_better]}"
