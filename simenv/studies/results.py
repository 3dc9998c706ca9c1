"""Tidy results of a run folder or a sweep folder as pandas frames: `load`.

::

    from simenv.studies import load

    res = load("runs/fb")                       # a run folder (`recloop run`)
    res = load("runs/s", interactions=False)    # a sweep folder (`recloop sweep`)
    res.metrics      # one row per (setting, policy, seed, tick)
    res.configs      # one row per setting, one column per swept field
    res.summary      # one row per (setting, policy, metric, statistic): mean and 95% interval
    res.interactions # one row per impression (None with interactions=False)

A sweep folder holds ``sweep.json`` (its index: the swept fields, ``grid``, and the settings,
each with its ``id``, ``overrides`` and ``folder``) and one ordinary run folder per setting under
``settings/<id>/`` (`simenv.studies.run_folder`). In a sweep, every row of ``metrics``,
``interactions`` and ``summary`` carries the setting's ``setting`` id and one column per swept
field, so frames group and plot directly (``res.metrics.groupby(["population.drift",
"policy", "tick"])``). The swept field ``policy`` ("the scenario's policies replaced by this
one") is a column of ``configs`` only: the rows' own ``policy`` column holds that policy's
label. A plain run folder is one setting without swept fields: its frames have no setting
columns and ``configs`` has one row.

``tick`` is int64 in every frame (run folders made before metrics.parquet stored int64 ticks
are cast on load). Only finished runs are read; an unfinished setting is an error naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from simenv.studies import run_folder
from simenv.studies.run_folder import CONFIG, METRICS, SWEEP_INDEX, RunFolder, RunFolderError

#: The columns every sweep row starts with: the setting's id (then one column per swept field).
SETTING = "setting"


class ResultsError(ValueError):
    """The path is not a finished run folder or sweep folder."""


@dataclass(frozen=True)
class Results:
    """What `load` read: tidy frames and the run folder of each setting."""

    path: Path
    kind: str  # "run" or "sweep"
    metrics: pd.DataFrame
    configs: pd.DataFrame
    summary: pd.DataFrame
    interactions: pd.DataFrame | None
    fields: list[str]  # the swept fields (none for a run folder), in grid order
    folders: dict[str, RunFolder] = field(default_factory=dict)  # setting id -> run folder
    index: dict[str, Any] = field(default_factory=dict)  # sweep.json (empty for a run)

    @property
    def setting_columns(self) -> list[str]:
        """The columns that say which setting a row of ``metrics`` belongs to."""
        return [SETTING, *self.row_fields] if self.kind == "sweep" else []

    @property
    def row_fields(self) -> list[str]:
        """The swept fields that are columns of ``metrics`` (all but ``policy``)."""
        return [f for f in self.fields if f != "policy"]


def is_sweep(path: Path | str) -> bool:
    return (Path(path) / SWEEP_INDEX).is_file()


def load(path: Path | str, *, interactions: bool = True) -> Results:
    """The results of the run folder or sweep folder at ``path`` (see the module docstring).

    ``interactions=False`` skips the interaction logs (the largest files); ``Results.
    interactions`` is then None. Raises `ResultsError` when ``path`` is neither a finished
    run folder nor a sweep folder whose settings have all finished.
    """
    path = Path(path)
    if is_sweep(path):
        return _load_sweep(path, interactions)
    run = RunFolder(path)
    _check_finished(run, str(path))
    name = run.scenario().name
    configs = pd.DataFrame([{SETTING: "run", "folder": ".", "scenario": name}])
    return Results(
        path=path,
        kind="run",
        metrics=read_metrics(run),
        configs=configs,
        summary=summary_frame(_read_json(run.summary)),
        interactions=read_interactions(run) if interactions else None,
        fields=[],
        folders={"run": run},
    )


def _check_finished(run: RunFolder, what: str) -> None:
    if not run.path.exists():
        raise ResultsError(f"{what} does not exist")
    if not run.path.is_dir():
        raise ResultsError(f"{what} is a file, not a run or sweep folder")
    if not run.is_run():
        raise ResultsError(
            f"{what} is not a run or sweep folder (no {CONFIG} or {SWEEP_INDEX}); give the "
            "folder `recloop run --out` or `recloop sweep --out` wrote"
        )
    if not run.is_finished() or not run.summary.is_file():
        raise ResultsError(
            f"{what} is an unfinished run (no {METRICS}); run the same `recloop run` command "
            "again to finish it"
        )


def read_metrics(run: RunFolder) -> pd.DataFrame:
    """A run's ``metrics.parquet`` with an int64 ``tick``."""
    metrics = run.read_metrics()
    return metrics.astype({"tick": "int64"})


