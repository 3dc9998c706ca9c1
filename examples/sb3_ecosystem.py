"""Train the platforms of `recloop/ecosystem` with stable-baselines3 through SuperSuit.

    python examples/sb3_ecosystem.py --steps 20000 --out runs/eco-ppo

Platform agents share one PPO policy (parameter sharing, the usual SuperSuit recipe); creator
agents are left to the world here (``n_creator_agents=0``) so that every agent has the same
spaces, which SuperSuit's vector conversion needs. For creators as learning agents too, use
RLlib's multi-policy setup (`examples/rllib_ecosystem.py`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SMALL = ["population.size=300", "catalog.n_items=300", "catalog.n_creators=20", "ticks=20"]


def make_vec_env(scenario: str, overrides: list[str], n_platforms: int, seed: int) -> Any:
    import supersuit as ss

    from simenv.envs import ecosystem_v0

    env = ecosystem_v0.parallel_env(
        scenario=scenario, overrides=overrides, n_platforms=n_platforms, n_creator_agents=0
    )
    env.reset(seed=seed)
    vec = ss.pettingzoo_env_to_vec_env_v1(env)
    return ss.concat_vec_envs_v1(vec, 1, num_cpus=0, base_class="stable_baselines3")


def train(steps: int, out: Path, *, seed: int = 0, overrides: list[str] | None = None) -> Path:
    import torch
    from stable_baselines3 import PPO

    torch.manual_seed(seed)  # SuperSuit's concatenated VecEnv has no seed(): seed torch directly
    venv = make_vec_env("filter_bubble", overrides or SMALL, n_platforms=2, seed=seed)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=4, verbose=0)
    model.learn(steps)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "platform_policy.zip")
    venv.close()
    return out / "platform_policy.zip"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--out", type=Path, default=Path("runs/eco-ppo"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"saved {train(args.steps, args.out, seed=args.seed)}")


if __name__ == "__main__":
    main()
