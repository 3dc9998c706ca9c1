"""Train an RL agent with stable-baselines3 on any registered recloop environment.

    recloop train ppo --env recloop/KnownAnswer-v0 --steps 20000 --out runs/ka

Writes ``model.zip``, ``train.json`` (algorithm, env id and spec, hyper-parameters, seed, steps,
seconds), ``checkpoints/``, TensorBoard logs in ``tb/``, and ``eval.csv`` (mean evaluation
return per evaluation, plus the ecosystem metrics of the evaluation world when the env has
one). Every check that can fail (algorithm, env id, action space, output folder) runs before
training starts. torch and SB3 are imported by this module only (`import simenv` stays light).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

from simenv.envs.sb3_policy import load_algorithm
from simenv.studies.run_folder import check_output_folder

ALGORITHMS = ("ppo", "a2c", "dqn")
#: Arguments of the batched VecEnv (n_envs > 1) that single envs do not take.
VEC_ONLY_KWARGS = ("renew_after_ticks",)


class TrainingError(ValueError):
    """A training request that cannot work, found before any training starts."""


@dataclass
class TrainConfig:
    """What to train and how; the fields with a ``help`` are the options of `recloop train`
    (`simenv.cli.add_config_options` reads the metadata keys it documents)."""

    algo: str = field(
        metadata={"help": f"{', '.join(ALGORITHMS[:-1])} or {ALGORITHMS[-1]}", "positional": True}
    )
    env_id: str = field(
        metadata={"flag": "--env", "help": "registered env id, e.g. recloop/Exploration-v0"}
    )
    steps: int = field(metadata={"help": "training timesteps", "cli_default": 100_000})
    out: Path = field(
        metadata={"help": "output folder (default: runs/train-<time>)", "cli_default": None}
    )
    seed: int = field(default=0, metadata={"help": "seed of the model and the environments"})
    env_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": 'extra env arguments, e.g. \'{"retriever": "content", "max_steps": 8}\'',
            "metavar": "JSON",
        },
    )
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    n_envs: int = field(
        default=1,
        metadata={
            "help": "concurrent sessions; recloop envs run them on one world, one decider call "
            "a step"
        },
    )
    eval_freq: int = field(default=2000, metadata={"help": "steps between evaluations"})
    eval_episodes: int = 5
    checkpoint_freq: int = 10000


def check(config: TrainConfig) -> gym.Env:
    """Validate the request; returns one instance of the env (used to read its spaces)."""
    if config.algo not in ALGORITHMS:
        raise TrainingError(
            f"unknown algorithm '{config.algo}'; choose one of: {', '.join(ALGORITHMS)}"
        )
    if config.steps <= 0:
        raise TrainingError(f"--steps must be positive, got {config.steps}")
    if config.n_envs < 1:
        raise TrainingError(f"--n-envs must be at least 1, got {config.n_envs}")
    check_output_folder(Path(config.out), into_run=False)
    import simenv  # noqa: F401  (registers the recloop ids)

    if config.env_id not in gym.registry:
        known = sorted(k for k in gym.registry if k.startswith("recloop/"))
        raise TrainingError(f"unknown env '{config.env_id}'; registered: {', '.join(known)}")
    single = {k: v for k, v in config.env_kwargs.items() if k not in VEC_ONLY_KWARGS}
    try:
        env = gym.make(config.env_id, **single)
    except TypeError as exc:
        raise TrainingError(f"env '{config.env_id}' rejected its arguments: {exc}") from exc
    if config.algo == "dqn" and not isinstance(env.action_space, spaces.Discrete):
        env.close()
        raise TrainingError(
            f"dqn needs a Discrete action space; '{config.env_id}' has {env.action_space}"
        )
    return env


def train(config: TrainConfig, *, progress: bool = False) -> Path:
    """Train and save; returns the path of ``model.zip``."""
    probe = check(config)
    policy_name = (
        "MultiInputPolicy" if isinstance(probe.observation_space, spaces.Dict) else ("MlpPolicy")
    )
    env_attrs = _env_attrs(probe)
    probe.close()
    from stable_baselines3 import A2C, DQN, PPO
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    algo_cls = {"ppo": PPO, "a2c": A2C, "dqn": DQN}[config.algo]
    # render_mode=None: SB3 asks for "rgb_array" by default, which recloop envs do not render
    env_kwargs = {"render_mode": None, **config.env_kwargs}
    venv = _training_env(config, env_kwargs)
    eval_kwargs = {k: v for k, v in env_kwargs.items() if k not in VEC_ONLY_KWARGS}
    eval_env: VecEnv
    if isinstance(venv, VecMonitor):  # same wrapper type as training, as EvalCallback expects
        eval_env = VecMonitor(DummyVecEnv([lambda: gym.make(config.env_id, **eval_kwargs)]))
        eval_env.seed(config.seed + 10_000)
    else:
        eval_env = make_vec_env(
            config.env_id, n_envs=1, seed=config.seed + 10_000, env_kwargs=eval_kwargs
        )
    model = algo_cls(
        policy_name,
        venv,
        seed=config.seed,
        tensorboard_log=str(out / "tb"),
        verbose=0,
        **config.algo_kwargs,
    )
    recorder = EvalRecorder(out / "eval.csv")
    callbacks = CallbackList(
        [
            CheckpointCallback(config.checkpoint_freq, str(out / "checkpoints")),
            EvalCallback(
                eval_env,
                callback_after_eval=recorder,
                n_eval_episodes=config.eval_episodes,
                eval_freq=config.eval_freq,
                verbose=0,
            ),
        ]
    )
    started = time.perf_counter()
    model.learn(config.steps, callback=callbacks, progress_bar=progress)
    model.save(out / "model.zip")
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    meta["spec"] = gym.spec(config.env_id).to_json() if _jsonable_spec(config.env_id) else None
    meta["env_attrs"] = env_attrs
    renewals = getattr(getattr(venv, "venv", venv), "renewals", None)
    if renewals is not None:  # worlds used: seeds seed .. seed + renewals
        meta["world_renewals"] = int(renewals)
    meta["seconds"] = round(time.perf_counter() - started, 3)
    (out / "train.json").write_text(json.dumps(meta, indent=2, default=str))
    venv.close()
    eval_env.close()
    return out / "model.zip"


def _training_env(config: TrainConfig, env_kwargs: dict[str, Any]) -> Any:
    """One env, or for recloop session/exploration ids with n_envs > 1 the batched VecEnv:
    all N sessions share one world and one decider call per step."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecMonitor

    spec = gym.spec(config.env_id)
    if config.n_envs > 1 and spec.entry_point in {
        "simenv.envs.session:SessionEnv",
        "simenv.envs.exploration:ExplorationEnv",
    }:
        from simenv.envs.core import Mode
        from simenv.envs.vector import BatchedSessionVecEnv

        kwargs = {**(spec.kwargs or {}), **env_kwargs}
        kwargs.pop("render_mode", None)
        mode: Mode = "session" if str(spec.entry_point).endswith("SessionEnv") else "exploration"
        venv = BatchedSessionVecEnv(n_envs=config.n_envs, mode=mode, seed=config.seed, **kwargs)
        return VecMonitor(venv)
    return make_vec_env(
        config.env_id, n_envs=config.n_envs, seed=config.seed, env_kwargs=env_kwargs
    )


