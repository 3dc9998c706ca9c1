"""PPO in one file, CleanRL style, on N sessions of one shared recloop world.

    python examples/cleanrl_ppo.py                                   # recloop/Exploration-v0
    python examples/cleanrl_ppo.py --env-id recloop/Session-v0 --total-timesteps 200000
    python examples/cleanrl_ppo.py --scenario boredom --set population.size=2000
    tensorboard --logdir runs/cleanrl

Adapted from CleanRL's ``ppo.py`` and ``ppo_multidiscrete.py`` (https://github.com/vwxyzjn/cleanrl,
MIT licence) and meant to be read top to bottom and changed: arguments (a dataclass, every
field an option), the environment, the agent, then the training loop.

The environment is ``gymnasium.make_vec(env_id, num_envs=N, vectorization_mode=
"vector_entry_point")``: recloop registers a vector entry point, so this is
`simenv.envs.batch.SessionVectorEnv`, N user sessions on ONE world served with one decider call
per step (LLM users are batched too), not N copies of the world. It resets finished sessions in
the same step (``autoreset_mode`` ``SAME_STEP``): the observation after a ``done`` is the next
session's first one, which is what PPO's GAE below expects. Dict observations are flattened
into one vector; ``Discrete`` (Exploration-v0) and ``MultiDiscrete`` (Session-v0: one
categorical per slate slot) actions share one categorical head.

Writes TensorBoard scalars (``charts/``, ``losses/``) and the agent's weights (``agent.pt``) to
``<out>/<run name>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn, optim
from torch.distributions.categorical import Categorical
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import simenv  # noqa: F401  (registers the recloop/* ids)


# ---------------------------------------------------------------------------------- arguments
@dataclass
class Args:
    exp_name: str = field(default="cleanrl_ppo", metadata={"help": "name of this experiment"})
    seed: int = field(default=1, metadata={"help": "seed of the world and of torch"})
    torch_deterministic: bool = field(
        default=True, metadata={"help": "torch.backends.cudnn.deterministic"}
    )
    cuda: bool = field(default=False, metadata={"help": "use CUDA when available"})
    out: Path = field(default=Path("runs/cleanrl"), metadata={"help": "output folder"})

    env_id: str = field(
        default="recloop/Exploration-v0",
        metadata={"help": "an id with discrete actions: recloop/Exploration-v0 or Session-v0"},
    )
    scenario: str = field(default="filter_bubble", metadata={"help": "scenario name or path"})
    overrides: list[str] = field(
        default_factory=list,
        metadata={"help": "scenario override KEY=VALUE (repeatable)", "flag": "--set"},
    )
    total_timesteps: int = field(default=100_000, metadata={"help": "environment steps"})
    learning_rate: float = field(default=2.5e-4, metadata={"help": "Adam's learning rate"})
    num_envs: int = field(default=16, metadata={"help": "concurrent sessions on the world"})
    num_steps: int = field(default=128, metadata={"help": "steps per env per rollout"})
    anneal_lr: bool = field(default=True, metadata={"help": "anneal the learning rate to 0"})
    gamma: float = field(default=0.99, metadata={"help": "discount factor"})
    gae_lambda: float = field(default=0.95, metadata={"help": "lambda of GAE"})
    num_minibatches: int = field(default=4, metadata={"help": "mini-batches per epoch"})
    update_epochs: int = field(default=4, metadata={"help": "epochs per rollout"})
    norm_adv: bool = field(default=True, metadata={"help": "normalise advantages"})
    clip_coef: float = field(default=0.2, metadata={"help": "surrogate clipping coefficient"})
    clip_vloss: bool = field(default=True, metadata={"help": "clip the value loss"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy coefficient"})
    vf_coef: float = field(default=0.5, metadata={"help": "value function coefficient"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient clipping norm"})
    target_kl: float | None = field(
        default=None, metadata={"help": "stop the epochs at this approximate KL"}
    )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size


def parse_args(argv: list[str] | None = None) -> Args:
    """Every field of `Args` as an option (``--field-name``), typed by its annotation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": f.metadata["help"]}
        if f.type in ("bool", bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.type in ("list[str]", list[str]):
            kwargs["action"], kwargs["metavar"] = "append", "KEY=VALUE"
        else:
            kwargs["type"] = {"int": int, "float": float, "float | None": float, "Path": Path}.get(
                str(f.type), str
            )
        parser.add_argument(flag, **kwargs)
    args = Args(**vars(parser.parse_args(argv)))
    if args.num_iterations < 1:
        parser.error(f"--total-timesteps must be at least one batch ({args.batch_size} steps)")
    return args


# -------------------------------------------------------------------------------- environment
def make_envs(args: Args) -> gym.vector.VectorEnv:
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        scenario=args.scenario,
        overrides=list(args.overrides),
    )
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def flatten(obs: dict[str, np.ndarray], device: torch.device) -> torch.Tensor:
    """A batch of Dict observations as one float vector per env (keys in sorted order)."""
    parts = [np.asarray(obs[key]).reshape(len(obs[key]), -1) for key in sorted(obs)]
    return torch.as_tensor(np.concatenate(parts, axis=1), dtype=torch.float32, device=device)


