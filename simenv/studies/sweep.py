"""Sweeps: a grid (or a list) of scenario overrides times seeds, run in parallel, resumable.

::

    sweep.json          the index (`SweepPlan.record`): kind, version, scenario, the --set
                        overrides common to all settings, the grid, the seeds, every setting
                        (id, overrides, folder) and the recloop version that made it
    settings/<id>/      one ordinary run folder per setting (`simenv.studies.run_folder`)
    .lock               held by the sweep while it runs (`run_folder.folder_lock`)

A setting is a dict of overrides: the field ``policy`` replaces the scenario's policies by that
one policy (like ``recloop run --policy NAME``), any other field is a dotted scenario path (like
``--set``). Every (setting, policy, seed) is a job: `run_job_task` runs it through
`runner.run_job`, which writes the job's part of the setting's run folder atomically, the
``done`` marker last. Jobs run in this process (one worker), in a pool of spawned processes
(``workers``) or as Ray tasks (``ray_address``); each job depends only on its scenario and seed,
so every executor gives the same bytes. When every job of a setting is done, `runner.finish_run`
combines its parts into ``metrics.parquet``, ``summary.json`` and ``plots/``, as `recloop run`
does.

Everything is checked before anything is written: every setting's scenario (`load` and
`runner.check_scenario`), duplicate settings, the output folder, the Ray address. The sweep
then holds the sweep folder's lock and every setting folder's lock, claims each setting folder
(`RunFolder.claim`: configuration and provenance) and refuses a ``sweep.json`` of another sweep
or another recloop version. A killed sweep is resumed by running the same command again or by
`recloop resume DIR` (`plan_from_record`): finished jobs are kept.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import re
import signal
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from tqdm import tqdm

from scenarios import load, validate
from scenarios.schema import PolicyConfig, Scenario
from simenv.studies.factory import SharedBackends
from simenv.studies.provenance import provenance, recloop_version
from simenv.studies.run_folder import (
    SWEEP_INDEX,
    SWEEP_KIND,
    RunFolder,
    RunFolderError,
    check_output_folder,
    config_text,
    folder_lock,
    read_sweep_index,
    write_json,
)
from simenv.studies.runner import check_scenario, finish_run, run_job

SETTINGS = "settings"
FORMAT_VERSION = 1
#: The grid field that replaces the scenario's policies by one policy.
POLICY = "policy"
#: Seconds to wait for a Ray address to answer before giving up.
RAY_TIMEOUT = 5.0
#: A number in exponent notation without a dot (``1e-2``), which YAML 1.1 leaves a string.
EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class SweepError(ValueError):
    """A sweep that cannot run as asked (bad grid, another sweep in the folder, no Ray)."""


# ---------------------------------------------------------------------------- the settings


def scalar(text: str, where: str) -> Any:
    """A YAML scalar (``0.05``, ``1e-2``, ``true``, ``mf``); ``where`` names it in errors."""
    if not text.strip():
        raise SweepError(f"{where}: empty value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise SweepError(f"{where}: not a YAML value: {text!r}") from None
    if isinstance(value, str) and EXPONENT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict | list) or value is None:
        raise SweepError(
            f"{where}: {text!r} is not a single value (a number, true/false or a word)"
        )
    return value


def _field(text: str, where: str) -> str:
    name = text.strip()
    if not name or not all(name.split(".")):
        raise SweepError(f"{where}: expected FIELD=VALUE with a dotted field name")
    if name == "seeds":
        raise SweepError(f"{where}: seeds are given by --seeds N or --seed S, not as a field")
    return name


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``--grid FIELD=V1,V2`` options as ``{field: [values]}`` (in the order given)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, eq, text = item.partition("=")
        where = f"--grid {item}"
        name = _field(key if eq else "", where)
        if name in grid:
            raise SweepError(f"{where}: field '{name}' is gridded twice; list its values once")
        values = text.split(",")
        if not text.strip():
            raise SweepError(f"{where}: no values (expected {name}=V1,V2,...)")
        grid[name] = [scalar(v, f"{where}: value {i + 1}") for i, v in enumerate(values)]
    return grid


def parse_setting(text: str) -> dict[str, Any]:
    """``--setting 'FIELD=V,FIELD=V'`` as ``{field: value}``."""
    out: dict[str, Any] = {}
    if not text.strip():
        raise SweepError("--setting: empty (expected 'FIELD=V,FIELD=V')")
    for pair in text.split(","):
        key, eq, value = pair.partition("=")
        where = f"--setting {text}"
        name = _field(key if eq else "", where)
        if name in out:
            raise SweepError(f"{where}: field '{name}' given twice")
        out[name] = scalar(value, f"{where}: {name}")
    return out


def combine(grid: dict[str, list[Any]], settings: Sequence[dict[str, Any]]) -> list[dict]:
    """Every combination of the grid's values (the last field varying fastest), then the
    explicit settings; without either, one setting with no overrides."""
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    if not grid:
        combos = []
    return [*combos, *settings] or [{}]


def describe(overrides: dict[str, Any]) -> str:
    """``policy=mf population.drift=0.05`` (``(scenario as is)`` for no overrides)."""
    return " ".join(f"{k}={v}" for k, v in overrides.items()) or "(scenario as is)"


@dataclass(frozen=True)
class Setting:
    """One setting of a sweep: its id, its overrides and the resolved scenario."""

    id: str
    overrides: dict[str, Any]
    scenario: Scenario

    @property
    def folder(self) -> str:
        return f"{SETTINGS}/{self.id}"

    @property
    def jobs(self) -> int:
        return len(self.scenario.policies) * len(self.scenario.seeds)


def resolve_setting(
    scenario: str, common: Sequence[str], overrides: dict[str, Any], seeds: list[int] | None
) -> Scenario:
    """The scenario of one setting: ``scenario`` with the ``--set`` overrides ``common``, then
    the setting's overrides, then ``seeds`` (when given)."""
    dotted = [f"{k}={json.dumps(v)}" for k, v in overrides.items() if k != POLICY]
    sc = load(scenario, [*common, *dotted])
    updates: dict[str, Any] = {}
    if seeds is not None:
        updates["seeds"] = seeds
    if POLICY in overrides:
        updates["policies"] = [PolicyConfig(name=str(overrides[POLICY])).model_dump()]
    if updates:
        sc = validate({**sc.model_dump(), **updates}, source=scenario)
    return sc


