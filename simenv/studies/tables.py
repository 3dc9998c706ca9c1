"""Tidy tables of a run for notebooks: the summary with its intervals, paired differences
between policies, and the LLM personas' statistics (decisions, fallbacks, backend calls, label
priors) job by job.

Everything here reads what the runner wrote (`RunResult.summary`, the metrics frame, or a run
folder through `simenv.studies.run_folder`) and returns pandas frames; nothing is computed
that a run did not record, and no figure is drawn (`simenv.studies.plots.metrics_figure` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simenv.studies.run_folder import Part, RunFolder
from simenv.studies.runner import interval

SUMMARY_COLUMNS = ["policy", "metric", "mean", "low", "high", "n"]


def summary_table(
    summary: Mapping[str, Any],
    metrics: Sequence[str] | None = None,
    *,
    over: str = "mean",
) -> pd.DataFrame:
    """One row per (policy, metric) of a run's ``summary`` (`RunResult.summary` or
    ``summary.json``): the mean over seeds and its 95% interval (``low``, ``high``, ``n``
    seeds). ``over``: ``"mean"`` (each seed's mean over ticks) or ``"final"`` (the last
    tick's value). ``metrics``: those columns only, in that order (default: all)."""
    if over not in ("mean", "final"):
        raise ValueError(f"over must be 'mean' or 'final', not {over!r}")
    by_policy = summary["policies"]
    rows = []
    for policy, cells in by_policy.items():
        names = list(cells) if metrics is None else list(metrics)
        for name in names:
            if name not in cells:
                raise KeyError(f"metric {name!r} is not in the summary of policy {policy!r}")
            rows.append({"policy": policy, "metric": name, **cells[name][over]})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def per_seed_means(metrics: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Each (policy, seed)'s mean over ticks of ``columns`` (index: policy, seed)."""
    missing = [c for c in columns if c not in metrics.columns]
    if missing:
        raise KeyError(f"not in the metrics: {', '.join(missing)}")
    return metrics.groupby(["policy", "seed"], sort=False)[list(columns)].mean()


def paired_differences(
    metrics: pd.DataFrame,
    policy: str,
    columns: Sequence[str],
    *,
    against: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``policy`` minus each other policy (``against``: those only), seed by seed (the same
    worlds), on each seed's mean over ticks: one row per (other policy, metric) with the mean
    difference and its 95% interval over the seeds both ran (``n``). An interval that excludes
    0 is a difference the seeds agree on."""
    means = per_seed_means(metrics, columns)
    policies = list(dict.fromkeys(means.index.get_level_values("policy")))
    others = [p for p in policies if p != policy] if against is None else list(against)
    unknown = [p for p in [policy, *others] if p not in policies]
    if unknown:
        raise KeyError(f"not a policy of the metrics: {unknown} (policies: {policies})")
    mine = means.xs(policy, level="policy")
    rows = []
    for other in others:
        theirs = means.xs(other, level="policy")
        seeds = mine.index.intersection(theirs.index)
        for name in columns:
            diff = mine.loc[seeds, name].to_numpy() - theirs.loc[seeds, name].to_numpy()
            rows.append({"against": other, "metric": name, **interval(diff)})
    return pd.DataFrame(rows, columns=["against", "metric", "mean", "low", "high", "n"])


def _finished_parts(run: Path) -> list[Part]:
    folder = RunFolder(Path(run))
    return [p for p in folder.parts(folder.scenario()) if p.is_done()]


def llm_jobs(run: Path | str) -> pd.DataFrame:
    """One row per finished job of an LLM-persona run: its ``policy`` and ``seed``, the
    decider's ``decisions``, ``fallbacks`` and ``fallback_share``, and what the model itself
    did (the innermost backend layer: ``calls``, ``prompts``, ``prompt_tokens``,
    ``seconds``) with the answers the cache gave instead (``cache_hits``, outermost layer).
    Empty for a run of parametric users."""
    rows = []
    for part in _finished_parts(Path(run)):
        stats = part.read_llm_stats()
        if stats is None:
            continue
        layers = stats.get("layers") or [{"stats": {}}]
        model = layers[-1]["stats"]
        rows.append(
            {
                "policy": part.label,
                "seed": part.seed,
                "decisions": int(stats.get("decisions", 0)),
                "fallbacks": int(stats.get("fallbacks", 0)),
                "fallback_share": float(stats.get("fallback_share", 0.0)),
                "calls": int(model.get("calls", 0)),
                "prompts": int(model.get("prompts", 0)),
                "prompt_tokens": int(model.get("prompt_tokens", 0)),
                "cache_hits": int(layers[0]["stats"].get("cache_hits", 0)),
                "seconds": float(model.get("seconds", 0.0)),
                "last_error": stats.get("last_error"),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "policy", "seed", "decisions", "fallbacks", "fallback_share", "calls", "prompts",
            "prompt_tokens", "cache_hits", "seconds", "last_error",
        ],
    )  # fmt: skip


def label_priors(run: Path | str) -> pd.DataFrame:
    """The label priors contextual calibration divided out of the answers
    (``llm_calibration.json`` of each finished job): one row per (policy, seed, question
    ``kind``, ``label``) with the number of ``personas`` and the mean, min and max prior over
    them. A uniform prior is 1 / (number of labels); the further from it, the more the model
    prefers a label whatever it is asked. Empty without contextual calibration."""
    rows = []
    for part in _finished_parts(Path(run)):
        if not part.llm_calibration.is_file():
            continue
        record = json.loads(part.llm_calibration.read_text())
        for q in record.get("questions", []):
            for i, label in enumerate(q["labels"]):
                rows.append(
                    {
                        "policy": part.label,
                        "seed": part.seed,
                        "kind": q["kind"],
                        "label": label,
                        "personas": int(q["personas"]),
                        "mean_prior": float(q["mean_prior"][i]),
                        "min_prior": float(q["min_prior"][i]),
                        "max_prior": float(q["max_prior"][i]),
                        "uniform": 1.0 / len(q["labels"]),
                    }
                )
    columns = ["policy", "seed", "kind", "label", "personas", "mean_prior", "min_prior",
               "max_prior", "uniform"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def label_bias(priors: pd.DataFrame) -> pd.DataFrame:
    """Per question ``kind`` (from `label_priors`): the label the model prefers most, its
    mean prior, and the total variation between the mean prior and a uniform answer (0: no
    label bias; near 1: one label whatever the question)."""
    rows = []
    for kind, frame in priors.groupby("kind", sort=False):
        mean = frame.groupby("label", sort=False)["mean_prior"].mean()
        uniform = np.full(len(mean), 1.0 / len(mean))
        rows.append(
            {
                "kind": kind,
                "favourite": str(mean.idxmax()),
                "favourite_prior": float(mean.max()),
                "total_variation": float(0.5 * np.abs(mean.to_numpy() - uniform).sum()),
            }
        )
    return pd.DataFrame(rows, columns=["kind", "favourite", "favourite_prior", "total_variation"])


__all__ = [
    "label_bias",
    "label_priors",
    "llm_jobs",
    "paired_differences",
    "per_seed_means",
    "summary_table",
]