def load_model(path: Path, env_id: str) -> Any:
    """Load a saved model and check that it was trained on ``env_id``'s spaces."""
    from stable_baselines3.common.save_util import load_from_zip_file

    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"model file not found: {path}")
    data, _, _ = load_from_zip_file(path, device="cpu", load_data=True)
    env = gym.make(env_id)
    try:
        for what in ("observation_space", "action_space"):
            saved, wanted = (data or {}).get(what), getattr(env, what)
            if saved != wanted:
                raise TrainingError(
                    f"{path} was trained for another env: its {what} is {saved}, "
                    f"'{env_id}' has {wanted}"
                )
    finally:
        env.close()
    return load_algorithm(path)


def _env_attrs(env: gym.Env) -> dict[str, Any]:
    """What a recloop env resolved from its scenario (the sb3 policy rebuilds the same)."""
    core = getattr(env.unwrapped, "core", None)
    if core is None:
        return {}
    return {
        "max_steps": int(core.max_steps),
        "n_candidates": int(core.n_candidates),
        "explore_levels": [float(x) for x in core.explore_levels],
        "retriever": core.retriever,
        "retriever_kwargs": core.retriever_kwargs,
    }


def _jsonable_spec(env_id: str) -> bool:
    try:
        gym.spec(env_id).to_json()
    except (ValueError, TypeError):
        return False
    return True


class EvalRecorder(BaseCallback):
    """After each evaluation: append the mean return and the eval world's last metrics."""

    def __init__(self, path: Path) -> None:
        super().__init__(verbose=0)
        self.path = path

    def _on_step(self) -> bool:
        parent: Any = self.parent
        row: dict[str, Any] = {
            "timesteps": self.num_timesteps,
            "mean_return": float(parent.last_mean_reward) if parent is not None else float("nan"),
        }
        row.update(self._world_metrics(parent))
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        for key, value in row.items():
            if key not in {"timesteps"}:
                self.logger.record(f"eval_ecosystem/{key}", value)
        return True

    @staticmethod
    def _world_metrics(parent: Any) -> dict[str, float]:
        if parent is None:
            return {}
        try:
            world = parent.eval_env.get_attr("world")[0]
        except AttributeError:
            return {}
        if world is None or not getattr(world, "metric_rows", None):
            return {}
        last = world.metric_rows[-1]
        return {
            k: float(v)
            for k, v in last.items()
            if k in {"ctr", "session_length", "intra_list_diversity", "churn_rate", "return_rate"}
        }