@dataclass(frozen=True)
class SweepPlan:
    """A resolved sweep: what ``sweep.json`` records and the scenario of every setting."""

    scenario: str
    common: list[str]  # the --set overrides of every setting
    grid: dict[str, list[Any]]
    seeds: list[int]
    settings: list[Setting]

    def record(self) -> dict[str, Any]:
        """The content of ``sweep.json``."""
        return {
            "kind": SWEEP_KIND,
            "version": FORMAT_VERSION,
            "scenario": self.scenario,
            "set": list(self.common),
            "grid": self.grid,
            "seeds": self.seeds,
            "settings": [
                {"id": s.id, "overrides": s.overrides, "folder": s.folder} for s in self.settings
            ],
            "recloop_version": recloop_version(),
        }

    def jobs(self, root: Path) -> list[Job]:
        """Every (setting, policy, seed) job, settings in order, then as `recloop run` runs."""
        return [
            Job(s.id, (root / s.folder).absolute(), s.scenario, cfg, seed)
            for s in self.settings
            for cfg in s.scenario.policies
            for seed in s.scenario.seeds
        ]


def plan_sweep(
    scenario: str,
    *,
    common: Sequence[str] = (),
    grid: dict[str, list[Any]] | None = None,
    settings: Sequence[dict[str, Any]] = (),
    seeds: list[int] | None = None,
) -> SweepPlan:
    """Resolve and check every setting (its scenario loads, its policies, metrics, plots and
    LLM configuration are usable, it fits in memory, no two settings are the same) before
    anything is written."""
    grid = dict(grid or {})
    path = Path(scenario)
    source = str(path.resolve()) if path.suffix in {".yaml", ".yml"} or path.is_file() else scenario
    if POLICY in grid or any(POLICY in s for s in settings):
        for item in common:
            if item.partition("=")[0].strip().split(".")[0] == "policies":
                raise SweepError(
                    f"--set {item} does not apply: the field 'policy' replaces the scenario's "
                    "policies"
                )
    resolved: list[Setting] = []
    seen: dict[str, str] = {}
    for i, overrides in enumerate(combine(grid, settings)):
        sid = f"s{i:03d}"
        try:
            sc = resolve_setting(source, common, overrides, seeds)
            check_scenario(sc)
        except ValueError as exc:
            raise SweepError(f"setting {sid} ({describe(overrides)}): {exc}") from None
        text = config_text(sc)
        if text in seen:
            raise SweepError(
                f"settings {seen[text]} and {sid} ({describe(overrides)}) are the same scenario; "
                "give each setting once"
            )
        seen[text] = sid
        resolved.append(Setting(sid, overrides, sc))
    return SweepPlan(source, list(common), grid, list(resolved[0].scenario.seeds), resolved)


