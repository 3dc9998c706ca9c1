"""Train an RL agent with stable-baselines3 on any registered recloop environment.

    recloop train ppo --env recloop/KnownAnswer-v0 --steps 20000 --out runs/ka

Writes ``model.zip``, ``train.json`` (algorithm, env id and spec, hyper-parameters as used,
seed, steps; written before training so checkpoints of an interrupted run are usable, and
again at the end with the steps trained and the seconds), ``checkpoints/``, TensorBoard logs in
``tb/`` (SB3's ``train/*``, ``rollout/*`` and ``eval/*`` scalars and recloop's
``eval_ecosystem/*``), and ``eval.csv`` (mean evaluation return per evaluation, plus the
ecosystem metrics of the evaluation world when the env has one).

Counting: ``steps`` are environment steps, whatever ``n_envs`` is (one step of the vector env
is ``n_envs`` of them). PPO and A2C learn from whole rollouts of ``n_steps × n_envs`` steps, so
`plan_steps` picks ``n_steps`` (and PPO's ``batch_size``) to make ``steps`` a whole number of
rollouts, or says why the steps trained differ. Every frequency (evaluations, checkpoints)
counts environment steps too (`EveryEnvSteps`).

Every check that can fail (algorithm, its keyword arguments, env id, action space) runs before
training starts. torch and SB3 are imported by this module only (`import simenv` stays light).
"""

from __future__ import annotations

import csv
import difflib
import inspect
import math
import time
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, EventCallback

from simenv.envs.core import ENV_METRICS
from simenv.envs.sb3_policy import algorithm_class, load_algorithm
from simenv.studies.run_folder import check_output_folder, write_json

ALGORITHMS = ("ppo", "a2c", "dqn")
#: Algorithms that learn from whole rollouts of ``n_steps`` per env.
ON_POLICY = ("ppo", "a2c")
#: Arguments of the batched VecEnv (n_envs > 1) that single envs do not take.
VEC_ONLY_KWARGS = ("renew_after_ticks",)
#: Constructor arguments `recloop train` sets itself, and the option that sets them.
RESERVED_KWARGS = {
    "policy": "chosen from the observation space",
    "env": "--env and --env-kwargs",
    "seed": "--seed",
    "tensorboard_log": "--out (tb/)",
    "verbose": "recloop train",
    "_init_setup_model": "recloop train",
}


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
    steps: int = field(
        metadata={
            "help": "environment steps to train, whatever --n-envs is; PPO/A2C's rollout "
            "length is chosen so that they are exact (or the output says why not)",
            "cli_default": 100_000,
        }
    )
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
    algo_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": 'keyword arguments of the SB3 algorithm, e.g. \'{"learning_rate": 3e-4, '
            "\"n_steps\": 512}' (checked against its signature; default: SB3's own, with "
            "n_steps fitted to --steps)",
            "metavar": "JSON",
        },
    )
    n_envs: int = field(
        default=1,
        metadata={
            "help": "concurrent sessions; recloop envs run them on one world, one decider call "
            "a step"
        },
    )
    eval_freq: int = field(
        default=2000,
        metadata={"help": "environment steps between evaluations; 0: none"},
    )
    eval_episodes: int = field(default=20, metadata={"help": "episodes per evaluation"})
    checkpoint_freq: int = field(
        default=10_000,
        metadata={
            "help": "environment steps between checkpoints (checkpoints/model_<steps>_steps.zip); "
            "0: none"
        },
    )


@dataclass(frozen=True)
class StepPlan:
    """How ``--steps`` maps onto the algorithm."""

    steps: int  # environment steps training will take
    algo_kwargs: dict[str, Any]  # the config's, plus the rollout length chosen for it
    note: str  # what was chosen, and why ``steps`` differs from the request if it does

    def describe(self, requested: int) -> str:
        head = f"{self.steps} environment steps"
        if self.steps != requested:
            head += f" (not {requested})"
        return f"{head}; {self.note}" if self.note else head


@dataclass(frozen=True)
class TrainResult:
    """What `train` wrote and did."""

    model: Path  # model.zip
    timesteps: int  # environment steps trained (SB3's num_timesteps)
    plan: StepPlan
    seconds: float