def read_interactions(run: RunFolder) -> pd.DataFrame:
    """A run's ``interactions.parquet`` with an int64 ``tick`` (empty when the scenario did not
    log interactions)."""
    if not run.interactions.is_file():
        return pd.DataFrame()
    return pd.read_parquet(run.interactions).astype({"tick": "int64"})


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ResultsError(f"{path} is not a JSON object")
    return data


def summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """``summary.json``'s ``policies`` as rows: policy, metric, statistic (``final``: the
    last tick; ``mean``: the mean over ticks), then mean, low, high (95% interval over seeds)
    and n."""
    rows = []
    for policy, metrics in summary.get("policies", {}).items():
        for metric, stats in metrics.items():
            for statistic, value in stats.items():
                rows.append({"policy": policy, "metric": metric, "statistic": statistic, **value})
    columns = ["policy", "metric", "statistic", "mean", "low", "high", "n"]
    return pd.DataFrame(rows, columns=columns).astype({"n": "int64"})


# ---------------------------------------------------------------- sweeps


def read_sweep_index(path: Path) -> dict[str, Any]:
    """``sweep.json`` of the sweep folder ``path`` (`run_folder.read_sweep_index`), checked for
    what `load` needs."""
    file = path / SWEEP_INDEX
    try:
        index = run_folder.read_sweep_index(path)
    except RunFolderError as exc:
        raise ResultsError(str(exc)) from None
    if index is None:
        raise ResultsError(f"{path} holds no {SWEEP_INDEX}: it is not a sweep folder")
    settings = index.get("settings")
    if not isinstance(settings, list) or not all(
        isinstance(s, dict) and {"id", "folder", "overrides"} <= s.keys() for s in settings
    ):
        raise ResultsError(f"{file}: 'settings' must be a list of {{id, overrides, folder}}")
    return index


def sweep_fields(index: dict[str, Any]) -> list[str]:
    """The swept fields: the grid's, then any other field a setting overrides."""
    fields = list(index.get("grid") or {})
    for setting in index["settings"]:
        fields += [f for f in setting["overrides"] if f not in fields]
    return fields


def _load_sweep(path: Path, interactions: bool) -> Results:
    index = read_sweep_index(path)
    fields = sweep_fields(index)
    folders = {str(s["id"]): RunFolder(path / s["folder"]) for s in index["settings"]}
    unfinished = [sid for sid, run in folders.items() if not _finished(run)]
    if unfinished:
        shown = ", ".join(unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
        raise ResultsError(
            f"{path} is an unfinished sweep: {len(unfinished)} of {len(folders)} settings have "
            f"no results ({shown}); resume it (`recloop resume {path}`) first"
        )
    configs = pd.DataFrame(
        [
            {SETTING: str(s["id"]), **_cells(s["overrides"], fields), "folder": s["folder"]}
            for s in index["settings"]
        ],
        columns=[SETTING, *fields, "folder"],
    )
    row_fields = [f for f in fields if f != "policy"]
    labels = configs.set_index(SETTING)[row_fields]

    def labelled(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        out = []
        for sid, frame in frames.items():
            frame = frame.copy()
            for i, name in enumerate([SETTING, *row_fields]):
                value: Any = sid if name == SETTING else labels.at[sid, name]
                frame.insert(i, name, value)
            out.append(frame)
        return pd.concat(out, ignore_index=True) if out else pd.DataFrame()

    summaries = {sid: summary_frame(_read_json(run.summary)) for sid, run in folders.items()}
    return Results(
        path=path,
        kind="sweep",
        metrics=labelled({sid: read_metrics(run) for sid, run in folders.items()}),
        configs=configs,
        summary=labelled(summaries),
        interactions=(
            labelled({sid: read_interactions(run) for sid, run in folders.items()})
            if interactions
            else None
        ),
        fields=fields,
        folders=folders,
        index=index,
    )


def _finished(run: RunFolder) -> bool:
    return run.is_finished() and run.summary.is_file()


def _cells(overrides: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """A setting's value of each swept field; lists and mappings as JSON text (a cell that
    groups and compares)."""
    return {
        f: json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v
        for f, v in ((f, overrides.get(f)) for f in fields)
    }
