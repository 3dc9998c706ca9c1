"""Training machinery: a known-answer env that PPO must solve, and errors before training."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from simenv.cli import main
from simenv.envs.known_answer import KnownAnswerEnv
from simenv.studies.train import TrainConfig, TrainingError, check, load_model, train

KA = "recloop-test/KnownAnswer-v0"


def test_known_answer_env_rewards_only_the_fixed_slate():
    env = KnownAnswerEnv(n_candidates=6, k=2, answer_seed=3)
    env.reset(seed=0)
    best = env.best
    assert env.step(best)[1] == 1.0
    others = np.setdiff1d(np.arange(6), best)[:2]
    assert env.step(others)[1] == 0.0
    assert env.step(np.array([best[0], best[0]]))[1] == 0.5  # a duplicate counts once


def test_ppo_reaches_the_known_optimum(tmp_path):
    out = tmp_path / "ka"
    config = TrainConfig(algo="ppo", env_id=KA, steps=6144, out=out, seed=0,
                         algo_kwargs={"n_steps": 256, "batch_size": 64, "learning_rate": 3e-3},
                         eval_freq=2048, eval_episodes=2, checkpoint_freq=4096)  # fmt: skip
    model_path = train(config)
    model = load_model(model_path, KA)
    env = gym.make(KA)
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert sorted(set(action.tolist())) == sorted(env.unwrapped.best.tolist())
    meta = json.loads((out / "train.json").read_text())
    assert meta["algo"] == "ppo" and meta["env_id"] == KA and meta["seed"] == 0
    assert (out / "eval.csv").read_text().count("\n") >= 2
    assert any((out / "checkpoints").iterdir())
    assert any((out / "tb").iterdir())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(algo="sac", env_id=KA), "unknown algorithm 'sac'"),
        (dict(algo="ppo", env_id="recloop/Nope-v0"), "unknown env 'recloop/Nope-v0'"),
        (dict(algo="dqn", env_id=KA), "dqn needs a Discrete action space"),
        (dict(algo="ppo", env_id=KA, steps=0), "--steps must be positive"),
    ],
)
def test_bad_requests_fail_before_training(config, message, tmp_path):
    cfg = TrainConfig(**{"steps": 10, "out": tmp_path / "x", **config})
    with pytest.raises(TrainingError, match=message):
        check(cfg)


def test_model_for_another_env_is_refused(tmp_path):
    model = train(TrainConfig(algo="ppo", env_id=KA, steps=64, out=tmp_path / "a",
                              algo_kwargs={"n_steps": 64}, eval_freq=10_000))  # fmt: skip
    gym.register("recloop-test/KnownAnswer5-v0", entry_point=KnownAnswerEnv,
                 kwargs={"n_candidates": 5})  # fmt: skip
    with pytest.raises(TrainingError, match="trained for another env"):
        load_model(model, "recloop-test/KnownAnswer5-v0")


def test_cli_unknown_algorithm_is_one_line(capsys):
    assert main(["train", "sac", "--env", KA, "--steps", "10"]) == 2
    assert "unknown algorithm 'sac'" in capsys.readouterr().err


SMALL = ["population.size=100", "catalog.n_items=150", "catalog.n_creators=10", "ticks=3",
         "seeds=[0]"]  # fmt: skip


@pytest.fixture(scope="module")
def exploration_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("expl")
    config = TrainConfig(algo="ppo", env_id="recloop/Exploration-v0", steps=128, out=out,
                         env_kwargs={"scenario": "filter_bubble", "overrides": SMALL},
                         algo_kwargs={"n_steps": 64, "batch_size": 32, "n_epochs": 1},
                         eval_freq=10_000)  # fmt: skip
    return train(config)


def test_trained_model_is_a_policy_in_any_run(exploration_model, tmp_path, capsys):
    meta = json.loads(exploration_model.with_name("train.json").read_text())
    assert meta["env_attrs"]["explore_levels"] == [0.0, 0.1, 0.25, 0.5, 1.0]
    args = ["run", "filter_bubble", "--out", str(tmp_path / "run"), "--no-progress",
            "--policy", f"sb3:{exploration_model}", "--policy", "popularity",
            *[f"--set={s}" for s in SMALL]]  # fmt: skip
    assert main(args) == 0
    import pandas as pd

    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert metrics["policy"].nunique() == 2
    assert metrics.loc[metrics["policy"].str.startswith("sb3:"), "ctr"].notna().all()


def test_model_for_another_scenario_shape_is_refused_before_running(
    exploration_model, tmp_path, capsys
):
    args = ["run", "filter_bubble", "--out", str(tmp_path / "run"), "--no-progress",
            "--policy", f"sb3:{exploration_model}", *[f"--set={s}" for s in SMALL],
            "--set", "catalog.n_topics=7"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "policy 'sb3'" in err and "this scenario gives" in err
    assert not (tmp_path / "run" / "metrics.parquet").exists()


def test_sb3_policy_needs_a_model_file(tmp_path, capsys):
    args = ["run", "filter_bubble", "--out", str(tmp_path / "r"), "--policy",
            f"sb3:{tmp_path / 'none.zip'}"]  # fmt: skip
    assert main(args) == 2
    assert "model file not found" in capsys.readouterr().err


def test_batched_training_on_one_world(tmp_path):
    from simenv.envs.vector import BatchedSessionVecEnv
    from simenv.studies.train import _training_env

    kwargs = {"scenario": "filter_bubble", "overrides": SMALL}
    config = TrainConfig(algo="ppo", env_id="recloop/Exploration-v0", steps=64, out=tmp_path,
                         n_envs=4, env_kwargs=kwargs)  # fmt: skip
    venv = _training_env(config, {"render_mode": None, **config.env_kwargs})
    assert isinstance(venv.venv, BatchedSessionVecEnv) and venv.num_envs == 4
    model = train(
        TrainConfig(**{**config.__dict__, "algo_kwargs": {"n_steps": 16, "batch_size": 32}})
    )
    assert model.is_file()


def test_boredom_exploration_study_end_to_end(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "examples" / "boredom_exploration.py"
    out = tmp_path / "study"
    cmd = [sys.executable, str(script), "--steps", "1024", "--n-envs", "8", "--ticks", "4",
           "--eval-seeds", "100", "101", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads((out / "result.json").read_text())
    assert {"session_length", "return_rate", "beats_best_fixed_on"} <= set(result)
    assert result["session_length"]["paired_difference"]["n"] == 2
    policies_seen = {row["index"] for row in result["table"]}
    assert "ppo controller" in policies_seen and "fixed 0.25" in policies_seen
