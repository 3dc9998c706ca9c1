"""``recloop/ecosystem``: competing platforms and creators around one population (PettingZoo).

Usage::

    from simenv.envs import ecosystem_v0

    env = ecosystem_v0.parallel_env(scenario="filter_bubble", n_platforms=2, n_creator_agents=4)
    obs, infos = env.reset(seed=0)
    while env.agents:
        actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, rewards, terminations, truncations, infos = env.step(actions)

    aec = ecosystem_v0.env(scenario="filter_bubble")  # the same game as an AEC env

Agents
    ``platform_0 .. platform_{P-1}``: competing recommenders; ``creator_0 .. creator_{C-1}``:
    the first ``C = min(n_creator_agents, scenario creators)`` creators of the catalog. The other
    creators stay scripted by the world (Poisson publication near their topic profile).

One step is one tick of ONE `World` built with ``policy=None``; the env only turns actions into
calls on it and its results into observations and rewards. The first ``C`` world creators are
driven by the creator agents (`CreatorState.drive`); the world publishes for the others.

1. ``world.begin_tick(orders)``: items age and retire, scripted creators publish, then each
   creator agent's `Order` is published (``items_per_tick`` items near the topic profile of its
   action, with its quality effort); users activate;
2. every active user picks a platform (`simenv.users.PlatformChoice`: a softmax of their
   per-platform satisfaction, ``satisfaction / choice_temperature``, equal at reset) with the
   world's ``rngs["env"]`` generator;
3. session steps, up to ``session.max_steps``: each platform's chosen strategy ranks slates for
   its visitors still in session; all slates are served in ONE ``world.serve`` call (one decider
   call for every user of every platform); the feedback is split per platform and every
   strategy of that platform learns from it (a platform never sees another's feedback);
4. ``world.end_tick(active)`` (churn, creators react, metrics); a visitor's satisfaction with
   the platform they visited moves a share ``satisfaction_rate`` toward their tick score, the
   mean over their slates of ``click · (rating − 1) / 4`` (in [0, 1]); the creator agents'
   exposure, consumption and publications of the tick are read from ``world.creators``.

Actions
    platform: ``Discrete(M)``, the index of one of M strategies (default: ``popularity``
    exploit, ``mf`` personalised exploit, ``epsilon_greedy`` explore, ``mmr`` over mf
    diversify, ``random``), each a `policies.make` recommender owned by that platform. A small
    discrete choice keeps the game learnable; every strategy keeps learning from all of the
    platform's feedback (off-policy), so switching is cheap.
    creator: ``Box(0, 1, (d + 1,))``: ``d`` topic weights (normalised; all zeros = uniform)
    and a quality effort ``e``; each new item's quality ``q`` becomes ``q + e·(1 − q)·0.8``
    (`simenv.creators.QUALITY_GAIN`).

Rewards
    platform: clicks of its visitors this tick (+ ``rating_weight`` × sum of (rating − 1) / 4);
    creator: ``exposure_weight`` × impressions + consumptions of its items this tick
    − ``effort_cost`` × effort × items published.

Observations (float32, all in [0, 1])
    platform: ``[market share, own CTR last tick, mean satisfaction of its visitors,
    available items / capacity, tick / max_cycles]``;
    creator: ``[exposure share, consumption share, topic profile (d), exposure-weighted topic
    trend of the tick (d)]``.

Episode: every agent is truncated after ``max_cycles`` steps (default ``scenario.ticks``; may
be changed before ``reset``); a creator agent whose world creator quits (``leave_after``) is
terminated. The world's scenario is copied with ``creators.enabled = true`` and ``ticks``
raised so the `ItemStore` capacity holds ``max_cycles`` ticks of publications (with
``publish_rate = 0`` publications beyond the capacity are dropped: ``world.items.dropped``).

Rendering: ``render_mode="ansi"`` gives a table of the platforms (strategy, market share, CTR,
satisfaction) and creator agents (main topic, exposure and consumption shares) after the last
tick, ``"rgb_array"`` the same as bar charts (`simenv.envs.render`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec
from pettingzoo.utils.env import AECEnv

import policies
from agents.deciders import UtilityDecider
from policies.base import Feedback, Recommender
from scenarios import load
from scenarios.schema import Scenario
from simenv.arrays import nan_to
from simenv.creators import Order
from simenv.envs.render import (
    RENDER_FPS,
    RENDER_MODES,
    MarketView,
    check_render_mode,
    render_market,
)
from simenv.users import PlatformChoice
from simenv.world import World

__all__ = ["DEFAULT_STRATEGIES", "EcosystemEnv", "env", "parallel_env", "raw_env"]

StrategySpec = str | tuple[str, dict[str, Any]]

#: observations, rewards, terminations, truncations, infos (PettingZoo's parallel ``step``).
StepResult = tuple[
    dict[str, np.ndarray],
    dict[str, float],
    dict[str, bool],
    dict[str, bool],
    dict[str, dict[str, Any]],
]

#: The platforms' strategies, in action order: (policy name, keyword arguments).
DEFAULT_STRATEGIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("popularity", {}),
    ("mf", {}),
    ("epsilon_greedy", {"epsilon": 0.2}),
    ("mmr", {"base": "mf", "lambda_": 0.6}),
    ("random", {}),
)


@dataclass
class _Tally:
    """What the platforms' sessions of one tick gave, per user and per platform."""

    score: np.ndarray  # (n_users,) sum over a visitor's slates of click·(rating − 1)/4
    visitors: np.ndarray  # (P,) float64
    clicks: np.ndarray  # (P,)
    rating_sum: np.ndarray  # (P,) sum of the score terms of the platform's slates
    impressions: np.ndarray  # (P,) slates served

    @classmethod
    def start(cls, n_users: int, platform: np.ndarray, n_platforms: int) -> _Tally:
        P = n_platforms
        visitors = np.bincount(platform, minlength=P).astype(np.float64)
        return cls(np.zeros(n_users), visitors, np.zeros(P), np.zeros(P), np.zeros(P))


