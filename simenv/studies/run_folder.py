"""The run folder: the one module that knows its layout.

::

    config.yaml            the resolved scenario the run was made with (after --set overrides)
    parts/<label>-seed<N>/ one folder per (policy, seed) job:
        metrics.parquet, interactions.parquet   the job's rows, with policy and seed columns
        users.npz, users.json                   final user state (`recloop interview`)
        llm_stats.json                          LLM personas: the job's decisions, fallbacks
                                                and backend statistics (its own calls)
        llm_calibration.json                    LLM personas: the label priors divided out
                                                (decider.llm.calibration: contextual)
        checkpoint.pkl                          the world every ``checkpoint_every`` ticks
                                                (`simenv.studies.checkpoint`); removed once
                                                the job is done
        done                                    written last: the job finished
    metrics.parquet        one row per (policy, seed, tick), combined from the parts
    interactions.parquet   one row per impression, combined from the parts
    summary.json           per policy: final and mean metrics over seeds with 95% intervals;
                           LLM personas: decisions and fallbacks over all jobs (``llm``)
    llm_stats.json         LLM personas: backend statistics of the last finished job
    llm_calibration.json   LLM personas: the label priors of the last finished job
    llm_cache.sqlite       LLM personas: answers cached as they arrive (a resumed job replays)
    plots/*.png            one figure per plotted metric and an overview grid
    made_with.json         what the results depend on besides the scenario: recloop version,
                           data files and LLM (`simenv.studies.provenance`)
    .lock                  held (flock) by the process writing the folder; names its PID

Every file is written to a temporary name in the same folder, flushed to disk and renamed into
place (`atomic_write`), so a crash never leaves a half-written file that a later run trusts.
One process writes a folder at a time (`RunFolder.lock`); the kernel drops the lock of a process
that dies, so a stale ``.lock`` file never blocks a later run.

The runner, interviews, comparisons and the decider factory ask this module for paths; none of
them builds a path inside a run folder by itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
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
LLM_CALIBRATION = "llm_calibration.json"
LLM_CACHE = "llm_cache.sqlite"
USERS_NPZ = "users.npz"
USERS_JSON = "users.json"
MADE_WITH = "made_with.json"
LOCK = ".lock"
CHECKPOINT = "checkpoint.pkl"

#: Scenario fields that change how a run is carried out but not its results: a run folder may
#: be resumed with other values (`RunFolder.claim`), and checkpoints do not depend on them.
RESULT_NEUTRAL = ("checkpoint_every", "executor", "ray_address")
#: Scenario fields added after run folders were made, with the value that gives the results
#: those folders hold: `result_config` leaves a field out at that value, so a folder (and its
#: checkpoints) made before the field existed resumes under the default.
ADDED_FIELDS: dict[str, Any] = {"metrics_every": 1}
#: The index of a sweep folder (`simenv.studies.sweep`), whose settings are run folders.
SWEEP_INDEX = "sweep.json"
#: The ``kind`` a sweep folder's index names.
SWEEP_KIND = "recloop-sweep"


class RunFolderError(ValueError):
    """The folder is not a run folder, or belongs to a different scenario configuration."""


def read_sweep_index(root: Path) -> dict[str, Any] | None:
    """The ``sweep.json`` of the folder ``root`` (a sweep's index: valid JSON of kind
    `SWEEP_KIND`), or None when it has none; `RunFolderError` when it is not a sweep's."""
    path = Path(root) / SWEEP_INDEX
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunFolderError(
            f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}): it is not the index of a "
            "recloop sweep"
        ) from None
    if not isinstance(record, dict) or record.get("kind") != SWEEP_KIND:
        raise RunFolderError(f"{path} is not the index of a recloop sweep (kind {SWEEP_KIND!r})")
    return record