def plan_from_record(record: dict[str, Any]) -> SweepPlan:
    """The plan a ``sweep.json`` records (`recloop resume`): every setting resolved again from
    the scenario, the common overrides and its own, with the recorded seeds."""
    try:
        scenario, common, grid = record["scenario"], record["set"], record["grid"]
        settings, seeds = [s["overrides"] for s in record["settings"]], record["seeds"]
    except (KeyError, TypeError) as exc:
        raise SweepError(f"{SWEEP_INDEX} is incomplete (no {exc}); it cannot be resumed") from None
    base = plan_sweep(scenario, common=common, settings=settings, seeds=seeds)
    return SweepPlan(base.scenario, base.common, grid, base.seeds, base.settings)


def read_record(root: Path) -> dict[str, Any] | None:
    """The ``sweep.json`` of ``root``, or None when it has none (`run_folder.read_sweep_index`)."""
    try:
        return read_sweep_index(root)
    except RunFolderError as exc:
        raise SweepError(str(exc)) from None


def claim_sweep(root: Path, plan: SweepPlan) -> None:
    """Write ``sweep.json``, or refuse when the folder holds another sweep or one made by
    another recloop version (nothing is changed then)."""
    record = plan.record()
    stored = read_record(root)
    if stored is not None:
        if stored.get("recloop_version") != record["recloop_version"]:
            raise SweepError(
                f"{root} was made by recloop {stored.get('recloop_version')}, this is recloop "
                f"{record['recloop_version']}: resuming would mix results; use that version, "
                "or choose another --out"
            )
        from simenv.studies.provenance import differences

        changed = differences(stored, record)
        if changed:
            raise SweepError(
                f"{root} holds another sweep ({'; '.join(changed)}); run the same sweep to "
                "resume it (`recloop resume`), or choose another --out"
            )
        return
    write_json(root / SWEEP_INDEX, record)


# ---------------------------------------------------------------------------- the tasks


@dataclass(frozen=True)
class Job:
    """One (setting, policy, seed) job and the run folder it writes."""

    setting: str
    folder: Path
    scenario: Scenario
    policy: PolicyConfig
    seed: int

    @property
    def name(self) -> str:
        return f"{self.setting} {self.policy.display} seed {self.seed}"

    def is_done(self) -> bool:
        return RunFolder(self.folder).part(self.policy, self.seed).is_done()


@dataclass(frozen=True)
class Combine:
    """Combine a setting whose jobs are all done (`runner.finish_run`: its parquet files,
    ``summary.json`` and plots), in a worker like a job."""

    setting: str
    folder: Path
    scenario: Scenario
    kept: int  # jobs of the setting found done when the sweep started
    started: float  # when the sweep started (`time.time`)

    @property
    def name(self) -> str:
        return f"{self.setting} combine"


