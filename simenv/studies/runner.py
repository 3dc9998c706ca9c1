"""Run a scenario: every (policy, seed) pair for ``ticks`` ticks, into one run folder.

The layout of the folder is `simenv.studies.run_folder`'s. Each finished (policy, seed) job is
written to its part folder at once; running the same command with the same ``--out`` again
skips finished jobs, so an interrupted study resumes where it stopped. The combined
``metrics.parquet``, ``interactions.parquet``, ``summary.json`` and ``plots/`` are rebuilt from
the parts. A job also writes a checkpoint of its world every ``checkpoint_every`` ticks
(`simenv.studies.checkpoint`); a killed job resumes from its last checkpoint, with the same
results as a job never interrupted. With LLM personas, each job ends with the decider's
`finish` check (too many decisions fell back: `LLMError`, the job is not marked done) and
``summary.json`` holds ``llm``, the decisions and fallbacks of every job, resumed ones included
(`llm_totals`).
"""

from __future__ import annotations

import difflib
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

import policies
from agents.deciders import Decider
from scenarios.schema import PolicyConfig, Scenario
from simenv import metrics as metrics_registry
from simenv.sizing import check_fits
from simenv.studies.checkpoint import (
    CheckpointError,
    checkpoint_key,
    load_checkpoint,
    save_checkpoint,
)
from simenv.studies.provenance import provenance
from simenv.studies.run_folder import (
    Part,
    RunFolder,
    atomic_write,
    check_output_folder,
    check_part_names,
    write_parquet,
    write_text,
)
from simenv.world import EXTRA_COLUMNS, World

DeciderFactory = Callable[[Scenario], Decider]


@dataclass(frozen=True)
class Resumed:
    """A job that continued from its checkpoint."""

    label: str
    seed: int
    tick: int  # ticks done when the checkpoint was written

    def line(self) -> str:
        return f"{self.label} seed {self.seed} from its checkpoint at tick {self.tick}"


@dataclass
class RunResult:
    out: Path
    metrics: pd.DataFrame
    summary: dict[str, object]
    resumed_jobs: int
    plots: list[Path]  # the figures written (none when no plotted metric was recorded)
    llm: FallbackTotals | None = None  # LLM personas: decisions and fallbacks of all jobs
    from_checkpoints: list[Resumed] = dataclass_field(default_factory=list)


def run_scenario(
    scenario: Scenario,
    out: Path,
    *,
    progress: bool = True,
    decider_factory: DeciderFactory | None = None,
) -> RunResult:
    out = check_output_folder(Path(out))
    folder = RunFolder(out)
    check_scenario(scenario)  # everything is checked before anything is written
    made_with = provenance(scenario)  # fails on missing data or model files
    with folder.lock():
        folder.claim(scenario, made_with)
        return _run(scenario, folder, progress, decider_factory)


def check_scenario(scenario: Scenario) -> None:
    """Fail on unknown policies, policy parameters, metrics or plots, an oracle with personas
    that define no true utilities, an LLM backend configuration that cannot work, or a world
    too large for the memory available, before any simulation starts (and before anything is
    written)."""
    for cfg in scenario.policies:
        policy = policies.make(cfg.name, **cfg.params)
        if scenario.decider.kind != "utility" and policies.needs_true_utilities(policy):
            raise ValueError(
                f"policy '{cfg.display}' needs the users' true utilities, which "
                f"{scenario.decider.kind} personas do not define: run it with "
                "decider.kind: utility"
            )
    for field in ("metrics", "extra_metrics"):
        for name in getattr(scenario, field) or []:
            metrics_registry.get(name, where=field)
    check_plots(scenario)
    check_part_names(scenario)
    if scenario.decider.kind == "llm":
        from simenv.studies.factory import backend_kwargs

        backend_kwargs(scenario.decider.llm)
    check_fits(scenario)