def config_text(scenario: Scenario) -> str:
    """``config.yaml`` as the run writes it: the resolved scenario, fields in schema order."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False)


def result_config(text: str) -> Any:
    """A ``config.yaml`` text as data without the `RESULT_NEUTRAL` fields and without the
    `ADDED_FIELDS` at their old value: two runs whose result configurations are equal give the
    same results."""
    data = yaml.safe_load(text)
    if isinstance(data, dict):
        for name in RESULT_NEUTRAL:
            data.pop(name, None)
        for name, before in ADDED_FIELDS.items():
            if name in data and data[name] == before:
                del data[name]
    return data


#: The names `atomic_write` writes to before renaming (``.<name>.tmp-<pid>``).
TEMPORARY = ".*.tmp-*"


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, flush it to disk, rename it into
    place: readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any, *, allow_nan: bool = True) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=str, allow_nan=allow_nan) + "\n")


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp))


def part_name(label: str) -> str:
    """The part folder name of a policy label (characters other than letters, digits, ``-_.``
    become ``_``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def check_part_names(scenario: Scenario) -> None:
    """Refuse policy labels that would share a part folder (``a/b`` and ``a_b``): the second
    job would be taken for the first one, finished."""
    seen: dict[str, str] = {}
    for cfg in scenario.policies:
        name = part_name(cfg.display)
        if name in seen:
            raise RunFolderError(
                f"policy labels {seen[name]!r} and {cfg.display!r} would share the part folder "
                f"'{PARTS}/{name}-seed<N>'; rename one of them"
            )
        seen[name] = cfg.display


class OutputFolderError(ValueError):
    """An output folder that cannot be made or written, or that must not be written into."""


def check_output_folder(path: Path, *, into_run: bool = True, into_sweep: bool = False) -> Path:
    """Refuse, before anything is written, an output folder (``--out``) that names a file,
    lies under a file, cannot be written, or, with ``into_run`` false, is a run folder (which
    a command other than `recloop run` would change), or, with ``into_sweep`` false, is a
    sweep folder (which only `recloop sweep` and `recloop resume` write). Returns ``path``."""
    path = Path(path)
    if str(path) == "":
        raise OutputFolderError("--out is empty: name a folder")
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"--out {path} is a file, not a folder; choose another --out")
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputFolderError(
            f"--out {path}: {existing} is a file, so no folder can be made under it; choose "
            "another --out"
        )
    refusal = _refuses_new_files(existing)
    if refusal is not None:
        whose = "it" if existing == path.absolute() else f"{existing}"
        raise OutputFolderError(
            f"--out {path}: {whose} is not writable ({refusal}); choose another --out"
        )
    if not into_sweep and (path / SWEEP_INDEX).is_file():
        raise OutputFolderError(
            f"--out {path} is a sweep folder: writing into it would change that sweep; choose "
            f"another --out (`recloop resume {path}` continues the sweep)"
        )
    if not into_run and RunFolder(path).is_run():
        raise OutputFolderError(
            f"--out {path} is a run folder: writing into it would change that run; choose "
            "another --out"
        )
    return path


def _refuses_new_files(folder: Path) -> str | None:
    """Why ``folder`` cannot take a new file, or None. Permission bits (`os.access`) are not
    enough: root passes them everywhere, also in /proc, which takes no files. So a temporary
    file is made and removed at once (the check leaves nothing behind)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        handle, name = tempfile.mkstemp(prefix=".recloop-probe-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(handle)
    os.unlink(name)
    return None


class FolderLockedError(RunFolderError):
    """Another process is writing the run folder."""


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (its ``.lock`` file) for the ``with`` block."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderLockedError(
                f"{folder} is being written by another recloop process (PID {holder}); wait "
                "for it to finish, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


class _ResultFiles:
    """The result files a run folder and each of its parts both hold."""

    path: Path

    def remove_temporary(self) -> None:
        """Remove the temporary files a killed writer left in the folder (`atomic_write`'s,
        never trusted); the caller holds the folder's lock, so their writer is gone."""
        if self.path.is_dir():
            for tmp in self.path.glob(TEMPORARY):
                tmp.unlink(missing_ok=True)

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def interactions(self) -> Path:
        return self.path / INTERACTIONS

    @property
    def llm_stats(self) -> Path:
        return self.path / LLM_STATS

    @property
    def llm_calibration(self) -> Path:
        return self.path / LLM_CALIBRATION