Task = Job | Combine


@dataclass(frozen=True)
class Outcome:
    """What a task reports back: its name and setting and, when it failed, the error in one
    line."""

    name: str
    setting: str
    is_job: bool
    error: str | None = None


#: The backends of this process, shared by every job it runs (one model per LLM configuration).
_PROCESS_BACKENDS = SharedBackends()


def run_task(task: Task) -> Outcome:
    """Run one task in this process (the sweep's own, a pool worker or a Ray worker); an error
    is reported, not raised, so the other tasks go on."""
    is_job = isinstance(task, Job)
    try:
        folder = RunFolder(task.folder)
        if isinstance(task, Job):
            factory = _PROCESS_BACKENDS.factory(task.folder)
            run_job(task.scenario, task.policy, task.seed, folder, factory)
        else:
            finish_run(task.scenario, folder, task.kept, time.time() - task.started)
    except Exception as exc:  # reported at the end of the sweep; the task can be resumed
        return Outcome(task.name, task.setting, is_job, _one_line(exc))
    return Outcome(task.name, task.setting, is_job)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"


class Executor(Protocol):
    """Runs tasks; tasks may be submitted while `outcomes` is iterated."""

    def submit(self, task: Task) -> None: ...

    def outcomes(self) -> Iterator[Outcome]:
        """Each task's outcome as it finishes, until no task is left."""
        ...

    def running(self) -> int: ...

    def close(self, interrupted: bool) -> None: ...


class InProcess:
    """Tasks one after the other in this process (``--workers 1``)."""

    def __init__(self) -> None:
        self.queue: deque[Task] = deque()

    def submit(self, task: Task) -> None:
        self.queue.append(task)

    def outcomes(self) -> Iterator[Outcome]:
        while self.queue:
            yield run_task(self.queue.popleft())

    def running(self) -> int:
        return min(1, len(self.queue))

    def close(self, interrupted: bool) -> None:
        self.queue.clear()


def _worker_init() -> None:
    """Pool workers leave Ctrl-C to the sweep, which stops them (no traceback per worker), and
    on Linux die with it (a sweep killed by ``kill -9`` leaves no worker writing behind)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ProcessPool:
    """Tasks in ``workers`` spawned processes (each keeps its backends across its jobs)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
        self.pending: dict[Future[Outcome], Task] = {}

    def submit(self, task: Task) -> None:
        self.pending[self.pool.submit(run_task, task)] = task

    def outcomes(self) -> Iterator[Outcome]:
        while self.pending:
            done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
            for fut in done:
                task = self.pending.pop(fut)
                try:
                    yield fut.result()
                except Exception as exc:  # the worker died (killed, out of memory)
                    yield Outcome(task.name, task.setting, isinstance(task, Job), _one_line(exc))

    def running(self) -> int:
        return min(self.workers, len(self.pending))

    def close(self, interrupted: bool) -> None:
        if not interrupted:
            self.pool.shutdown()
            return
        self.pool.shutdown(wait=False, cancel_futures=True)
        workers = multiprocessing.active_children()  # the pool's workers
        for child in workers:
            child.terminate()
        for child in workers:  # gone before the sweep lets go of its locks
            child.join(timeout=10)


class RayTasks:
    """Tasks as Ray tasks (one CPU each) on the cluster at ``address``, or on a local Ray
    runtime of ``workers`` CPUs (``local``). Connects at once: an address that does not
    answer is a `SweepError` before anything is written."""

    def __init__(self, address: str, workers: int) -> None:
        import ray

        connect_ray(address, workers)
        self.remote = ray.remote(num_cpus=1)(run_task)
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.pending: dict[Any, Task] = {}

    def submit(self, task: Task) -> None:
        self.pending[self.remote.remote(task)] = task

    def outcomes(self) -> Iterator[Outcome]:
        import ray

        while self.pending:
            done, _ = ray.wait(list(self.pending), num_returns=1)
            for ref in done:
                task = self.pending.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as exc:  # the worker died
                    yield Outcome(task.name, task.setting, isinstance(task, Job), _one_line(exc))

    def running(self) -> int:
        return min(self.capacity, len(self.pending))

    def close(self, interrupted: bool) -> None:
        import ray

        if interrupted:
            for ref in self.pending:
                ray.cancel(ref, force=True)
        ray.shutdown()


