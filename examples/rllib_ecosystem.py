"""Train platforms and creators of `recloop/ecosystem` with RLlib's PPO (multi-agent).

    pip install "ray[rllib]" torch         # RLlib is not a recloop dependency
    python examples/rllib_ecosystem.py --iterations 5
    python examples/rllib_ecosystem.py --platforms 3 --creators 2 --users 500

Two RLlib modules are trained: every ``platform_*`` agent shares the module ``platform``
(``Discrete`` choice of a recommendation strategy each tick), every ``creator_*`` agent shares
``creator`` (``Box`` of topic weights and quality effort). The env is wrapped by RLlib's
``ParallelPettingZooEnv``; SuperSuit is not needed (all observations are float32 vectors in
[0, 1]). Written for Ray's new API stack (2.40+); older Rays use ``config.build()``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV_NAME = "recloop_ecosystem"


def env_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "scenario": "filter_bubble",
        "overrides": [
            f"population.size={args.users}",
            f"catalog.n_items={args.items}",
            "catalog.n_creators=20",
            "creators.enabled=true",
        ],
        "n_platforms": args.platforms,
        "n_creator_agents": args.creators,
        "max_cycles": args.max_cycles,
    }


def make_env(config: dict[str, Any]) -> Any:
    """The PettingZoo ParallelEnv RLlib wraps (``config`` = the env's keyword arguments)."""
    from simenv.envs import ecosystem_v0

    return ecosystem_v0.parallel_env(**dict(config))


def policy_mapping_fn(agent_id: str, *args: Any, **kwargs: Any) -> str:
    return "platform" if agent_id.startswith("platform_") else "creator"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--platforms", type=int, default=2)
    parser.add_argument("--creators", type=int, default=4, help="creator agents")
    parser.add_argument("--max-cycles", type=int, default=30, help="ticks per episode")
    parser.add_argument("--env-runners", type=int, default=0)
    parser.add_argument("--train-batch", type=int, default=1000)
    args = parser.parse_args(argv)

    try:
        import ray
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
        from ray.tune.registry import register_env
    except ImportError as exc:
        print(
            f"RLlib is not installed ({exc.name or exc}). This example needs it:\n"
            '    pip install "ray[rllib]" torch\n'
            "recloop itself does not depend on Ray.",
            file=sys.stderr,
        )
        return 1

    cfg = env_config(args)
    register_env(ENV_NAME, lambda c: ParallelPettingZooEnv(make_env(c)))
    config = (
        PPOConfig()
        .environment(ENV_NAME, env_config=cfg)
        .multi_agent(
            policies={"platform", "creator"},
            policy_mapping_fn=policy_mapping_fn,
            policies_to_train=["platform", "creator"],
        )
        .env_runners(num_env_runners=args.env_runners)
        .training(
            train_batch_size=args.train_batch,
            minibatch_size=min(128, args.train_batch),
            lr=3e-4,
        )
    )
    ray.init(ignore_reinit_error=True)
    try:
        algo = config.build_algo() if hasattr(config, "build_algo") else config.build()
        for i in range(args.iterations):
            result = algo.train()
            runners = result.get("env_runners", result)
            returns = runners.get("module_episode_returns_mean") or runners.get(
                "policy_reward_mean", {}
            )
            mean = runners.get("episode_return_mean", runners.get("episode_reward_mean"))
            shown = ", ".join(f"{k}={v:.1f}" for k, v in sorted(returns.items()))
            print(f"iteration {i + 1}: episode return {mean}; per module: {shown}")
        checkpoint = algo.save()
        print(f"checkpoint: {getattr(checkpoint, 'checkpoint', checkpoint)}")
        algo.stop()
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