def plan_steps(algo: str, steps: int, n_envs: int, algo_kwargs: dict[str, Any]) -> StepPlan:
    """The environment steps ``algo`` trains for ``steps`` requested with ``n_envs`` envs.

    Off-policy (DQN): training stops at ``steps`` (rounded up to a multiple of ``n_envs``).
    On-policy (PPO, A2C): learning happens on whole rollouts of ``n_steps × n_envs`` steps.
    Without ``n_steps`` in ``algo_kwargs`` the rollout length is the largest divisor of the
    steps per env between a quarter of SB3's default and the default (the whole budget when it
    is smaller than the default), PPO's ``batch_size`` a divisor of the rollout near its
    default; when there is none, the default is used and the steps are rounded up.
    """
    kwargs = dict(algo_kwargs)
    per_env = math.ceil(steps / n_envs)
    why: list[str] = []
    if steps % n_envs:
        why.append(
            f"--steps {steps} is not a multiple of --n-envs {n_envs} (one step of the "
            f"vector env is {n_envs} environment steps)"
        )
    if algo not in ON_POLICY:
        total = per_env * n_envs
        note = "rounded up because " + "; ".join(why) if total != steps else ""
        return StepPlan(total, kwargs, note)
    default = int(_default(algo, "n_steps"))
    if "n_steps" in kwargs:
        n_steps = int(kwargs["n_steps"])
        chosen = f"n_steps {n_steps} from --algo-kwargs"
        if per_env % n_steps:
            why.append(f"rollouts of n_steps {n_steps} × {n_envs} envs do not divide it")
    else:
        fitted = _rollout_length(per_env, default)
        n_steps = fitted or default
        kwargs["n_steps"] = n_steps
        chosen = f"n_steps {n_steps} (fitted; SB3's default is {default})"
        if fitted is None:
            why.append(
                f"{per_env} steps per env have no divisor between {math.ceil(default / 4)} "
                f"and {default}, the rollout lengths tried"
            )
    rollout = n_steps * n_envs
    if algo == "ppo" and "batch_size" not in kwargs:
        kwargs["batch_size"] = _minibatch(rollout, int(_default("ppo", "batch_size")))
        chosen += f", batch_size {kwargs['batch_size']}"
    rollouts = math.ceil(per_env / n_steps)
    total = rollouts * rollout
    note = f"{rollouts} rollout(s) of {n_steps} × {n_envs} envs; {chosen}"
    if total != steps:
        note += "; rounded up because " + "; ".join(why)
    return StepPlan(total, kwargs, note)


def _default(algo: str, name: str) -> Any:
    """The default of a constructor argument of ``algo``."""
    return inspect.signature(algorithm_class(algo).__init__).parameters[name].default


def _rollout_length(per_env: int, default: int) -> int | None:
    """The largest divisor of ``per_env`` in [default / 4, default] (``per_env`` itself when it
    is at most ``default``), None when there is none."""
    if per_env <= default:
        return per_env
    for n in range(default, math.ceil(default / 4) - 1, -1):
        if per_env % n == 0:
            return n
    return None