def connect_ray(address: str, workers: int) -> None:
    """``ray.init`` on ``address`` (``local``: a new local runtime with ``workers`` CPUs);
    a `SweepError` in one line when no Ray answers there within `RAY_TIMEOUT` seconds."""
    import ray

    if address == "local":
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        return
    host_port = address.removeprefix("ray://")
    host, colon, port = host_port.rpartition(":")
    if address != "auto":
        if not colon or not port.isdigit():
            raise SweepError(
                f"--ray-address {address}: expected HOST:PORT, ray://HOST:PORT, auto or local"
            )
        try:
            socket.create_connection((host, int(port)), timeout=RAY_TIMEOUT).close()
        except OSError as exc:
            raise SweepError(
                f"--ray-address {address}: no Ray answers there ({exc.strerror or exc}); start "
                "the cluster (`ray start --head`) or use --ray-address local"
            ) from None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise SweepError(
            f"--ray-address {address}: could not join a Ray cluster ({text})"
        ) from None


# ---------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    out: Path
    plan: SweepPlan
    summaries: dict[str, dict[str, Any]]  # setting id -> its summary.json (combined settings)
    failures: list[Outcome] = field(default_factory=list)
    resumed: int = 0  # jobs found finished
    ran: int = 0  # jobs run now (failed ones included)


def scenario_ray_address(plan: SweepPlan) -> str | None:
    """The Ray address the settings' scenarios ask for (``executor: ray``), or None when they
    run in processes; settings that disagree are an error (one sweep, one executor)."""
    asked = {(s.scenario.executor, s.scenario.ray_address) for s in plan.settings}
    if len(asked) > 1:
        raise SweepError(
            "the settings name different executors (executor, ray_address): "
            f"{sorted(asked)}; sweep the executor with --ray-address, not in the grid"
        )
    executor, address = asked.pop()
    return address if executor == "ray" else None


