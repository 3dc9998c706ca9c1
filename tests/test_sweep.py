"""`recloop sweep` and `recloop resume`: settings from a grid or a list, one run folder per
setting, the same bytes whatever the executor, refusals that change nothing, failed and killed
sweeps that resume to the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, persona_answer

from simenv.cli import main
from simenv.studies import sweep
from simenv.studies.run_folder import FolderLockedError, RunFolder, folder_lock
from simenv.studies.sweep import (
    SweepError,
    combine,
    parse_grid,
    parse_setting,
    plan_from_record,
    plan_sweep,
    read_record,
    run_sweep,
    table_lines,
)

REPO = Path(__file__).resolve().parents[1]
TINY = ["ticks=2", "population.size=40", "catalog.n_items=80", "plots=[ctr]"]
#: the command line of a small sweep: 2 policies x 2 drifts x 2 seeds = 8 runs
SWEEP_ARGS = ["sweep", "filter_bubble", "--seeds", "2", "--grid", "policy=popularity,mf",
              "--grid", "population.drift=0,0.05", "--set", "ticks=3",
              "--set", "population.size=100", "--set", "catalog.n_items=200",
              "--set", "plots=[ctr]", "--no-progress"]  # fmt: skip


def _plan(**kw: Any) -> sweep.SweepPlan:
    kw.setdefault("grid", {"policy": ["popularity", "random"]})
    return plan_sweep("filter_bubble", common=TINY, seeds=[0, 1], **kw)


def _digests(root: Path, pattern: str = "settings/*/*.parquet") -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob(pattern))
    }


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------- settings


def test_grid_values_are_yaml_scalars_in_order() -> None:
    grid = parse_grid(["policy=mf,ucb", "population.drift=0,0.05,1e-2", "log_interactions=true"])
    assert grid == {
        "policy": ["mf", "ucb"],
        "population.drift": [0, 0.05, 0.01],
        "log_interactions": [True],
    }
    assert parse_setting("policy=mf, ticks=5") == {"policy": "mf", "ticks": 5}
    combos = combine({"a": [1, 2], "b": ["x", "y"]}, [{"c": 3}])
    assert combos == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"c": 3},
    ]
    assert combine({}, []) == [{}]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["ticks="], "no values"),
        (["ticks=1,,2"], "value 2: empty value"),
        (["ticks"], "expected FIELD=VALUE"),
        (["ticks=1", "ticks=2"], "gridded twice"),
        (["ticks=[1"], "not a YAML value"),
        (["seeds=1,2"], "seeds are given by --seeds"),
    ],
)
def test_bad_grids_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        parse_grid(items)


def test_every_setting_is_resolved_and_checked_before_anything_runs() -> None:
    plan = _plan(grid={"policy": ["popularity", "mf"], "population.drift": [0, 0.05]})
    assert [s.id for s in plan.settings] == ["s000", "s001", "s002", "s003"]
    s1 = plan.settings[1].scenario
    assert [p.name for p in s1.policies] == ["popularity"] and s1.population.drift == 0.05
    assert s1.seeds == [0, 1] and s1.ticks == 2
    params = plan_sweep(
        "boredom",
        common=[*TINY, "policies=[{name: explore}]"],
        grid={"policies.0.params.share": [0.1, 0.25]},
    )
    assert [s.scenario.policies[0].params for s in params.settings] == [
        {"share": 0.1},
        {"share": 0.25},
    ]
    with pytest.raises(SweepError, match=r"setting s001 \(ticks=many\): .*field 'ticks'"):
        _plan(grid={"ticks": [2, "many"]})
    with pytest.raises(SweepError, match="unknown field"):
        _plan(grid={"population.sise": [1, 2]})
    with pytest.raises(SweepError, match="unknown policy 'nosuch'"):
        _plan(grid={"policy": ["mf", "nosuch"]})
    with pytest.raises(SweepError, match=r"settings s000 and s001 .* are the same scenario"):
        _plan(grid={"population.drift": [0, 0.0]})
    with pytest.raises(SweepError, match="same scenario"):
        _plan(grid={"policy": ["mf"]}, settings=[{"policy": "mf"}])


# ---------------------------------------------------------------------------- the folder


def test_sweep_folder_layout_and_table(tmp_path: Path) -> None:
    plan = _plan(grid={"policy": ["popularity", "random"]}, settings=[{"policy": "mf", "ticks": 3}])
    out = tmp_path / "s"
    result = run_sweep(plan, out, progress=False)
    assert not result.failures and result.ran == 3 * 2 and result.resumed == 0
    record = json.loads((out / "sweep.json").read_text())
    assert record["kind"] == "recloop-sweep" and record["version"] == 1
    assert record["scenario"] == "filter_bubble" and record["set"] == TINY
    assert record["grid"] == {"policy": ["popularity", "random"]} and record["seeds"] == [0, 1]
    assert record["settings"] == [
        {"id": "s000", "overrides": {"policy": "popularity"}, "folder": "settings/s000"},
        {"id": "s001", "overrides": {"policy": "random"}, "folder": "settings/s001"},
        {"id": "s002", "overrides": {"policy": "mf", "ticks": 3}, "folder": "settings/s002"},
    ]
    assert record["recloop_version"]
    for s in plan.settings:  # each setting is an ordinary, finished run folder
        folder = RunFolder(out / s.folder)
        assert folder.scenario() == s.scenario and folder.made_with.is_file()
        assert folder.summary.is_file() and all(p.is_done() for p in folder.parts(s.scenario))
    lines = table_lines(result)
    assert lines[0].split()[:4] == ["setting", "policy", "overrides", "ctr"]
    assert lines[1].split()[:4] == ["s000", "popularity", "-", lines[1].split()[3]]
    assert "[" in lines[1]
    assert lines[3].split()[:3] == ["s002", "mf", "ticks=3"]
    # the plan read back from sweep.json is the same plan
    assert plan_from_record(read_record(out) or {}).record() == plan.record()


def test_another_sweep_or_version_is_refused_and_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s"
    run_sweep(_plan(), out, progress=False)
    before = _files(out)
    with pytest.raises(SweepError, match=r"holds another sweep \(grid\.policy: "):
        run_sweep(_plan(grid={"policy": ["popularity", "mf"]}), out, progress=False)
    with pytest.raises(SweepError, match=r"holds another sweep \(seeds: \[0, 1\] -> \[0\]"):
        run_sweep(plan_sweep("filter_bubble", common=TINY, seeds=[0], grid={"policy": [
            "popularity", "random"]}), out, progress=False)  # fmt: skip
    monkeypatch.setattr(sweep, "recloop_version", lambda: "0.0.1")
    with pytest.raises(SweepError, match=r"made by recloop \S+, this is recloop 0\.0\.1"):
        run_sweep(_plan(), out, progress=False)
    assert _files(out) == before


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    with folder_lock(out), pytest.raises(FolderLockedError, match=f"PID {os.getpid()}"):
        run_sweep(_plan(), out, progress=False)
    assert not (out / "sweep.json").exists()
    # a setting folder written by someone else (`recloop run --out s/settings/s001`) too
    with folder_lock(out / "settings" / "s001"), pytest.raises(FolderLockedError):
        run_sweep(_plan(), out, progress=False)
    assert not (out / "settings" / "s000" / "parts").exists()


def test_into_a_run_folder_or_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    run_sweep(_plan(), out, progress=False)
    with pytest.raises(ValueError, match="is a run folder"):
        run_sweep(_plan(), out / "settings" / "s000", progress=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        run_sweep(_plan(), tmp_path / "f", progress=False)


# ---------------------------------------------------------------------------- failures


def test_failed_jobs_are_reported_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = sweep.run_job

    def flaky(scenario, cfg, seed, folder, factory):  # type: ignore[no-untyped-def]
        if cfg.name == "random" and seed == 1:
            raise RuntimeError("the disk went away")
        return real(scenario, cfg, seed, folder, factory)

    monkeypatch.setattr(sweep, "run_job", flaky)
    out = tmp_path / "s"
    args = ["sweep", "filter_bubble", "--seeds", "2", "--grid", "policy=popularity,random",
            "--out", str(out), "--no-progress"]  # fmt: skip
    args += [a for s in TINY for a in ("--set", s)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "1 task(s) failed" in err and "s001 random seed 1: RuntimeError: the disk went" in err
    assert f"recloop resume {out}" in err
    assert (out / "settings/s000/summary.json").is_file()  # the finished setting is combined
    assert not (out / "settings/s001/summary.json").exists()
    monkeypatch.setattr(sweep, "run_job", real)
    assert main(["resume", str(out), "--no-progress"]) == 0
    assert "resumed:      3 finished run(s)" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    run_sweep(_plan(), fresh, progress=False)
    assert _digests(out) == _digests(fresh)


def test_resume_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["run", "filter_bubble", "--out", str(out), "--no-progress", *sets]) == 0
    whole = _digests(out, "*.parquet")
    done = sorted((out / "parts").iterdir())[-1]
    (done / "done").unlink()
    (out / "metrics.parquet").unlink()
    assert main(["resume", str(out), "--no-progress"]) == 0
    assert "resumed:" in capsys.readouterr().out
    assert _digests(out, "*.parquet") == whole


# ---------------------------------------------------------------------------- executors


def test_two_workers_give_the_same_bytes_as_one(tmp_path: Path) -> None:
    assert main([*SWEEP_ARGS, "--out", str(tmp_path / "one")]) == 0
    assert main([*SWEEP_ARGS, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one = _digests(tmp_path / "one")
    assert len(one) == 8  # metrics and interactions of 4 settings
    assert _digests(tmp_path / "two") == one
    assert _digests(tmp_path / "two", "settings/*/parts/*/*") == _digests(
        tmp_path / "one", "settings/*/parts/*/*"
    )


@pytest.mark.slow
def test_a_local_ray_runtime_gives_the_same_bytes(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    assert main([*SWEEP_ARGS, "--out", str(tmp_path / "one")]) == 0
    ray_args = ["--ray-address", "local", "--workers", "2", "--out", str(tmp_path / "ray")]
    assert main([*SWEEP_ARGS, *ray_args]) == 0
    assert _digests(tmp_path / "ray") == _digests(tmp_path / "one")


def test_a_ray_address_that_does_not_answer_is_refused_at_once(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SweepError, match=f"--ray-address 127.0.0.1:{port}: no Ray answers"):
        run_sweep(_plan(), tmp_path / "s", ray_address=f"127.0.0.1:{port}", progress=False)
    assert time.monotonic() - started < sweep.RAY_TIMEOUT + 30  # not ray's own long retries
    assert not (tmp_path / "s").exists()


def test_the_scenario_can_name_the_ray_executor(tmp_path: Path) -> None:
    """``executor: ray`` with its ``ray_address`` in the scenario is what --ray-address says on
    the command line (here an address where nothing answers: refused before anything is
    written); the fields do not change results, so they are not part of a run's identity."""
    pytest.importorskip("ray")
    import socket

    from simenv.studies.run_folder import config_text, result_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = [*TINY, "executor=ray", f"ray_address=127.0.0.1:{port}"]
    plan = plan_sweep("filter_bubble", common=common, seeds=[0])
    assert sweep.scenario_ray_address(plan) == f"127.0.0.1:{port}"
    with pytest.raises(SweepError, match=f"--ray-address 127.0.0.1:{port}: no Ray answers"):
        run_sweep(plan, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()
    local = plan_sweep("filter_bubble", common=TINY, seeds=[0]).settings[0].scenario
    ray = plan.settings[0].scenario
    assert result_config(config_text(ray)) == result_config(config_text(local))
    assert sweep.scenario_ray_address(_plan()) is None  # the default: processes
    mixed = _plan(grid={"executor": ["processes", "ray"]})
    with pytest.raises(SweepError, match="different executors"):
        sweep.scenario_ray_address(mixed)


# ---------------------------------------------------------------------------- LLM sweeps


def test_llm_sweep_shares_one_backend_per_worker_over_a_pool_of_endpoints(
    tmp_path: Path, fake_openai: Callable[..., FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker (here the sweep's own process) builds one backend for every setting with
    the same LLM configuration, and its requests go round-robin to every endpoint."""
    pytest.importorskip("httpx")
    a, b = fake_openai(persona_answer), fake_openai(persona_answer)
    shared = sweep.SharedBackends()
    monkeypatch.setattr(sweep, "_PROCESS_BACKENDS", shared)
    llm = ["decider.llm.backend=openai", "decider.llm.model=m", f"decider.llm.base_url={a.url}",
           f"decider.llm.base_urls=[{b.url}]", "decider.llm.on_llm_error=fail",
           "decider.llm.embeddings=topics", "population.activity_scale=5"]  # fmt: skip
    plan = plan_sweep(
        "filter_bubble_llm",
        common=["ticks=2", "population.size=8", "catalog.n_items=30", *llm],
        grid={"policy": ["random", "popularity"]},
        seeds=[0],
    )
    result = run_sweep(plan, tmp_path / "s", progress=False)
    assert not result.failures and len(result.summaries) == 2
    assert shared.built == 1  # one backend for both settings' jobs ...
    for s in plan.settings:  # ... under each run folder's own answer cache
        assert (tmp_path / "s" / s.folder / "llm_cache.sqlite").is_file()
    assert a.requests and b.requests  # both endpoints answered


# ---------------------------------------------------------------------------- kill -9, Ctrl-C


def _recloop(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    return subprocess.Popen(
        [sys.executable, "-m", "simenv.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: a test run started in the background (``cmd &`` in
    a non-interactive shell, ``nohup``) ignores SIGINT, its children inherit that, and Python
    then installs no KeyboardInterrupt handler, so the sweep would finish instead of
    stopping."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_done(root: Path, proc: subprocess.Popen[str], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not list(root.glob("settings/*/parts/*/done")):
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before a job finished: {proc.stderr}")
        assert time.monotonic() < deadline, "no job finished in time"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("how", "workers"), [(signal.SIGKILL, "1"), (signal.SIGINT, "2")])
def test_killed_sweep_resumes_to_the_same_bytes(tmp_path: Path, how: int, workers: str) -> None:
    args = [*SWEEP_ARGS, "--set", "ticks=6", "--set", "population.size=300"]
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole)]) == 0
    killed = tmp_path / "killed"
    proc = _recloop(*args, "--workers", workers, "--out", str(killed))
    _wait_for_done(killed, proc)
    proc.send_signal(how)
    proc.wait(timeout=60)
    assert proc.returncode == (130 if how == signal.SIGINT else -signal.SIGKILL)
    assert len(list(killed.glob("settings/*/parts/*/done"))) < 8  # stopped in the middle
    if how == signal.SIGINT:
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    assert main(["resume", str(killed), "--workers", workers, "--no-progress"]) == 0
    assert _digests(killed) == _digests(whole)
    assert _digests(killed, "settings/*/parts/*/*") == _digests(whole, "settings/*/parts/*/*")


def test_one_progress_bar_counts_tasks_running_and_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sweep(_plan(), tmp_path / "s", progress=True)
    err = capsys.readouterr().err
    frames = [f for f in err.replace("\r", "\n").splitlines() if f.strip()]
    assert frames and all(f.startswith("sweep:") for f in frames), frames  # one bar, no other
    # 4 runs and 2 combinations; the last frame has no task running and none failed
    assert "6/6" in frames[-1] and "running 0, failed 0" in frames[-1]
    assert "<" in frames[-1]  # elapsed<left: the time left