@dataclass(frozen=True)
class Part(_ResultFiles):
    """The folder of one (policy, seed) job."""

    path: Path
    label: str
    seed: int

    @property
    def users_npz(self) -> Path:
        return self.path / USERS_NPZ

    @property
    def users_json(self) -> Path:
        return self.path / USERS_JSON

    @property
    def checkpoint(self) -> Path:
        """The job's last checkpoint (`simenv.studies.checkpoint`), while it runs."""
        return self.path / CHECKPOINT

    def read_llm_stats(self) -> dict[str, Any] | None:
        """The job's ``llm_stats.json`` (LLM personas), or None when it has none."""
        if not self.llm_stats.is_file():
            return None
        data = json.loads(self.llm_stats.read_text())
        return data if isinstance(data, dict) else None

    def is_done(self) -> bool:
        return (self.path / DONE).exists()

    def mark_done(self) -> None:
        """Write the done marker, then remove the checkpoint, which a done job never reads."""
        write_text(self.path / DONE, "ok\n")
        self.checkpoint.unlink(missing_ok=True)

    def has_user_state(self) -> bool:
        return self.users_npz.is_file() and self.users_json.is_file()


@dataclass(frozen=True)
class RunFolder(_ResultFiles):
    """A run folder at ``path`` (see the module docstring for its layout)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    @property
    def llm_cache(self) -> Path:
        return self.path / LLM_CACHE

    # ---------------------------------------------------------------- the configuration

    @property
    def made_with(self) -> Path:
        return self.path / MADE_WITH

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The exclusive lock of the folder (`folder_lock`)."""
        return folder_lock(self.path)

    def remove_temporary(self) -> None:
        """The temporary files a killed writer left in the folder and in ``plots/``."""
        super().remove_temporary()
        if self.plots.is_dir():
            for tmp in self.plots.glob(TEMPORARY):
                tmp.unlink(missing_ok=True)

    def claim(self, scenario: Scenario, made_with: dict[str, Any]) -> None:
        """Make the folder this scenario's: write ``config.yaml`` and ``made_with.json``, or
        refuse when it holds a run of a different configuration or made with other inputs.
        The `RESULT_NEUTRAL` fields (``checkpoint_every``) may differ: ``config.yaml`` then
        records the latest value."""
        self.path.mkdir(parents=True, exist_ok=True)
        text = config_text(scenario)
        if self.config.exists() and result_config(self.config.read_text()) != result_config(text):
            raise RunFolderError(
                f"{self.path} holds a run of a different configuration (see {self.config}); "
                "choose another --out, or delete the folder"
            )
        if self.made_with.exists():
            from simenv.studies.provenance import differences

            changed = differences(json.loads(self.made_with.read_text()), made_with)
            if changed:
                raise RunFolderError(
                    f"{self.path} was run with other inputs ({'; '.join(changed)}); resuming "
                    "would mix results: restore them, or choose another --out"
                )
        write_text(self.config, text)
        write_json(self.made_with, made_with)

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
        return Part(self.path / PARTS / f"{part_name(cfg.display)}-seed{seed}", cfg.display, seed)

    def parts(self, scenario: Scenario) -> list[Part]:
        """Every (policy, seed) job of ``scenario``, in the order the runner runs them."""
        return [self.part(cfg, seed) for cfg in scenario.policies for seed in scenario.seeds]

    def write_llm_stats(self, part: Part, stats: dict[str, Any]) -> None:
        """The job's LLM statistics, in its part and (the latest job's) in the run folder."""
        write_json(part.llm_stats, stats)
        write_json(self.llm_stats, stats)

    def write_llm_calibration(self, part: Part, priors: dict[str, Any]) -> None:
        """The job's label priors (contextual calibration), in its part and (the latest
        job's) in the run folder."""
        write_json(part.llm_calibration, priors)
        write_json(self.llm_calibration, priors)

    # ---------------------------------------------------------------- results

    def read_metrics(self) -> pd.DataFrame:
        return pd.read_parquet(self.metrics)

    def is_finished(self) -> bool:
        return self.metrics.is_file() and self.config.is_file()