def _minibatch(rollout: int, default: int) -> int:
    """A mini-batch size that divides the rollout, near ``default``."""
    if rollout <= default or rollout % default == 0:
        return min(rollout, default)
    near = [b for b in range(default // 2, 2 * default + 1) if rollout % b == 0]
    return min(near, key=lambda b: abs(b - default)) if near else default


def algo_arguments(algo: str, algo_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``algo_kwargs`` checked against the algorithm's constructor: every key one of its
    arguments that we do not set, every value of its annotated type (JSON lists become the
    tuples an annotation asks for). A TrainingError names the first problem."""
    params = inspect.signature(algorithm_class(algo).__init__).parameters
    allowed = [p for p in params if p != "self" and p not in RESERVED_KWARGS]
    out: dict[str, Any] = {}
    for key, value in algo_kwargs.items():
        if key in RESERVED_KWARGS:
            raise TrainingError(
                f"--algo-kwargs: '{key}' is set by recloop train ({RESERVED_KWARGS[key]})"
            )
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TrainingError(
                f"--algo-kwargs: {algo} has no argument '{key}'{hint}; it takes: "
                f"{', '.join(allowed)}"
            )
        annotation = params[key].annotation
        converted = _as_annotated(annotation, value)
        if converted is _REFUSED:
            raise TrainingError(
                f"--algo-kwargs: {algo}'s '{key}' must be {_type_name(annotation)}, got {value!r}"
            )
        out[key] = converted
    return out


_REFUSED = object()


def _as_annotated(annotation: Any, value: Any) -> Any:
    """``value`` (from JSON) as ``annotation`` wants it, or `_REFUSED`. Annotations other than
    numbers, strings, booleans, dicts, tuples, None and their unions are not checked."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = typing.get_args(annotation)
        for member in members:
            converted = _as_annotated(member, value)
            if converted is not _REFUSED:
                return converted
        checked = all(_checkable(m) for m in members)
        return _REFUSED if checked else value
    if annotation is type(None):
        return None if value is None else _REFUSED
    if annotation is bool:
        return value if isinstance(value, bool) else _REFUSED
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _REFUSED
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else _REFUSED
    if annotation is str:
        return value if isinstance(value, str) else _REFUSED
    origin = typing.get_origin(annotation) or annotation
    if origin is dict:
        return value if isinstance(value, dict) else _REFUSED
    if origin is tuple:
        return tuple(value) if isinstance(value, list | tuple) else _REFUSED
    return value


def _checkable(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return origin in (type(None), bool, int, float, str, dict, tuple)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


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
    for name in ("eval_freq", "checkpoint_freq"):
        if getattr(config, name) < 0:
            flag = "--" + name.replace("_", "-")
            raise TrainingError(f"{flag} must be 0 (off) or positive, got {getattr(config, name)}")
    if config.eval_episodes < 1:
        raise TrainingError(f"--eval-episodes must be at least 1, got {config.eval_episodes}")
    algo_arguments(config.algo, config.algo_kwargs)
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


def train(config: TrainConfig, *, progress: bool = False) -> TrainResult:
    """Train and save (``progress``: SB3's progress bar); see the module docstring."""
    probe = check(config)
    policy_name = (
        "MultiInputPolicy" if isinstance(probe.observation_space, spaces.Dict) else ("MlpPolicy")
    )
    env_attrs = _env_attrs(probe)
    probe.close()
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback

    algo_kwargs = algo_arguments(config.algo, config.algo_kwargs)
    plan = plan_steps(config.algo, config.steps, config.n_envs, algo_kwargs)
    out = Path(config.out)
    # no rendering while training: SB3's make_vec_env would ask for "rgb_array"
    env_kwargs = {"render_mode": None, **config.env_kwargs}
    venv = _training_env(config, env_kwargs)
    eval_env = _eval_env(config, env_kwargs, venv)
    try:
        model = algorithm_class(config.algo)(
            policy_name,
            venv,
            seed=config.seed,
            tensorboard_log=str(out / "tb"),
            verbose=0,
            **plan.algo_kwargs,
        )
    except (TypeError, ValueError, AssertionError) as exc:
        venv.close()
        eval_env.close()
        raise TrainingError(f"{config.algo} rejected --algo-kwargs: {exc}") from exc
    callbacks: list[BaseCallback] = []
    if config.checkpoint_freq:
        saver = CheckpointCallback(1, str(out / "checkpoints"), name_prefix="model")
        callbacks.append(EveryEnvSteps(config.checkpoint_freq, saver))
    if config.eval_freq:
        evaluate = EvalCallback(
            eval_env,
            callback_after_eval=EvalRecorder(out / "eval.csv"),
            n_eval_episodes=config.eval_episodes,
            eval_freq=1,
            verbose=0,
        )
        callbacks.append(EveryEnvSteps(config.eval_freq, evaluate))
    if config.algo not in ON_POLICY:
        callbacks.append(StopAtSteps(plan.steps))
    meta = _meta(config, plan, env_attrs)
    write_json(out / "train.json", meta)
    started = time.perf_counter()
    model.learn(plan.steps, callback=CallbackList(callbacks), progress_bar=progress)
    model.logger.dump(model.num_timesteps)  # the last update's train/* scalars
    seconds = round(time.perf_counter() - started, 3)
    model.save(out / "model.zip")
    meta["timesteps"] = int(model.num_timesteps)
    renewals = getattr(getattr(venv, "venv", venv), "renewals", None)
    if renewals is not None:  # worlds used: seeds seed .. seed + renewals
        meta["world_renewals"] = int(renewals)
    meta["seconds"] = seconds
    write_json(out / "train.json", meta)
    venv.close()
    eval_env.close()
    return TrainResult(out / "model.zip", int(model.num_timesteps), plan, seconds)


def _meta(config: TrainConfig, plan: StepPlan, env_attrs: dict[str, Any]) -> dict[str, Any]:
    """``train.json``: the config with the algorithm's arguments as used, the env's spec and
    resolved attributes (what the ``sb3`` policy rebuilds) and the step plan."""
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    meta["algo_kwargs"] = plan.algo_kwargs
    meta["requested_algo_kwargs"] = config.algo_kwargs
    meta["plan"] = {"steps": plan.steps, "note": plan.note}
    meta["spec"] = gym.spec(config.env_id).to_json() if _jsonable_spec(config.env_id) else None
    meta["env_attrs"] = env_attrs
    return meta


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
        mode: Mode = "session" if str(spec.entry_point).endswith("SessionEnv") else "exploration"
        venv = BatchedSessionVecEnv(n_envs=config.n_envs, mode=mode, seed=config.seed, **kwargs)
        return VecMonitor(venv)
    return make_vec_env(
        config.env_id, n_envs=config.n_envs, seed=config.seed, env_kwargs=env_kwargs
    )


def _eval_env(config: TrainConfig, env_kwargs: dict[str, Any], venv: Any) -> Any:
    """One env for evaluations, wrapped as the training env is (EvalCallback checks)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    kwargs = {k: v for k, v in env_kwargs.items() if k not in VEC_ONLY_KWARGS}
    seed = config.seed + 10_000
    if isinstance(venv, VecMonitor):
        eval_env = VecMonitor(DummyVecEnv([lambda: gym.make(config.env_id, **kwargs)]))
        eval_env.seed(seed)
        return eval_env
    return make_vec_env(config.env_id, n_envs=1, seed=seed, env_kwargs=kwargs)


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


class EveryEnvSteps(EventCallback):
    """Runs ``callback`` each time the environment steps trained pass a multiple of ``freq``.

    SB3's own frequencies (``EvalCallback(eval_freq=...)``, ``CheckpointCallback(save_freq=
    ...)``) count calls, one per step of the vector env, i.e. ``n_envs`` environment steps
    each; this counts environment steps, so ``--eval-freq 2000`` means 2000 steps at any
    ``--n-envs`` (the event fires at the first vector step at or past each multiple).
    """

    def __init__(self, freq: int, callback: BaseCallback) -> None:
        super().__init__(callback)
        if freq < 1:
            raise ValueError(f"freq must be positive, got {freq}")
        self.freq = int(freq)
        self.fired = 0

    def _on_step(self) -> bool:
        due = self.num_timesteps // self.freq
        if due > self.fired:
            self.fired = due
            return self._on_event()
        return True


class StopAtSteps(BaseCallback):
    """Stops an off-policy algorithm at ``steps`` environment steps (SB3 collects
    ``train_freq`` vector steps at a time and would overshoot)."""

    def __init__(self, steps: int) -> None:
        super().__init__(verbose=0)
        self.steps = int(steps)

    def _on_step(self) -> bool:
        return self.num_timesteps < self.steps


#: The ecosystem metrics of the evaluation world that ``eval.csv`` records.
EVAL_METRICS = ENV_METRICS  # what the env worlds record


class EvalRecorder(BaseCallback):
    """After each evaluation: append the mean return and, for envs with a world, the eval
    world's last metrics (`EVAL_METRICS`; empty until its first tick has ended) to
    ``eval.csv`` and to TensorBoard (``eval_ecosystem/*``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(verbose=0)
        self.path = path

    def _on_step(self) -> bool:
        parent: Any = self.parent
        row: dict[str, Any] = {
            "timesteps": self.num_timesteps,
            "mean_return": float(parent.last_mean_reward) if parent is not None else float("nan"),
        }
        world = self._world(parent)
        if world is not None:
            last = world.metric_rows[-1] if world.metric_rows else {}
            row.update({m: float(last[m]) if m in last else None for m in EVAL_METRICS})
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        for key, value in row.items():
            if key != "timesteps" and value is not None:
                self.logger.record(f"eval_ecosystem/{key}", value)
        self.logger.dump(self.num_timesteps)
        return True

    @staticmethod
    def _world(parent: Any) -> Any:
        """The evaluation env's world, None for envs without one."""
        if parent is None:
            return None
        try:
            return parent.eval_env.get_attr("world")[0]
        except AttributeError:
            return None