def check_plots(scenario: Scenario) -> None:
    """Every name in ``plots`` is a registered metric or one of the world's `EXTRA_COLUMNS`
    (recorded by this run or not: the run plots those it records)."""
    known = [*metrics_registry.available(), *EXTRA_COLUMNS]
    for name in scenario.plots:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            raise metrics_registry.UnknownMetricError(
                f"unknown metric {name!r} in plots{guess} (known: {', '.join(sorted(known))})"
            )


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
    from_checkpoints: list[Resumed] = []
    with tqdm(
        total=len(jobs) * scenario.ticks, disable=not progress, unit="tick", dynamic_ncols=True
    ) as bar:
        for cfg, seed in jobs:
            if folder.part(cfg, seed).is_done():
                resumed += 1
                bar.update(scenario.ticks)
                continue
            bar.set_description(f"{cfg.display} seed {seed}")
            start = run_job(scenario, cfg, seed, folder, decider_factory, bar=bar)
            if start is not None:
                from_checkpoints.append(start)
    seconds = time.perf_counter() - started
    return finish_run(scenario, folder, resumed, seconds, from_checkpoints)


def finish_run(
    scenario: Scenario,
    folder: RunFolder,
    resumed: int,
    seconds: float,
    from_checkpoints: Sequence[Resumed] = (),
) -> RunResult:
    """Combine the finished parts of every job into the run folder's ``metrics.parquet``,
    ``interactions.parquet``, ``summary.json`` and ``plots/`` (the same bytes however the jobs
    were run: in order, resumed, or by the workers of a sweep)."""
    folder.remove_temporary()  # what a killed attempt at combining left
    parts = folder.parts(scenario)
    for part in parts:
        if part.is_done():
            part.checkpoint.unlink(missing_ok=True)  # killed between done and its removal
    metrics = _combine(folder, parts)
    summary = summarize(metrics, scenario)
    llm = llm_totals(parts) if scenario.decider.kind == "llm" else None
    if llm is not None:
        summary["llm"] = llm.as_dict()
    summary["run"] = {
        "scenario": scenario.name,
        "seeds": scenario.seeds,
        "ticks": scenario.ticks,
        "policies": [cfg.display for cfg in scenario.policies],
        "resumed_jobs": resumed,
        "seconds": round(seconds, 3),
        "python": platform.python_version(),
    }
    write_text(folder.summary, json.dumps(summary, indent=2, allow_nan=False))
    from simenv.studies.plots import plot_run

    plots = plot_run(metrics, scenario, folder.plots)
    return RunResult(
        out=folder.path,
        metrics=metrics,
        summary=summary,
        resumed_jobs=resumed,
        plots=plots,
        llm=llm,
        from_checkpoints=list(from_checkpoints),
    )


@dataclass(frozen=True)
class Job:
    """One (policy, seed) of a scenario, with the key its checkpoints carry."""

    scenario: Scenario
    cfg: PolicyConfig
    seed: int
    key: str  # `checkpoint_key`


def run_job(
    scenario: Scenario,
    cfg: PolicyConfig,
    seed: int,
    folder: RunFolder,
    decider_factory: DeciderFactory | None = None,
    bar: tqdm | None = None,
) -> Resumed | None:
    """One (policy, seed) job of ``scenario``, from its checkpoint or from tick 0, to its
    ``done`` marker: run the world, checkpoint it every ``checkpoint_every`` ticks and write
    its part of ``folder`` (every file atomically, the marker last). The caller holds the
    folder's lock and has claimed it; `recloop run` and the workers of `recloop sweep` both
    come through here. ``bar`` (ticks) is advanced when given. Returns where the job resumed
    (None: from tick 0)."""
    part = folder.part(cfg, seed)
    part.remove_temporary()  # what a killed attempt at this job left (checkpoints included)
    made_with = json.loads(folder.made_with.read_text())  # what `claim` wrote
    job = Job(scenario, cfg, seed, checkpoint_key(scenario, made_with, cfg.display, seed))
    decider = decider_factory(scenario) if decider_factory else None
    loaded = _resume(job, part, decider)
    resumed: Resumed | None = None
    if loaded is not None:
        world, resumed = loaded
        if bar is not None:
            bar.update(resumed.tick)
            bar.set_description(f"{cfg.display} seed {seed} (from tick {resumed.tick})")
            if not bar.disable:
                bar.write(f"resuming {resumed.line()}")
    else:
        policy = policies.make(cfg.name, **cfg.params)
        world = World(scenario, policy, seed=seed, decider=decider)
    layers_before = world.decider.stats().get("layers")  # the backend serves many jobs
    every = scenario.checkpoint_every
    while world.tick < scenario.ticks:
        world.step()
        if bar is not None:
            bar.update(1)
        if every and world.tick % every == 0 and world.tick < scenario.ticks:
            every = _checkpoint(world, job, part, bar)
    _finish_job(world, job, folder, part, layers_before)
    return resumed


