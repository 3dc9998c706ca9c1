"""Run a scenario: every (policy, seed) pair for ``ticks`` ticks, into one run folder.

The layout of the folder is `simenv.studies.run_folder`'s. Each finished (policy, seed) job is
written to its part folder at once; running the same command with the same ``--out`` again
skips finished jobs, so an interrupted study resumes where it stopped. The combined
``metrics.parquet``, ``interactions.parquet``, ``summary.json`` and ``plots/`` are rebuilt from
the parts.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

import policies
from agents.deciders import Decider
from scenarios.schema import PolicyConfig, Scenario
from simenv import metrics as metrics_registry
from simenv.studies.provenance import provenance
from simenv.studies.run_folder import (
    Part,
    RunFolder,
    atomic_write,
    write_parquet,
    write_text,
)
from simenv.world import World

DeciderFactory = Callable[[Scenario], Decider]


@dataclass
class RunResult:
    out: Path
    metrics: pd.DataFrame
    summary: dict[str, object]
    resumed_jobs: int


def run_scenario(
    scenario: Scenario,
    out: Path,
    *,
    progress: bool = True,
    decider_factory: DeciderFactory | None = None,
) -> RunResult:
    out = Path(out)
    folder = RunFolder(out)
    check_scenario(scenario)  # everything is checked before anything is written
    made_with = provenance(scenario)  # fails on missing data or model files
    with folder.lock():
        folder.claim(scenario, made_with)
        return _run(scenario, folder, progress, decider_factory)


def check_scenario(scenario: Scenario) -> None:
    """Fail on unknown policies, policy parameters or metrics, and on an oracle with
    personas that define no true utilities, before any simulation starts."""
    for cfg in scenario.policies:
        policy = policies.make(cfg.name, **cfg.params)
        if scenario.decider.kind != "utility" and policies.needs_true_utilities(policy):
            raise ValueError(
                f"policy '{cfg.display}' needs the users' true utilities, which "
                f"{scenario.decider.kind} personas do not define: run it with "
                "decider.kind: utility"
            )
    metrics_registry.recorded(scenario.metrics, scenario.extra_metrics)


def _run(
    scenario: Scenario,
    folder: RunFolder,
    progress: bool,
    decider_factory: DeciderFactory | None,
) -> RunResult:
    if decider_factory is None and scenario.decider.kind != "utility":
        from simenv.studies.factory import decider_factory as make_factory

        decider_factory = make_factory(folder.path)
    jobs = [(cfg, seed) for cfg in scenario.policies for seed in scenario.seeds]
    started = time.perf_counter()
    resumed = 0
    with tqdm(
        total=len(jobs) * scenario.ticks, disable=not progress, unit="tick", dynamic_ncols=True
    ) as bar:
        for cfg, seed in jobs:
            part = folder.part(cfg, seed)
            if part.is_done():
                resumed += 1
                bar.update(scenario.ticks)
                continue
            bar.set_description(f"{cfg.display} seed {seed}")
            _run_job(scenario, cfg, seed, folder, part, bar, decider_factory)
    metrics = _combine(folder, folder.parts(scenario))
    summary = summarize(metrics, scenario)
    summary["run"] = {
        "scenario": scenario.name,
        "seeds": scenario.seeds,
        "ticks": scenario.ticks,
        "policies": [cfg.display for cfg in scenario.policies],
        "resumed_jobs": resumed,
        "seconds": round(time.perf_counter() - started, 3),
        "python": platform.python_version(),
    }
    write_text(folder.summary, json.dumps(summary, indent=2, allow_nan=False))
    from simenv.studies.plots import plot_run

    plot_run(metrics, scenario, folder.plots)
    return RunResult(out=folder.path, metrics=metrics, summary=summary, resumed_jobs=resumed)


def _run_job(
    scenario: Scenario,
    cfg: PolicyConfig,
    seed: int,
    folder: RunFolder,
    part: Part,
    bar: tqdm,
    decider_factory: DeciderFactory | None,
) -> None:
    policy = policies.make(cfg.name, **cfg.params)
    decider = decider_factory(scenario) if decider_factory else None
    world = World(scenario, policy, seed=seed, decider=decider)
    for _ in range(scenario.ticks):
        world.step()
        bar.update(1)
    part.path.mkdir(parents=True, exist_ok=True)
    stats = world.decider.stats()  # the LLM decider: backend statistics
    if stats:
        folder.write_llm_stats(part, stats)
    from simenv.studies.interview import save_user_state  # for `recloop interview`

    save_user_state(world, part.path)
    labels: dict[str, str | int] = {"policy": cfg.display, "seed": seed}
    write_parquet(part.metrics, _with_labels(world.metrics_frame(), labels))
    if scenario.log_interactions:
        write_parquet(part.interactions, _with_labels(world.interactions_frame(), labels))
    part.mark_done()


def _with_labels(frame: pd.DataFrame, labels: dict[str, str | int]) -> pd.DataFrame:
    for i, (key, value) in enumerate(labels.items()):
        frame.insert(i, key, value)
    return frame


def _combine(folder: RunFolder, parts: list[Part]) -> pd.DataFrame:
    metrics = pd.concat([pd.read_parquet(p.metrics) for p in parts], ignore_index=True)
    write_parquet(folder.metrics, metrics)
    logs = [p.interactions for p in parts if p.interactions.exists()]
    if logs:
        atomic_write(folder.interactions, lambda tmp: _concat_parquet(logs, tmp))
    return metrics


def _concat_parquet(files: list[Path], target: Path) -> None:
    """Stream many parquet files with the same schema into one, one file in memory at a time."""
    writer: pq.ParquetWriter | None = None
    try:
        for file in files:
            table = pq.read_table(file)
            if writer is None:
                writer = pq.ParquetWriter(target, table.schema)
            writer.write_table(
                table.cast(writer.schema) if table.schema != writer.schema else table
            )
    finally:
        if writer is not None:
            writer.close()


def summarize(metrics: pd.DataFrame, scenario: Scenario) -> dict[str, object]:
    """Per policy and metric: the last tick's value and the mean over ticks, over seeds.

    Each is reported as ``{"mean", "low", "high", "n"}``, a 95% t-interval over seeds.
    """
    value_cols = [c for c in metrics.columns if c not in {"policy", "seed", "tick"}]
    last_tick = metrics["tick"].max()
    result: dict[str, object] = {}
    for label, frame in metrics.groupby("policy", sort=False):
        final = frame[frame["tick"] == last_tick].set_index("seed")[value_cols]
        over_time = frame.groupby("seed")[value_cols].mean()
        result[str(label)] = {
            col: {"final": interval(final[col].to_numpy()), "mean": interval(over_time[col])}
            for col in value_cols
        }
    return {"policies": result}


def interval(values: np.ndarray | pd.Series) -> dict[str, float | int | None]:
    """Mean and 95% t-interval of the finite values (None where undefined)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(x.mean())
    if x.size == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1}
    half = _t95(x.size - 1) * float(x.std(ddof=1)) / np.sqrt(x.size)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(x.size)}


_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def _t95(dof: int) -> float:
    """Two-sided 95% Student-t quantile (table, nearest lower dof; 1.96 past 30)."""
    if dof > 30:
        return 1.96
    return _T95[max(d for d in _T95 if d <= dof)]
