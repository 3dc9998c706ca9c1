"""Run folders keep their data whole: one writer at a time, atomic files, no mixing of inputs,
nothing written before the checks pass, and a killed run resumes to the same bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenarios import ScenarioError, load
from simenv.studies.compare import compare_runs
from simenv.studies.run_folder import (
    FolderLockedError,
    RunFolder,
    RunFolderError,
    atomic_write,
    folder_lock,
)
from simenv.studies.runner import run_scenario

REPO = Path(__file__).resolve().parents[1]
TINY = ["ticks=2", "population.size=40", "catalog.n_items=80", "seeds=[0]"]


def _tiny(*extra: str):
    return load("filter_bubble", [*TINY, *extra])


def _recloop(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "simenv.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        **kwargs,
    )


# ---------------------------------------------------------------------------- the lock


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with folder_lock(out):
        with pytest.raises(
            FolderLockedError, match=rf"another recloop process \(PID {os.getpid()}\)"
        ):
            run_scenario(_tiny(), out, progress=False)
        assert not (out / "config.yaml").exists()
    run_scenario(_tiny(), out, progress=False)  # the lock is released with the block
    assert (out / "summary.json").is_file()


def test_two_processes_one_refused(tmp_path: Path) -> None:
    """A real second process on the same --out: one line, exit 2, the folder untouched."""
    out = tmp_path / "run"
    with folder_lock(out):
        sets = [arg for o in TINY for arg in ("--set", o)]
        proc = _recloop("run", "filter_bubble", *sets, "--out", str(out), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recloop: error:")
    assert f"PID {os.getpid()}" in lines[0] and "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_stale_lock_file_does_not_block(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999\n")  # a process that died: no flock is held
    run_scenario(_tiny(), out, progress=False)
    assert (out / "summary.json").is_file()


# ---------------------------------------------------------------------------- atomic files


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "metrics.parquet"
    target.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.parquet"]
    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"


def test_temporary_files_of_a_killed_writer_are_removed_on_resume(tmp_path: Path) -> None:
    """kill -9 in the middle of `atomic_write` leaves ``.<name>.tmp-<pid>``; the next run of
    that job (or of the combination) removes it."""
    out = tmp_path / "run"
    run_scenario(_tiny(), out, progress=False)
    part = next((out / "parts").iterdir())
    left = [part / ".metrics.parquet.tmp-999999", out / ".summary.json.tmp-999999"]
    left += [out / "plots" / ".overview.png.tmp-999999"]
    for tmp in left:
        tmp.write_text("half")
    (part / "done").unlink()
    run_scenario(_tiny(), out, progress=False)
    assert not [tmp for tmp in left if tmp.exists()]
    assert not list(out.rglob(".*.tmp-*"))


# ---------------------------------------------------------------------------- no mixing


def test_checks_run_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    bad = load("filter_bubble", [*TINY, "policies=[{name: nosuch}]"])
    with pytest.raises(ValueError, match="nosuch"):
        run_scenario(bad, out, progress=False)
    assert not (out / "config.yaml").exists()
    run_scenario(_tiny(), out, progress=False)  # the corrected command is not refused


def test_different_configuration_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_scenario(_tiny(), out, progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(RunFolderError, match="different configuration"):
        run_scenario(_tiny("ticks=3"), out, progress=False)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert before == after


def test_duplicate_seeds_are_refused() -> None:
    with pytest.raises(ScenarioError, match=r"seeds must differ \(0 given more than once\)"):
        load("filter_bubble", ["seeds=[0,1,0]"])


def test_resume_against_other_data_is_refused(
    tmp_path: Path, movielens_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "ml-100k"
    shutil.copytree(
        movielens_path, data, ignore=shutil.ignore_patterns("*.zip", "*.base", "*.test")
    )
    monkeypatch.setenv("RECLOOP_DATA", str(data))
    sc = load("popularity_bias", ["ticks=1", "policies=[{name: popularity}, {name: random}]"])
    out = tmp_path / "run"
    run_scenario(sc, out, progress=False)
    made = json.loads((out / "made_with.json").read_text())
    assert made["data"]["path"] == str(data.resolve()) and len(made["data"]["sha256"]) == 64
    assert made["recloop"] and made["llm"] is None
    # one job is lost, and the data changed before the run is resumed
    shutil.rmtree(out / "parts" / "random-seed0")
    with open(data / "u.data", "a") as f:
        f.write("1\t1\t5\t881250949\n")
    with pytest.raises(RunFolderError, match=r"other inputs \(data\.sha256: "):
        run_scenario(sc, out, progress=False)
    assert not (out / "parts" / "random-seed0").exists()
    # another folder with the same files is refused too (the path is part of the record)
    other = tmp_path / "other"
    shutil.copytree(data, other)
    monkeypatch.setenv("RECLOOP_DATA", str(other))
    with pytest.raises(RunFolderError, match=r"data\.path: "):
        run_scenario(sc, out, progress=False)


def test_compare_refuses_to_write_into_a_run_folder(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_scenario(_tiny(), a, progress=False)
    run_scenario(_tiny("seeds=[1]"), b, progress=False)
    plots = sorted((a / "plots").iterdir())
    stamps = [p.stat().st_mtime_ns for p in plots]
    with pytest.raises(ValueError, match="is a run folder"):
        compare_runs([a, b], a)
    assert [p.stat().st_mtime_ns for p in sorted((a / "plots").iterdir())] == stamps


# ---------------------------------------------------------------------------- kill -9


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {path} appeared: {proc.stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear in {seconds} s")
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_same_bytes(tmp_path: Path) -> None:
    args = ["run", "filter_bubble", "--policy", "popularity", "--policy", "mf",
            "--seed", "0", "--seed", "1", "--set", "ticks=8", "--set", "population.size=300",
            "--no-progress"]  # fmt: skip
    whole = tmp_path / "whole"
    assert _recloop(*args, "--out", str(whole)).returncode == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "simenv.cli", *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(killed / "parts" / "popularity-seed0" / "done", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()  # killed in the middle of the run
    resumed = _recloop(*args, "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed:" in resumed.stdout
    for name in ("metrics.parquet", "interactions.parquet"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    for part in sorted((whole / "parts").iterdir()):
        for name in ("metrics.parquet", "interactions.parquet"):
            assert (killed / "parts" / part.name / name).read_bytes() == (part / name).read_bytes()


def test_run_folder_knows_its_layout(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sc = _tiny("policies=[{name: popularity}, {name: random, label: r}]", "seeds=[3, 4]")
    run_scenario(sc, out, progress=False)
    folder = RunFolder(out)
    assert folder.scenario() == sc
    parts = folder.parts(sc)
    assert [(p.label, p.seed) for p in parts] == [
        ("popularity", 3),
        ("popularity", 4),
        ("r", 3),
        ("r", 4),
    ]
    assert all(p.is_done() and p.has_user_state() and p.metrics.is_file() for p in parts)
    assert not list(out.rglob(".*.tmp-*"))  # no temporary file is left behind
