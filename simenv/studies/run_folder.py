"""The run folder: the one module that knows its layout.

::

    config.yaml            the resolved scenario the run was made with (after --set overrides)
    parts/<label>-seed<N>/ one folder per (policy, seed) job:
        metrics.parquet, interactions.parquet   the job's rows, with policy and seed columns
        users.npz, users.json                   final user state (`recloop interview`)
        llm_stats.json                          LLM personas: backend statistics of the job
        done                                    written last: the job finished
    metrics.parquet        one row per (policy, seed, tick), combined from the parts
    interactions.parquet   one row per impression, combined from the parts
    summary.json           per policy: final and mean metrics over seeds with 95% intervals
    llm_stats.json         LLM personas: backend statistics of the last finished job
    llm_cache.sqlite       LLM personas: answers cached as they arrive (a resumed job replays)
    plots/*.png            one figure per plotted metric and an overview grid

The runner, interviews, comparisons and the decider factory ask this module for paths; none of
them builds a path inside a run folder by itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from scenarios import load
from scenarios.schema import PolicyConfig, Scenario

CONFIG = "config.yaml"
PARTS = "parts"
DONE = "done"
METRICS = "metrics.parquet"
INTERACTIONS = "interactions.parquet"
SUMMARY = "summary.json"
PLOTS = "plots"
LLM_STATS = "llm_stats.json"
LLM_CACHE = "llm_cache.sqlite"
USERS_NPZ = "users.npz"
USERS_JSON = "users.json"


class RunFolderError(ValueError):
    """The folder is not a run folder, or belongs to a different scenario configuration."""


def config_text(scenario: Scenario) -> str:
    """``config.yaml`` as the run writes it: the resolved scenario, fields in schema order."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False)


def write_json(path: Path, data: Any, *, allow_nan: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str, allow_nan=allow_nan) + "\n")
    return path


@dataclass(frozen=True)
class Part:
    """The folder of one (policy, seed) job."""

    path: Path
    label: str
    seed: int

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def interactions(self) -> Path:
        return self.path / INTERACTIONS

    @property
    def users_npz(self) -> Path:
        return self.path / USERS_NPZ

    @property
    def users_json(self) -> Path:
        return self.path / USERS_JSON

    @property
    def llm_stats(self) -> Path:
        return self.path / LLM_STATS

    def is_done(self) -> bool:
        return (self.path / DONE).exists()

    def mark_done(self) -> None:
        (self.path / DONE).write_text("ok\n")

    def has_user_state(self) -> bool:
        return self.users_npz.is_file() and self.users_json.is_file()


@dataclass(frozen=True)
class RunFolder:
    """A run folder at ``path`` (see the module docstring for its layout)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def interactions(self) -> Path:
        return self.path / INTERACTIONS

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    @property
    def llm_stats(self) -> Path:
        return self.path / LLM_STATS

    @property
    def llm_cache(self) -> Path:
        return self.path / LLM_CACHE

    # ---------------------------------------------------------------- the configuration

    def claim(self, scenario: Scenario) -> None:
        """Make the folder this scenario's: write ``config.yaml``, or refuse when it holds a
        run of a different configuration."""
        self.path.mkdir(parents=True, exist_ok=True)
        text = config_text(scenario)
        if self.config.exists() and self.config.read_text() != text:
            raise RunFolderError(
                f"{self.path} holds a run of a different configuration (see {self.config}); "
                "choose another --out, or delete the folder"
            )
        self.config.write_text(text)

    def is_run(self) -> bool:
        return self.config.is_file()

    def scenario(self) -> Scenario:
        """The resolved scenario the run was made with (its ``config.yaml``)."""
        if not self.is_run():
            what = "does not exist" if not self.path.exists() else "is not a run folder"
            raise RunFolderError(f"{self.path} {what} (no {CONFIG})")
        return load(self.config)

    # ---------------------------------------------------------------- the jobs

    def part(self, cfg: PolicyConfig, seed: int) -> Part:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg.display)
        return Part(self.path / PARTS / f"{safe}-seed{seed}", cfg.display, seed)

    def parts(self, scenario: Scenario) -> list[Part]:
        """Every (policy, seed) job of ``scenario``, in the order the runner runs them."""
        return [self.part(cfg, seed) for cfg in scenario.policies for seed in scenario.seeds]

    def write_llm_stats(self, part: Part, stats: dict[str, Any]) -> None:
        """The job's LLM statistics, in its part and (the latest job's) in the run folder."""
        write_json(part.llm_stats, stats)
        write_json(self.llm_stats, stats)

    # ---------------------------------------------------------------- results

    def read_metrics(self) -> pd.DataFrame:
        return pd.read_parquet(self.metrics)

    def is_finished(self) -> bool:
        return self.metrics.is_file() and self.config.is_file()
