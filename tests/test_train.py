"""Training machinery: a known-answer env that PPO must solve, and errors before training."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from simenv.cli import main
from simenv.envs.known_answer import KnownAnswerEnv
from simenv.studies.train import (
    EVAL_METRICS,
    TrainConfig,
    TrainingError,
    check,
    load_model,
    plan_steps,
    train,
)

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
    result = train(config)
    assert result.timesteps == 6144 and result.plan.algo_kwargs["n_steps"] == 256
    model = load_model(result.model, KA)
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
                              algo_kwargs={"n_steps": 64}, eval_freq=10_000)).model  # fmt: skip
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
    return train(config).model


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


def test_trained_model_policy_continues_from_a_checkpoint(exploration_model, tmp_path):
    import policies
    from scenarios import load
    from simenv.studies import checkpoint as ck
    from simenv.world import World

    sc = load("filter_bubble", [*SMALL, "ticks=6"])

    def world() -> World:
        return World(sc, policies.make("sb3", path=str(exploration_model)), seed=0)

    whole, stopped = world(), world()
    whole.run(6)
    stopped.run(3)
    ck.save_checkpoint(tmp_path / "c.pkl", stopped, "k", "sb3")  # the torch model pickles
    resumed = ck.load_checkpoint(tmp_path / "c.pkl", "k", {})
    resumed.run(3)
    assert whole.metrics_frame().equals(resumed.metrics_frame())
    assert whole.interactions_frame().equals(resumed.interactions_frame())


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
    result = train(
        TrainConfig(**{**config.__dict__, "algo_kwargs": {"n_steps": 16, "batch_size": 32}})
    )
    assert result.model.is_file() and result.timesteps == 64


def test_boredom_exploration_study_end_to_end(tmp_path):
    import subprocess
    import sys

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


# --- --steps and the frequencies count environment steps -------------------------------------


@pytest.mark.parametrize(
    ("algo", "steps", "n_envs", "kwargs", "trained", "n_steps"),
    [
        ("ppo", 20_000, 16, {}, 20_000, 1250),  # the run: 32,768 steps before
        ("ppo", 100_000, 1, {}, 100_000, 2000),
        ("ppo", 512, 16, {}, 512, 32),  # the whole budget in one rollout
        ("a2c", 20_000, 16, {}, 20_000, 5),
        ("ppo", 20_000, 16, {"n_steps": 2048}, 32_768, 2048),  # the user's rollout wins
        ("ppo", 16 * 5003, 16, {}, 16 * 2048 * 3, 2048),  # 5003 is prime: no fitting rollout
        ("ppo", 1001, 16, {}, 1008, 63),  # not a multiple of the envs
        ("dqn", 1003, 1, {}, 1003, None),
        ("dqn", 1003, 4, {}, 1004, None),
    ],
)
def test_plan_steps(algo, steps, n_envs, kwargs, trained, n_steps):
    plan = plan_steps(algo, steps, n_envs, kwargs)
    assert plan.steps == trained
    assert plan.algo_kwargs.get("n_steps") == n_steps
    if algo == "ppo":
        rollout = plan.algo_kwargs["n_steps"] * n_envs
        assert rollout % plan.algo_kwargs["batch_size"] == 0 or "batch_size" in kwargs
    described = plan.describe(steps)
    assert ("rounded up because" in described) == (trained != steps)
    assert (f"(not {steps})" in described) == (trained != steps)


def _scalars(tb: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in tb.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.mark.parametrize("n_envs", [1, 16])
def test_steps_and_frequencies_count_environment_steps(n_envs, tmp_path, capsys):
    out = tmp_path / "t"
    env_kwargs = json.dumps({"scenario": "filter_bubble", "overrides": SMALL[:4]})
    args = ["train", "ppo", "--env", "recloop/Exploration-v0", "--steps", "512",
            "--n-envs", str(n_envs), "--eval-freq", "128", "--eval-episodes", "2",
            "--checkpoint-freq", "256", "--algo-kwargs", '{"n_epochs": 1}',
            "--env-kwargs", env_kwargs, "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "trained:     512 environment steps;" in capsys.readouterr().out
    meta = json.loads((out / "train.json").read_text())
    assert meta["timesteps"] == 512
    assert meta["algo_kwargs"] == {"n_epochs": 1, "n_steps": 512 // n_envs, "batch_size": 64}
    with (out / "eval.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == ["timesteps", "mean_return", *EVAL_METRICS]
    assert all(None not in row for row in rows)  # no row longer than the header
    assert [int(row["timesteps"]) for row in rows] == [128, 256, 384, 512]
    saved = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert saved == ["model_256_steps.zip", "model_512_steps.zip"]
    tags = _scalars(out / "tb")
    assert {"train/loss", "train/entropy_loss", "rollout/ep_rew_mean", "eval/mean_reward",
            "eval_ecosystem/mean_return"} <= tags  # fmt: skip


def test_dqn_stops_at_the_steps(tmp_path):
    config = TrainConfig(algo="dqn", env_id="recloop/Exploration-v0", steps=103, out=tmp_path,
                         env_kwargs={"overrides": SMALL[:4]}, eval_freq=0, checkpoint_freq=0,
                         algo_kwargs={"learning_starts": 10, "buffer_size": 1000})  # fmt: skip
    result = train(config)
    assert result.timesteps == 103  # SB3 alone collects train_freq=4 steps at a time: 104
    assert not (tmp_path / "eval.csv").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("algo_kwargs", "message"),
    [
        ('{"lr": 0.001}', "ppo has no argument 'lr'; it takes: learning_rate, n_steps"),
        ('{"n_step": 64}', "(did you mean 'n_steps'?)"),
        ('{"seed": 3}', "'seed' is set by recloop train (--seed)"),
        ('{"n_epochs": "many"}', "ppo's 'n_epochs' must be int, got 'many'"),
        ('{"target_kl": "x"}', "ppo's 'target_kl' must be float | None, got 'x'"),
        ('{"batch_size": 1}', "ppo rejected --algo-kwargs"),  # SB3's own check
    ],
)
def test_bad_algo_kwargs_are_one_line(algo_kwargs, message, tmp_path, capsys):
    args = ["train", "ppo", "--env", KA, "--steps", "64", "--algo-kwargs", algo_kwargs,
            "--out", str(tmp_path / "x"), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop: error: --algo-kwargs") or "rejected" in err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x" / "model.zip").exists()


def test_bad_frequencies_are_refused(tmp_path):
    cases = [("eval_freq", -1, "--eval-freq must be 0 (off) or positive"),
             ("eval_episodes", 0, "--eval-episodes must be at least 1")]  # fmt: skip
    for field_, value, message in cases:
        cfg = TrainConfig(algo="ppo", env_id=KA, steps=10, out=tmp_path, **{field_: value})
        with pytest.raises(TrainingError, match=re.escape(message)):
            check(cfg)


# --- a model trained with plain stable-baselines3 as --policy sb3:PATH -----------------------


def _plain_sb3_model(path: Path, mode: str, algo: str = "ppo", **kwargs) -> Path:
    """A model trained on BatchedSessionVecEnv with VecMonitor, saved without train.json."""
    from stable_baselines3 import A2C, DQN, PPO, SAC
    from stable_baselines3.common.vec_env import VecMonitor

    from simenv.envs.vector import BatchedSessionVecEnv

    venv = VecMonitor(BatchedSessionVecEnv("filter_bubble", 4, SMALL[:4], mode=mode, seed=0,
                                           **kwargs))  # fmt: skip
    tiny: dict[str, dict] = {
        "ppo": {"n_steps": 16, "batch_size": 32, "n_epochs": 1},
        "a2c": {},
        "dqn": {"learning_starts": 16, "buffer_size": 500},
        "sac": {"learning_starts": 16, "buffer_size": 500},
    }
    classes = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC}
    model = classes[algo]("MultiInputPolicy", venv, seed=0, **tiny[algo])
    model.learn(64)
    model.save(path)
    venv.close()
    return path


def _run_sb3(tmp_path: Path, model: Path, *extra: str, out: str = "run") -> int:
    args = ["run", "filter_bubble", "--out", str(tmp_path / out), "--no-progress",
            "--policy", f"sb3:{model}", *[f"--set={s}" for s in SMALL], *extra]  # fmt: skip
    return main(args)


@pytest.mark.parametrize(
    ("algo", "mode", "kwargs"),
    [
        ("ppo", "session", {}),
        ("ppo", "exploration", {}),
        ("a2c", "exploration", {}),
        ("dqn", "exploration", {}),
        ("sac", "exploration", {"continuous": True}),
    ],
)
def test_plain_sb3_model_is_a_policy(algo, mode, kwargs, tmp_path, capsys):
    model = _plain_sb3_model(tmp_path / "model.zip", mode, algo, **kwargs)
    assert not (tmp_path / "train.json").exists()
    assert _run_sb3(tmp_path, model) == 0, capsys.readouterr().err
    import pandas as pd

    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert metrics["ctr"].notna().all() and len(metrics) == 3


def test_plain_sb3_model_takes_its_env_from_the_command_line(tmp_path, capsys):
    levels = [0.0, 0.5, 1.0]
    model = _plain_sb3_model(tmp_path / "m.zip", "exploration", explore_levels=levels)
    assert _run_sb3(tmp_path, model) == 2  # Discrete(3) is not the default menu of 5 levels
    err = capsys.readouterr().err
    assert "acts in Discrete(3)" in err and "explore_levels" in err and err.count("\n") == 1
    kwargs = json.dumps({"explore_levels": levels})
    given = ["--env", "recloop/Exploration-v0", "--env-kwargs", kwargs]
    assert _run_sb3(tmp_path, model, *given, out="run2") == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--env", "recloop/Session-v0"], "acts in Discrete(5), but recloop/Session-v0"),
        (["--env", "CartPole-v1"], "not a recloop recommender environment"),
        (["--env-kwargs", '{"retreiver": "mf"}'], "(did you mean 'retriever'?)"),
    ],
)
def test_plain_sb3_model_mismatch_is_one_line(extra, message, tmp_path, capsys):
    model = _plain_sb3_model(tmp_path / "m.zip", "exploration")
    assert _run_sb3(tmp_path, model, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("recloop: error:")


def test_env_options_need_an_sb3_policy(tmp_path, capsys):
    args = ["run", "filter_bubble", "--out", str(tmp_path / "r"), "--policy", "popularity",
            "--env", "recloop/Session-v0"]  # fmt: skip
    assert main(args) == 2
    assert "--policy sb3:PATH" in capsys.readouterr().err


def test_checkpoints_are_policies_too(tmp_path, capsys):
    out = tmp_path / "t"
    config = TrainConfig(algo="a2c", env_id="recloop/Exploration-v0", steps=64, out=out,
                         env_kwargs={"overrides": SMALL[:4], "explore_levels": [0.0, 1.0]},
                         eval_freq=0, checkpoint_freq=32)  # fmt: skip
    train(config)
    checkpoint = out / "checkpoints" / "model_32_steps.zip"
    assert _run_sb3(tmp_path, checkpoint) == 0  # train.json beside checkpoints/ gives the menu


# --- the CleanRL-style example -----------------------------------------------------------------


def test_cleanrl_ppo_example_trains_on_the_batched_env(tmp_path):
    import importlib.util
    import sys

    path = Path(__file__).parents[1] / "examples" / "cleanrl_ppo.py"
    spec = importlib.util.spec_from_file_location("cleanrl_ppo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cleanrl_ppo"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    small = [arg for s in SMALL[:4] for arg in ("--set", s)]
    for env_id in ("recloop/Exploration-v0", "recloop/Session-v0"):
        result = module.main(["--env-id", env_id, "--total-timesteps", "128", "--num-envs", "4",
                              "--num-steps", "16", "--update-epochs", "1", "--out",
                              str(tmp_path), *small])  # fmt: skip
        assert result["global_step"] == 128 and result["episodes"] > 0
        assert (result["run_dir"] / "agent.pt").is_file()
        assert any(result["run_dir"].glob("events.out.tfevents.*"))