def run_sweep(
    plan: SweepPlan,
    out: Path,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run every job of ``plan`` not yet done into the sweep folder ``out``, and combine each
    setting when its jobs are all done. Failed tasks are in the result (the sweep can be
    resumed). ``ray_address`` None: the scenario's ``executor`` / ``ray_address`` decide."""
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    ray_address = ray_address if ray_address is not None else scenario_ray_address(plan)
    out = check_output_folder(Path(out), into_run=False, into_sweep=True)
    made_with = [provenance(s.scenario) for s in plan.settings]  # fails on missing data files
    executor: Executor = InProcess()
    if ray_address is not None:
        executor = RayTasks(ray_address, workers)  # connects: no answer, nothing written
    elif workers > 1:
        executor = ProcessPool(workers)
    try:
        result = _locked_sweep(plan, out, made_with, executor, progress)
    except BaseException:
        executor.close(interrupted=True)
        raise
    executor.close(interrupted=False)
    return result


def _locked_sweep(
    plan: SweepPlan, out: Path, made_with: list[dict[str, Any]], executor: Executor, progress: bool
) -> SweepResult:
    """Hold the sweep's and every setting's lock, claim them, run what is not done."""
    with contextlib.ExitStack() as locks:
        locks.enter_context(folder_lock(out))
        claim_sweep(out, plan)
        folders = [RunFolder(out / s.folder) for s in plan.settings]
        for folder in folders:
            locks.enter_context(folder.lock())
        for folder, setting, inputs in zip(folders, plan.settings, made_with, strict=True):
            try:
                folder.claim(setting.scenario, inputs)
            except RunFolderError as exc:
                raise SweepError(f"setting {setting.id}: {exc}") from None
        return _run_tasks(plan, out, executor, progress)


def _run_tasks(plan: SweepPlan, out: Path, executor: Executor, progress: bool) -> SweepResult:
    """Submit the jobs not done; submit a setting's `Combine` when its last job is done."""
    jobs = plan.jobs(out)
    todo = [job for job in jobs if not job.is_done()]
    result = SweepResult(out, plan, {}, resumed=len(jobs) - len(todo), ran=len(todo))
    left = Counter(job.setting for job in todo)
    started = time.time()
    combine_task = {
        s.id: Combine(s.id, (out / s.folder).absolute(), s.scenario, s.jobs - left[s.id], started)
        for s in plan.settings
    }
    for job in todo:
        executor.submit(job)
    for s in plan.settings:
        if left[s.id] == 0:
            executor.submit(combine_task[s.id])
    combined: list[str] = []
    with tqdm(
        total=len(jobs) + len(plan.settings),
        initial=result.resumed,
        disable=not progress,
        unit="task",
        desc="sweep",
        dynamic_ncols=True,
    ) as bar:
        for outcome in executor.outcomes():
            if outcome.error is not None:
                result.failures.append(outcome)
                bar.write(f"failed: {outcome.name}: {outcome.error}")
            elif not outcome.is_job:
                combined.append(outcome.setting)
            if outcome.is_job:
                left[outcome.setting] -= 1
                failed = any(f.setting == outcome.setting for f in result.failures)
                if left[outcome.setting] == 0 and not failed:
                    executor.submit(combine_task[outcome.setting])
            bar.update(1)
            bar.set_postfix_str(
                f"running {executor.running()}, failed {len(result.failures)}", refresh=False
            )
    for s in plan.settings:  # in the order of the settings
        if s.id in combined:
            result.summaries[s.id] = json.loads(RunFolder(out / s.folder).summary.read_text())
    return result


# ---------------------------------------------------------------------------- the table

#: The metrics of the table printed after a sweep (those the runs recorded).
TABLE_METRICS = ("ctr", "mean_rating", "intra_list_diversity", "exposure_gini")


def table_lines(result: SweepResult) -> list[str]:
    """Per setting and policy: the mean over ticks of a few metrics, mean over seeds with its
    95% interval, ``0.123 [0.110, 0.136]``."""
    rows: list[list[str]] = []
    shown: list[str] = []
    for setting in result.plan.settings:
        summary = result.summaries.get(setting.id)
        if summary is None:
            continue
        policies: dict[str, Any] = summary["policies"]
        for label, stats in policies.items():
            shown = shown or [m for m in TABLE_METRICS if m in stats]
            over = {k: v for k, v in setting.overrides.items() if k != POLICY}
            cells = [setting.id, label, describe(over) if over else "-"]
            rows.append(cells + [_cell(stats[m]["mean"]) for m in shown])
    if not rows:
        return []
    header = ["setting", "policy", "overrides", *shown]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.append("(mean over ticks; mean over seeds with its 95% interval)")
    return [line.rstrip() for line in lines]


def _cell(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def seeds_from(count: int | None, seeds: Iterable[int] | None) -> list[int] | None:
    """``--seeds N`` (0..N-1) or the ``--seed S`` list; None keeps the scenario's."""
    listed = list(seeds or [])
    if count is not None and listed:
        raise SweepError("--seeds N and --seed S cannot be combined: give one of them")
    if count is not None:
        if count < 1:
            raise SweepError(f"--seeds must be at least 1, got {count}")
        return list(range(count))
    return listed or None


__all__ = [
    "Combine",
    "InProcess",
    "Job",
    "Outcome",
    "ProcessPool",
    "RayTasks",
    "Setting",
    "SweepError",
    "SweepPlan",
    "SweepResult",
    "claim_sweep",
    "combine",
    "parse_grid",
    "parse_setting",
    "plan_from_record",
    "plan_sweep",
    "run_sweep",
    "table_lines",
]