def _resume(job: Job, part: Part, decider: Decider | None) -> tuple[World, Resumed] | None:
    """The job's world from its checkpoint, if it has one (`CheckpointError` when that
    checkpoint belongs to another job or format)."""
    if not part.checkpoint.is_file():
        return None
    attachments = decider.attachments() if decider is not None else {}
    world = load_checkpoint(part.checkpoint, job.key, attachments)
    return world, Resumed(job.cfg.display, job.seed, world.tick)


def _checkpoint(world: World, job: Job, part: Part, bar: tqdm | None) -> int:
    """Write the job's checkpoint; returns the checkpoint interval to go on with (0 when the
    world cannot be checkpointed: the job goes on without, and says so once)."""
    try:
        save_checkpoint(part.checkpoint, world, job.key, job.cfg.display)
    except CheckpointError as err:
        message = (
            f"recloop: warning: {job.cfg.display} seed {job.seed} runs without checkpoints: {err}"
        )
        if bar is None or bar.disable:
            print(message, file=sys.stderr)
        else:
            bar.write(message, file=sys.stderr)
        return 0
    return job.scenario.checkpoint_every


def _finish_job(
    world: World,
    job: Job,
    folder: RunFolder,
    part: Part,
    layers_before: list[dict[str, Any]] | None,
) -> None:
    """The job's results into its part folder, the done marker last. ``layers_before``: the
    backend's statistics when the job started (or resumed) in this process, so that the job's
    ``llm_stats.json`` counts its own calls, not those of the jobs the process ran before."""
    scenario, cfg, seed = job.scenario, job.cfg, job.seed
    world.decider.finish()  # the LLM decider refuses a job with too many fallbacks
    part.path.mkdir(parents=True, exist_ok=True)
    stats = world.decider.stats()  # the LLM decider: decisions, fallbacks, backend statistics
    if stats and layers_before is not None and "layers" in stats:
        from simenv.llm.wrappers import layers_since

        stats["layers"] = layers_since(stats["layers"], layers_before)
    if stats:
        folder.write_llm_stats(part, stats)
    priors = world.decider.label_priors()  # the LLM decider: contextual calibration
    if priors:
        folder.write_llm_calibration(part, priors)
    from simenv.studies.interview import save_user_state  # for `recloop interview`

    save_user_state(world, part.path)
    labels: dict[str, str | int] = {"policy": cfg.display, "seed": seed}
    write_parquet(part.metrics, _with_labels(world.metrics_frame(), labels))
    if scenario.log_interactions:
        write_parquet(part.interactions, _with_labels(world.interactions_frame(), labels))
    part.mark_done()


@dataclass(frozen=True)
class FallbackTotals:
    """Decisions of the LLM decider over the jobs of a run and how many fell back."""

    decisions: int
    fallbacks: int
    jobs: int  # jobs whose llm_stats.json counted them

    @property
    def share(self) -> float:
        return self.fallbacks / self.decisions if self.decisions else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "decisions": self.decisions,
            "fallbacks": self.fallbacks,
            "fallback_share": self.share,
            "jobs": self.jobs,
        }

    def line(self) -> str:
        """``LLM fallbacks: 12 of 240 decisions (5.0%)``, what `recloop run` prints."""
        return f"LLM fallbacks: {self.fallbacks} of {self.decisions} decisions ({self.share:.1%})"


def llm_totals(parts: list[Part]) -> FallbackTotals:
    """`FallbackTotals` over every job of a run, resumed ones included (each part's
    ``llm_stats.json``)."""
    decisions = fallbacks = jobs = 0
    for part in parts:
        stats = part.read_llm_stats()
        if stats is None or "decisions" not in stats:
            continue
        decisions += int(stats["decisions"])
        fallbacks += int(stats["fallbacks"])
        jobs += 1
    return FallbackTotals(decisions, fallbacks, jobs)


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
    half = t95(x.size - 1) * float(x.std(ddof=1)) / np.sqrt(x.size)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(x.size)}


_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def t95(dof: int) -> float:
    """Two-sided 95% Student-t quantile (table, nearest lower dof; 1.96 past 30)."""
    if dof > 30:
        return 1.96
    return _T95[max(d for d in _T95 if d <= dof)]