class EcosystemEnv(ParallelEnv[str, np.ndarray, Any]):
    """Platforms compete for one population's visits while creators choose what to publish."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "recloop/ecosystem_v0",
        "render_modes": list(RENDER_MODES),
        "render_fps": RENDER_FPS,
        "is_parallelizable": True,
    }

    world: World
    choice: PlatformChoice  # each user's satisfaction with each platform, and the choice
    cycle: int
    _strategy_of: list[int]
    _policies: list[list[Recommender]]
    _share: np.ndarray
    _ctr: np.ndarray
    _mean_sat: np.ndarray
    _creator_topics: np.ndarray
    _creator_alive: np.ndarray
    _exp_share: np.ndarray
    _con_share: np.ndarray
    _trend: np.ndarray

    def __init__(
        self,
        scenario: str | Path | Scenario = "filter_bubble",
        overrides: Sequence[str] | None = None,
        *,
        n_platforms: int = 2,
        n_creator_agents: int = 4,
        strategies: Sequence[StrategySpec] | None = None,
        max_cycles: int | None = None,
        seed: int = 0,
        items_per_tick: int = 1,
        choice_temperature: float = 0.1,
        satisfaction_rate: float = 0.3,
        initial_satisfaction: float = 0.5,
        rating_weight: float = 0.0,
        exposure_weight: float = 0.1,
        effort_cost: float = 0.5,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(scenario, Scenario):
            base = scenario
            if overrides:
                raise ValueError("overrides apply to a scenario name or path, not a Scenario")
        else:
            base = load(scenario, list(overrides or []))
        if n_platforms < 1:
            raise ValueError(f"n_platforms must be at least 1, got {n_platforms}")
        if n_creator_agents < 0 or items_per_tick < 0:
            raise ValueError("n_creator_agents and items_per_tick must be non-negative")
        if choice_temperature <= 0:
            raise ValueError(f"choice_temperature must be positive, got {choice_temperature}")
        if not 0.0 <= satisfaction_rate <= 1.0 or not 0.0 <= initial_satisfaction <= 1.0:
            raise ValueError("satisfaction_rate and initial_satisfaction must be in [0, 1]")
        self.base_scenario = base
        self.strategies = tuple(_strategy(s) for s in (strategies or DEFAULT_STRATEGIES))
        if not self.strategies:
            raise ValueError("at least one strategy is needed")
        for name, kwargs in self.strategies:  # fail early on unknown names or parameters
            policies.check_deployable(policies.make(name, **kwargs), "strategy")
        self.n_platforms = int(n_platforms)
        self.max_cycles = int(max_cycles if max_cycles is not None else base.ticks)
        self.items_per_tick = int(items_per_tick)
        self.choice_temperature = float(choice_temperature)
        self.satisfaction_rate = float(satisfaction_rate)
        self.initial_satisfaction = float(initial_satisfaction)
        self.rating_weight = float(rating_weight)
        self.exposure_weight = float(exposure_weight)
        self.effort_cost = float(effort_cost)
        self.render_mode = check_render_mode(render_mode)
        self._seed = int(seed)
        self._seeds = np.random.default_rng(self._seed)

        # A world with the base scenario tells the sizes the spaces need.
        self.world = self._new_world(self._seed)
        n_creators = int(self.world.creators.active.size)
        self._n_world_creators = n_creators
        self.n_creator_agents = min(int(n_creator_agents), n_creators)
        self.n_topics = self.world.items.n_features
        self.platforms = [f"platform_{i}" for i in range(self.n_platforms)]
        self.creator_agents = [f"creator_{i}" for i in range(self.n_creator_agents)]
        self.possible_agents = self.platforms + self.creator_agents
        self.agents: list[str] = []
        d = self.n_topics
        self.observation_spaces: dict[str, spaces.Space[Any]] = {}
        self.action_spaces: dict[str, spaces.Space[Any]] = {}
        for a in self.platforms:
            self.observation_spaces[a] = spaces.Box(0.0, 1.0, (5,), np.float32)
            self.action_spaces[a] = spaces.Discrete(len(self.strategies))
        for a in self.creator_agents:
            self.observation_spaces[a] = spaces.Box(0.0, 1.0, (2 + 2 * d,), np.float32)
            self.action_spaces[a] = spaces.Box(0.0, 1.0, (d + 1,), np.float32)
        self._reset_state()

    # ------------------------------------------------------------------ PettingZoo API

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self.action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            self._seed = int(seed)
            self._seeds = np.random.default_rng(self._seed)
            world_seed = self._seed
        else:
            world_seed = int(self._seeds.integers(2**31 - 1))
        self.world = self._new_world(world_seed)
        self._reset_state()
        self.agents = list(self.possible_agents)
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> StepResult:
        """One tick: actions become orders and strategies, the world ticks, the env scores it."""
        if not self.agents:
            return {}, {}, {}, {}, {}
        world = self.world
        orders, efforts = self._read_actions(actions)
        active = world.begin_tick(orders)
        platform = self.choice.choose(active, world.rngs["env"])
        tally = self._sessions(active, platform)
        world.end_tick(active)
        self.cycle += 1
        slates_seen = np.maximum(world.users.session_length[active], 1)
        self.choice.update(active, platform, tally.score[active] / slates_seen)
        self._note_tick(active, platform, tally)
        rewards, infos = self._rewards(tally, efforts)
        return self._end_step(rewards, infos)

    def render(self) -> str | np.ndarray | None:
        """The platforms' market shares, CTR and satisfaction and the creator agents' exposure
        after the last tick: text (``ansi``) or an ``(H, W, 3)`` uint8 picture
        (``rgb_array``); None without a render mode."""
        if self.render_mode is None:
            return None
        names = self.world.items.topic_names
        view = MarketView(
            cycle=self.cycle,
            max_cycles=self.max_cycles,
            platforms=list(self.platforms),
            strategies=[self.strategies[s][0] for s in self._strategy_of],
            share=self._share.copy(),
            ctr=self._ctr.copy(),
            satisfaction=self._mean_sat.copy(),
            creators=list(self.creator_agents),
            exposure=self._exp_share.copy(),
            consumption=self._con_share.copy(),
            topics=[names[int(t)] for t in np.argmax(self._creator_topics, axis=1)],
        )
        return render_market(self.render_mode, view)

    def close(self) -> None:
        return None

    # ------------------------------------------------------------------ internals

    def _new_world(self, seed: int) -> World:
        """A world of the base scenario with no policy (the platforms recommend) and the fast
        utility users, whatever ``decider.kind`` says."""
        scenario = self._world_scenario()
        decider = UtilityDecider(scenario.decider.utility)
        return World(scenario, None, seed=seed, decider=decider)

    def _world_scenario(self) -> Scenario:
        """The base scenario with creators enabled and an item capacity for ``max_cycles``."""
        sc = self.base_scenario
        cr = sc.creators
        n_creators = getattr(self, "_n_world_creators", _n_creators(sc))
        ticks = sc.ticks
        if cr.publish_rate > 0 and n_creators > 0:
            n_agents = min(getattr(self, "n_creator_agents", n_creators), n_creators)
            need = self.max_cycles * (
                (n_creators - n_agents) * cr.publish_rate + n_agents * self.items_per_tick
            )
            ticks = max(ticks, math.ceil(need / (n_creators * cr.publish_rate)))
        return sc.model_copy(
            update={"ticks": ticks, "creators": cr.model_copy(update={"enabled": True})}
        )

    def _reset_state(self) -> None:
        P, world = self.n_platforms, self.world
        self.cycle = 0
        self.choice = PlatformChoice.start(
            world.n_users,
            P,
            self.initial_satisfaction,
            self.choice_temperature,
            self.satisfaction_rate,
        )
        self._strategy_of = [0] * P
        streams = world.rngs["policy"].spawn(P * len(self.strategies))
        self._policies = []
        for p in range(P):
            row = []
            for j, (name, kwargs) in enumerate(self.strategies):
                policy = policies.make(name, **kwargs)
                policy.reset(world.spec, streams[p * len(self.strategies) + j])
                row.append(policy)
            self._policies.append(row)
        self._share = np.full(P, 1.0 / P)
        self._ctr = np.zeros(P)
        self._mean_sat = np.full(P, self.initial_satisfaction)
        C, d = self.n_creator_agents, self.n_topics
        world.creators.drive(np.arange(C))
        self._creator_topics = world.creators.topics[:C].astype(np.float64).copy()
        self._creator_alive = np.ones(C, dtype=bool)
        self._exp_share = np.zeros(C)
        self._con_share = np.zeros(C)
        self._trend = np.full(d, 1.0 / d, dtype=np.float32)

    def _read_actions(self, actions: dict[str, Any]) -> tuple[list[Order], np.ndarray]:
        """Platforms switch strategy; each creator agent orders ``items_per_tick`` items near
        the topics of its last action. Returns the orders and the creator agents' efforts."""
        for i, a in enumerate(self.platforms):
            if a in actions and actions[a] is not None:
                self._strategy_of[i] = self._parse_platform_action(actions[a])
        efforts = np.zeros(self.n_creator_agents)
        for c, a in enumerate(self.creator_agents):
            if a in actions and actions[a] is not None:
                self._creator_topics[c], efforts[c] = self._parse_creator_action(actions[a])
        orders = [
            Order(c, self._creator_topics[c].copy(), self.items_per_tick, efforts[c])
            for c in range(self.n_creator_agents)
        ]
        return orders, efforts

    def _parse_platform_action(self, action: Any) -> int:
        j = int(np.asarray(action).reshape(-1)[0])
        if not 0 <= j < len(self.strategies):
            raise ValueError(f"platform action must be in [0, {len(self.strategies)}), got {j}")
        return j

    def _parse_creator_action(self, action: Any) -> tuple[np.ndarray, float]:
        d = self.n_topics
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.size != d + 1 or not np.isfinite(a).all():
            raise ValueError(f"creator action must be {d + 1} finite numbers, got {action!r}")
        a = np.clip(a, 0.0, 1.0)
        weights = a[:d]
        total = weights.sum()
        topics = weights / total if total > 0 else np.full(d, 1.0 / d)
        return topics, float(a[d])

    def _sessions(self, active: np.ndarray, platform: np.ndarray) -> _Tally:
        """Session steps of the tick: every platform's visitors in one ``serve`` per step."""
        world = self.world
        tally = _Tally.start(world.n_users, platform, self.n_platforms)
        users, plat = active, platform
        for step in range(world.scenario.session.max_steps):
            if users.size == 0:
                break
            order = np.argsort(plat, kind="stable")
            users, plat = users[order], plat[order]
            fb = world.serve(users, self._recommend(users, plat), step)
            self._learn(fb, plat, tally)
            keep = ~fb.ended_session
            users, plat = users[keep], plat[keep]
        return tally

    def _recommend(self, users: np.ndarray, plat: np.ndarray) -> np.ndarray:
        """Slates of ``users`` (sorted by platform), each from its platform's strategy."""
        parts = []
        for p in range(self.n_platforms):
            mine = users[plat == p]
            if mine.size:
                policy = self._policies[p][self._strategy_of[p]]
                parts.append(policy.recommend(self.world.request(mine)))
        return np.concatenate(parts)

    def _learn(self, fb: Feedback, plat: np.ndarray, tally: _Tally) -> None:
        """Every strategy of a platform learns from that platform's share of ``fb``."""
        value = np.where(fb.clicked, (nan_to(fb.rating, 1.0) - 1.0) / 4.0, 0.0)
        tally.score[fb.users] += value
        for p in range(self.n_platforms):
            rows = np.flatnonzero(plat == p)
            if rows.size == 0:
                continue
            sub = _subset(fb, rows)
            for policy in self._policies[p]:
                policy.update(sub)
            tally.clicks[p] += sub.clicked.sum()
            tally.rating_sum[p] += value[rows].sum()
            tally.impressions[p] += rows.size

    def _note_tick(self, active: np.ndarray, platform: np.ndarray, tally: _Tally) -> None:
        """The statistics the next observations show."""
        P, satisfaction = self.n_platforms, self.choice.satisfaction
        self._share = tally.visitors / max(active.size, 1)
        self._ctr = np.divide(
            tally.clicks, tally.impressions, out=np.zeros(P), where=tally.impressions > 0
        )
        for p in range(P):
            who = active[platform == p]
            pool = satisfaction[who, p] if who.size else satisfaction[:, p]
            self._mean_sat[p] = float(pool.mean()) if pool.size else self.initial_satisfaction
        cs, C = self.world.creators, self.n_creator_agents
        total_exp, total_con = cs.exposure.sum(), cs.consumption.sum()
        exp_c, con_c = cs.exposure[:C], cs.consumption[:C]
        self._exp_share = exp_c / total_exp if total_exp > 0 else np.zeros_like(exp_c)
        self._con_share = con_c / total_con if total_con > 0 else np.zeros_like(con_c)
        if cs.trend is not None:
            self._trend = cs.trend

    def _rewards(
        self, tally: _Tally, efforts: np.ndarray
    ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        rewards: dict[str, float] = {}
        infos: dict[str, dict[str, Any]] = {}
        for p, a in enumerate(self.platforms):
            rewards[a] = float(tally.clicks[p] + self.rating_weight * tally.rating_sum[p])
            infos[a] = {
                "strategy": self.strategies[self._strategy_of[p]][0],
                "visitors": int(tally.visitors[p]),
                "clicks": int(tally.clicks[p]),
                "impressions": int(tally.impressions[p]),
            }
        cs = self.world.creators
        for c, a in enumerate(self.creator_agents):
            cost = self.effort_cost * efforts[c] * cs.published[c]
            rewards[a] = float(self.exposure_weight * cs.exposure[c] + cs.consumption[c] - cost)
            infos[a] = {
                "published": int(cs.published[c]),
                "exposure": int(cs.exposure[c]),
                "consumption": int(cs.consumption[c]),
            }
        return rewards, infos

    def _end_step(self, rewards: dict[str, float], infos: dict[str, dict[str, Any]]) -> StepResult:
        """Creator agents whose creator quit terminate; everyone truncates at ``max_cycles``."""
        still = self.world.creators.active[: self.n_creator_agents].copy()
        quit_ = ~still & self._creator_alive
        self._creator_alive &= still
        truncated = self.cycle >= self.max_cycles
        terminations = {a: False for a in self.agents}
        for c, a in enumerate(self.creator_agents):
            if a in terminations and quit_[c]:
                terminations[a] = True
        truncations = {a: truncated for a in self.agents}
        live = list(self.agents)
        obs = self._observations(live)
        rewards = {a: rewards[a] for a in live}
        infos = {a: infos[a] for a in live}
        self.agents = [a for a in live if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, infos

    def _observations(self, agents: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        world = self.world
        catalog = float(world.items.available.sum()) / world.items.capacity
        progress = min(self.cycle / max(self.max_cycles, 1), 1.0)
        obs: dict[str, np.ndarray] = {}
        for p, a in enumerate(self.platforms):
            obs[a] = np.array(
                [self._share[p], self._ctr[p], self._mean_sat[p], catalog, progress],
                dtype=np.float32,
            )
        for c, a in enumerate(self.creator_agents):
            obs[a] = np.concatenate(
                [
                    [self._exp_share[c], self._con_share[c]],
                    self._creator_topics[c],
                    self._trend,
                ]
            ).astype(np.float32)
        for a in obs:
            np.clip(obs[a], 0.0, 1.0, out=obs[a])
        keep = self.agents if agents is None else agents
        return {a: obs[a] for a in keep}


def _strategy(spec: StrategySpec) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    name, kwargs = spec
    return str(name), dict(kwargs)


def _n_creators(sc: Scenario) -> int:
    """Creators of the scenario's catalog (the world is the authority; this sizes capacity)."""
    return int(sc.catalog.n_creators) if sc.catalog.source == "synthetic" else 0


def _subset(fb: Feedback, rows: np.ndarray) -> Feedback:
    return Feedback(
        tick=fb.tick,
        users=fb.users[rows],
        slates=fb.slates[rows],
        chosen_pos=fb.chosen_pos[rows],
        chosen_item=fb.chosen_item[rows],
        rating=fb.rating[rows],
        ended_session=fb.ended_session[rows],
        item_features=fb.item_features,
    )


def parallel_env(**kwargs: Any) -> EcosystemEnv:
    """The ecosystem as a PettingZoo ``ParallelEnv`` (keyword arguments of `EcosystemEnv`)."""
    return EcosystemEnv(**kwargs)


def raw_env(**kwargs: Any) -> AECEnv[str, np.ndarray, Any]:
    """The ecosystem as an AEC env (``parallel_to_aec`` of `parallel_env`)."""
    return parallel_to_aec(parallel_env(**kwargs))


def env(**kwargs: Any) -> AECEnv[str, np.ndarray, Any]:
    """The AEC env (``parallel_to_aec`` already enforces the call order)."""
    return raw_env(**kwargs)
