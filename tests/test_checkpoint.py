"""Checkpoints: a job interrupted after a checkpoint resumes from it and ends with the same
bytes as a job never interrupted (utility users under popularity, mf and ucb; LLM personas on
the fake backend); a checkpoint of another configuration or format is refused; the done marker
removes it; short runs write none."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import policies
from scenarios import load
from scenarios.schema import Scenario
from simenv.cli import main
from simenv.studies import checkpoint as ck
from simenv.studies import runner
from simenv.studies.run_folder import RunFolder
from simenv.studies.runner import run_scenario
from simenv.world import World

REPO = Path(__file__).resolve().parents[1]
ONE = ["seeds=[0]", "policies=[{name: popularity}]", "plots=[]"]  # one job, no figures
SMALL = ["ticks=7", "population.size=120", "catalog.n_items=200", "seeds=[0, 1]",
         "checkpoint_every=2"]  # fmt: skip
LLM = ["ticks=6", "population.size=8", "population.activity_scale=5", "catalog.n_items=40",
       "decider.llm.backend=fake", "decider.llm.embeddings=topics",
       "decider.llm.reflection_every=2", "checkpoint_every=2", "seeds=[0]",
       "policies=[{name: random}, {name: mf}]", "plots=[]"]  # fmt: skip


class Interrupted(Exception):
    """Stands for the kill: raised inside a job after some ticks."""


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, label: str, seed: int, tick: int) -> None:
    """Make the job (``label``, ``seed``) stop right after ``tick`` ticks."""
    step = World.step

    def stopping(world: World) -> None:
        step(world)
        policy = world.policy.name if world.policy is not None else None
        if (world.tick, world.seed, policy) == (tick, seed, label):
            raise Interrupted

    # mesa keeps the bound `step` in the world, and pickle stores a bound method by name: the
    # resumed world must find the real `step` under it
    stopping.__name__ = "step"
    monkeypatch.setattr(World, "step", stopping)


#: Files whose bytes depend on how the run went, not on its results: timings, the backend's
#: calls and cache hits, the lock holder's PID. summary.json is compared without its "run".
VARYING = {".lock", "llm_stats.json", "summary.json"}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in VARYING
    }


def _summary(root: Path) -> dict[str, Any]:
    data = json.loads((root / "summary.json").read_text())
    data.pop("run")
    return data


def _assert_same_results(whole: Path, resumed: Path) -> None:
    a, b = _digests(whole), _digests(resumed)
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []
    assert _summary(whole) == _summary(resumed)


def _interrupted_then_resumed(
    sc: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, seed: int
) -> runner.RunResult:
    out = tmp_path / "resumed"
    with monkeypatch.context() as m:
        _interrupt_at(m, label, seed, tick=5)
        with pytest.raises(Interrupted):
            run_scenario(sc, out, progress=False)
    part = RunFolder(out).part(next(c for c in sc.policies if c.name == label), seed)
    assert not part.is_done()
    assert ck.read_header(part.checkpoint).tick == 4  # the last multiple of checkpoint_every
    return run_scenario(sc, out, progress=True)


@pytest.mark.parametrize("policy", ["popularity", "mf", "ucb"])
def test_resumed_job_gives_the_bytes_of_an_uninterrupted_one(
    policy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    figures = [] if policy == "popularity" else ["plots=[]"]  # the figures' bytes once
    sc = load(
        "filter_bubble", [*SMALL, *figures, f"policies=[{{name: random}}, {{name: {policy}}}]"]
    )
    run_scenario(sc, tmp_path / "whole", progress=False)
    result = _interrupted_then_resumed(sc, tmp_path, monkeypatch, policy, seed=1)
    assert [(r.label, r.seed, r.tick) for r in result.from_checkpoints] == [(policy, 1, 4)]
    shown = capsys.readouterr()
    assert f"resuming {policy} seed 1 from its checkpoint at tick 4" in shown.out + shown.err
    assert result.resumed_jobs == 3  # random seeds 0, 1 and the policy's seed 0 were done
    _assert_same_results(tmp_path / "whole", tmp_path / "resumed")
    assert not list((tmp_path / "resumed").rglob("checkpoint.pkl"))  # done jobs keep none


def test_llm_personas_resume_with_their_priors_and_reflections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = load("filter_bubble_llm", LLM)
    run_scenario(sc, tmp_path / "whole", progress=False)
    result = _interrupted_then_resumed(sc, tmp_path, monkeypatch, "mf", seed=0)
    assert [r.tick for r in result.from_checkpoints] == [4]
    _assert_same_results(tmp_path / "whole", tmp_path / "resumed")
    stats = json.loads((tmp_path / "resumed" / "parts" / "mf-seed0" / "llm_stats.json").read_text())
    whole = json.loads((tmp_path / "whole" / "parts" / "mf-seed0" / "llm_stats.json").read_text())
    assert (stats["decisions"], stats["fallbacks"]) == (whole["decisions"], whole["fallbacks"])


#: Every built-in policy but sb3 (a saved model): (name, params); mf retrains every 2 ticks
#: so that the checkpoint falls between feedback kept and feedback learnt.
EVERY_POLICY = [("content", {}), ("epsilon_greedy", {}), ("explore", {"share": 0.3}),
                ("item_knn", {}), ("linucb", {}), ("mf", {"retrain_every": 2}), ("mmr", {}),
                ("oracle", {}), ("popularity", {}), ("random", {}), ("social", {}),
                ("softmax", {}), ("thompson", {}), ("ucb", {})]  # fmt: skip


def _same_world(a: World, b: World) -> None:
    from simenv.studies.interview import user_arrays

    assert a.metrics_frame().equals(b.metrics_frame())
    assert a.interactions_frame().equals(b.interactions_frame())
    ua, ub = user_arrays(a.users), user_arrays(b.users)
    assert sorted(ua) == sorted(ub)
    for name in ua:
        assert ua[name].tobytes() == ub[name].tobytes(), name
    assert _agents(a) == _agents(b)  # mesa's agents, their unique ids and order
    assert len(a.item_agents) == a.items.size and len(a.user_agents) == a.n_users


def _agents(world: World) -> list[tuple[str, int, int]]:
    return [(type(x).__name__, x.view_id, x.unique_id) for x in world.agents]


@pytest.mark.parametrize(("name", "params"), EVERY_POLICY, ids=[p for p, _ in EVERY_POLICY])
def test_every_policy_continues_from_a_checkpoint_as_if_never_stopped(
    name: str, params: dict[str, Any], tmp_path: Path
) -> None:
    sc = load("cold_start", ["population.size=60", "catalog.n_items=120", "ticks=6"])
    assert sc.creators.enabled  # creators publish and adapt across the checkpoint

    def world() -> World:
        return World(sc, policies.make(name, **params), seed=3)

    whole = world()
    whole.run(6)
    stopped = world()
    stopped.run(3)
    ck.save_checkpoint(tmp_path / "c.pkl", stopped, "k", name)
    del stopped
    resumed = ck.load_checkpoint(tmp_path / "c.pkl", "k", {})
    resumed.run(3)
    _same_world(whole, resumed)


@pytest.mark.slow  # two MovieLens worlds with implicit ALS
def test_movielens_personas_with_latent_tastes_continue_from_a_checkpoint(
    tmp_path: Path,
) -> None:
    sc = load("popularity_bias", ["population.size=80", "ticks=4",
                                  "population.persona_model=mf"])  # fmt: skip
    whole = World(sc, policies.make("mf"), seed=0)
    whole.run(4)
    stopped = World(sc, policies.make("mf"), seed=0)
    stopped.run(2)
    ck.save_checkpoint(tmp_path / "c.pkl", stopped, "k", "mf")
    resumed = ck.load_checkpoint(tmp_path / "c.pkl", "k", {})
    resumed.run(2)
    _same_world(whole, resumed)


def test_the_llm_backend_is_detached_and_the_resumed_jobs_attached(tmp_path: Path) -> None:
    from simenv.studies.factory import decider_factory

    sc = load("filter_bubble_llm", LLM)
    factory = decider_factory(tmp_path)
    world = World(sc, policies.make("mf"), seed=0, decider=factory(sc))
    world.run(2)
    path = tmp_path / "checkpoint.pkl"
    ck.save_checkpoint(path, world, "k", "mf")
    fresh = factory(sc)
    loaded = ck.load_checkpoint(path, "k", fresh.attachments())
    assert loaded.decider.attachments() == fresh.attachments()  # the same backend object
    assert loaded.decider is not fresh and loaded.tick == 2
    with pytest.raises(ck.CheckpointError, match="needs the decider's 'backend'"):
        ck.load_checkpoint(path, "k", {})


def test_checkpoint_of_another_configuration_is_refused(tmp_path: Path, capsys: Any) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["run", "filter_bubble", "--policy", "popularity", "--seed", "0", "--no-progress",
            "--set", "population.size=60", "--set", "catalog.n_items=100", "--set", "ticks=3",
            "--set", "plots=[]"]  # fmt: skip
    assert main([*args, "--out", str(a)]) == 0
    world = World(load("filter_bubble", ["population.size=60", "catalog.n_items=100"]),
                  policies.make("popularity"), seed=0)  # fmt: skip
    world.run(2)
    other = ck.checkpoint_key(world.scenario, {}, "popularity", 0)
    part = b / "parts" / "popularity-seed0"
    ck.save_checkpoint(part / "checkpoint.pkl", world, other, "popularity")
    capsys.readouterr()
    assert main([*args, "--set", "population.drift=0.2", "--out", str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop: error: ") and err.count("\n") == 1
    assert "written by another configuration" in err and "delete it" in err
    assert (part / "checkpoint.pkl").is_file() and not (part / "done").exists()


def test_checkpoint_of_another_format_version_is_refused(tmp_path: Path) -> None:
    world = World(load("filter_bubble", ["population.size=30", "catalog.n_items=60"]),
                  policies.make("random"), seed=0)  # fmt: skip
    path = tmp_path / "checkpoint.pkl"
    ck.save_checkpoint(path, world, "k", "random")
    head = ck.read_header(path)
    assert (head.version, head.tick, head.key, head.seed) == (ck.VERSION, 0, "k", 0)
    data = path.read_bytes().replace(b'"version": 1', b'"version": 9', 1)
    path.write_bytes(data)
    with pytest.raises(ck.CheckpointError, match="format version 9"):
        ck.load_checkpoint(path, "k", {})
    path.write_bytes(b"something else\n")
    with pytest.raises(ck.CheckpointError, match="not a recloop checkpoint"):
        ck.load_checkpoint(path, "k", {})


def test_the_key_ties_configuration_provenance_policy_and_seed() -> None:
    sc = load("filter_bubble")
    key = ck.checkpoint_key(sc, {"recloop": "1"}, "mf", 0)
    assert key == ck.checkpoint_key(sc, {"recloop": "1"}, "mf", 0)
    assert key == ck.checkpoint_key(sc.model_copy(update={"checkpoint_every": 7}),
                                    {"recloop": "1"}, "mf", 0)  # fmt: skip
    others = [
        ck.checkpoint_key(sc.model_copy(update={"ticks": 31}), {"recloop": "1"}, "mf", 0),
        ck.checkpoint_key(sc, {"recloop": "2"}, "mf", 0),
        ck.checkpoint_key(sc, {"recloop": "1"}, "ucb", 0),
        ck.checkpoint_key(sc, {"recloop": "1"}, "mf", 1),
    ]
    assert key not in others and len(set(others)) == 4


def test_short_runs_write_no_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[int] = []
    save = runner.save_checkpoint

    def counting(path: Path, world: World, key: str, label: str) -> int:
        saved.append(world.tick)
        return save(path, world, key, label)

    monkeypatch.setattr(runner, "save_checkpoint", counting)
    sc = load("filter_bubble", ["population.size=40", "catalog.n_items=80", "ticks=6", *ONE])
    assert sc.checkpoint_every == 50  # the default: runs of 50 ticks or fewer never pay
    run_scenario(sc, tmp_path / "default", progress=False)
    run_scenario(sc.model_copy(update={"checkpoint_every": 0}), tmp_path / "off", progress=False)
    assert saved == []
    run_scenario(sc.model_copy(update={"checkpoint_every": 3}), tmp_path / "on", progress=False)
    assert saved == [3]  # never at the last tick, where the job is done anyway


def test_a_run_folder_resumes_with_another_checkpoint_interval(tmp_path: Path) -> None:
    sc = load("filter_bubble", ["population.size=40", "catalog.n_items=80", "ticks=2", *ONE])
    run_scenario(sc, tmp_path / "run", progress=False)
    again = run_scenario(
        sc.model_copy(update={"checkpoint_every": 1}), tmp_path / "run", progress=False
    )
    assert again.resumed_jobs == 1
    assert "checkpoint_every: 1" in (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(ValueError, match="different configuration"):
        run_scenario(sc.model_copy(update={"ticks": 3}), tmp_path / "run", progress=False)


def test_a_checkpoint_killed_while_written_is_removed(tmp_path: Path) -> None:
    sc = load("filter_bubble", ["population.size=40", "catalog.n_items=80", "ticks=2", *ONE])
    part = RunFolder(tmp_path / "run").part(sc.policies[0], 0)
    part.path.mkdir(parents=True)
    partial = part.path / ".checkpoint.pkl.tmp-99999"  # what atomic_write leaves when killed
    partial.write_bytes(b"half a world")
    run_scenario(sc, tmp_path / "run", progress=False)
    assert part.is_done() and not partial.exists()


def test_a_done_job_ignores_and_removes_its_checkpoint(tmp_path: Path) -> None:
    sc = load("filter_bubble", ["population.size=40", "catalog.n_items=80", "ticks=2", *ONE])
    run_scenario(sc, tmp_path / "run", progress=False)
    part = RunFolder(tmp_path / "run").part(sc.policies[0], 0)
    part.checkpoint.write_bytes(b"killed between the done marker and the removal")
    assert run_scenario(sc, tmp_path / "run", progress=False).resumed_jobs == 1
    assert not part.checkpoint.exists()


def test_a_world_that_cannot_be_pickled_runs_without_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    world = World(load("filter_bubble", ["population.size=30", "catalog.n_items=60"]),
                  policies.make("random"), seed=0)  # fmt: skip
    world.policy.unpicklable = lambda: None  # type: ignore[union-attr]
    with pytest.raises(ck.CheckpointError, match="cannot be checkpointed"):
        ck.save_checkpoint(tmp_path / "checkpoint.pkl", world, "k", "random")
    assert not list(tmp_path.iterdir())  # no temporary file is left behind

    def refuse(path: Path, world: World, key: str, label: str) -> int:
        raise ck.CheckpointError("the world cannot be checkpointed: a lambda")

    monkeypatch.setattr(runner, "save_checkpoint", refuse)
    sc = load("filter_bubble", ["population.size=40", "catalog.n_items=80", "ticks=5", *ONE,
                                "checkpoint_every=1"])  # fmt: skip
    result = run_scenario(sc, tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert err.count("runs without checkpoints") == 1 and "popularity seed 0" in err
    assert len(result.metrics) == 5


# ---------------------------------------------------------------------------- kill -9


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_resume_gives_the_same_bytes(tmp_path: Path) -> None:
    args = ["run", "filter_bubble", "--policy", "ucb", "--seed", "0", "--no-progress",
            "--set", "ticks=30", "--set", "population.size=3000",
            "--checkpoint-every", "3"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    cli = [sys.executable, "-m", "simenv.cli"]
    whole = tmp_path / "whole"
    assert subprocess.run([*cli, *args, "--out", str(whole)], env=env, check=False).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cli, *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    checkpoint = killed / "parts" / "ucb-seed0" / "checkpoint.pkl"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert proc.poll() is None, proc.stderr
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "parts" / "ucb-seed0" / "done").exists()  # killed in the middle
    tick = ck.read_header(checkpoint).tick
    assert 3 <= tick < 30
    resumed = subprocess.run([*cli, *args, "--out", str(killed)], env=env, check=False,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed:    ucb seed 0 from its checkpoint at tick {tick}" in resumed.stdout
    _assert_same_results(whole, killed)