def action_sizes(space: spaces.Space[Any]) -> list[int]:
    """Categorical sizes: one for ``Discrete(n)``, one per slot for ``MultiDiscrete``."""
    if isinstance(space, spaces.Discrete):
        return [int(space.n)]
    if isinstance(space, spaces.MultiDiscrete):
        return [int(n) for n in space.nvec]
    raise SystemExit(f"this PPO needs Discrete or MultiDiscrete actions, got {space}")


# -------------------------------------------------------------------------------------- agent
def layer_init(layer: nn.Linear, std: float = float(np.sqrt(2)), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_size: int, sizes: list[int]) -> None:
        super().__init__()
        self.sizes = sizes
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_size, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_size, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, sum(sizes)), std=0.01),
        )

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(
        self, x: torch.Tensor, action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = torch.split(self.actor(x), self.sizes, dim=1)
        dists = [Categorical(logits=part) for part in logits]
        if action is None:
            action = torch.stack([d.sample() for d in dists], dim=1)
        logprob = torch.stack([d.log_prob(a) for d, a in zip(dists, action.T, strict=True)])
        entropy = torch.stack([d.entropy() for d in dists])
        return action, logprob.sum(0), entropy.sum(0), self.critic(x)


# ----------------------------------------------------------------------------------- training
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    run_name = f"{args.env_id.replace('/', '_')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = args.out / run_name
    writer = SummaryWriter(str(run_dir))
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()),
    )
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    envs = make_envs(args)
    sizes = action_sizes(envs.single_action_space)
    next_obs_np, _ = envs.reset(seed=args.seed)
    next_obs = flatten(next_obs_np, device)
    obs_size = next_obs.shape[1]
    agent = Agent(obs_size, sizes).to(device)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    # rollout storage
    obs = torch.zeros((args.num_steps, args.num_envs, obs_size), device=device)
    actions = torch.zeros((args.num_steps, args.num_envs, len(sizes)), device=device)
    logprobs = torch.zeros((args.num_steps, args.num_envs), device=device)
    rewards = torch.zeros((args.num_steps, args.num_envs), device=device)
    dones = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs), device=device)

    global_step = 0
    start_time = time.time()
    next_done = torch.zeros(args.num_envs, device=device)
    returns_seen: list[float] = []
    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob

            env_action = action.cpu().numpy()
            if len(sizes) == 1:  # Discrete: one index per env
                env_action = env_action[:, 0]
            next_obs_np, reward, terminations, truncations, infos = envs.step(env_action)
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
            next_obs = flatten(next_obs_np, device)
            next_done = torch.as_tensor(
                np.logical_or(terminations, truncations), dtype=torch.float32, device=device
            )
            if "episode" in infos:
                for r, ok in zip(infos["episode"]["r"], infos["_episode"], strict=True):
                    if ok:
                        returns_seen.append(float(r))
                        writer.add_scalar("charts/episodic_return", float(r), global_step)

        # generalised advantage estimation
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = torch.zeros(args.num_envs, device=device)
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal = 1.0 - next_done
                    nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[t + 1]
                    nextvalues = values[t + 1]
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                advantages[t] = lastgaelam
            returns = advantages + values

        # flatten the batch
        b_obs = obs.reshape((-1, obs_size))
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape((-1, len(sizes))).long()
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        # optimise the policy and value network
        b_inds = np.arange(args.batch_size)
        rng = np.random.default_rng(args.seed + iteration)
        clipfracs = []
        for _epoch in range(args.update_epochs):
            rng.shuffle(b_inds)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = b_inds[start : start + args.minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_obs[mb_inds], b_actions[mb_inds]
                )
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs += [((ratio - 1.0).abs() > args.clip_coef).float().mean().item()]

                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (
                        mb_advantages.std() + 1e-8
                    )
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(
                    ratio, 1 - args.clip_coef, 1 + args.clip_coef
                )
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                    v_clipped = b_values[mb_inds] + torch.clamp(
                        newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef
                    )
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        sps = int(global_step / (time.time() - start_time))
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        writer.add_scalar("losses/clipfrac", float(np.mean(clipfracs)), global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        recent = np.mean(returns_seen[-100:]) if returns_seen else float("nan")
        print(f"step {global_step}: mean episodic return {recent:.3f}, {sps} steps/s")

    torch.save(agent.state_dict(), run_dir / "agent.pt")
    envs.close()
    writer.close()
    print(f"agent: {run_dir / 'agent.pt'}")
    return {"global_step": global_step, "episodes": len(returns_seen), "run_dir": run_dir}


if __name__ == "__main__":
    main()
