"""The batched session machinery shared by the single environments and the vector environment.

`SessionCore` owns one `World` (driven through ``begin_tick``/``request``/``serve``/``end_tick``
with no world policy), a base recommender (the candidate retriever of the session mode, the
recommender whose exploration is tuned in the exploration mode), an `ObservationBuilder` and
``n_sessions`` *slots*, each holding one user's session. Every step serves all slots with ONE
``world.serve`` call, so the decider is called once per step however many sessions run.

Scheduling: the users who open the app in a tick are served one session each, in id order;
when they run out the tick ends (churn, metrics) and the next begins. With several slots a
session may straddle the tick boundary; it then continues in the new tick (and ends after its
next slate if its user churned meanwhile). Users who open the app while a slot holds them are
skipped for that tick. The world runs past ``scenario.ticks``: the population persists.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from agents import emotion as emo
from agents.deciders import UtilityDecider
from policies.base import Feedback, Recommender, RecommendRequest
from scenarios import Scenario, load
from simenv import kernels
from simenv.arrays import nan_to, one_user_kernels, unit_rows_clipped
from simenv.envs.observation import ObservationBuilder, item_age_feature, recent_stats
from simenv.world import World

Mode = Literal["session", "exploration"]

#: Default menu of the discrete exploration env: share of slate slots given to novel items.
EXPLORE_LEVELS = (0.0, 0.1, 0.25, 0.5, 1.0)

REWARD_TERMS = ("click", "rating", "diversity", "continue", "leave", "churn", "return")

DEFAULT_REWARD: dict[str, dict[str, float]] = {
    "session": {"click": 1.0, "rating": 0.5},
    "exploration": {
        "click": 1.0,
        "rating": 0.5,
        "continue": 0.2,
        "leave": 1.0,
        "churn": 1.0,
        "return": 0.5,
    },
}

#: The metrics an environment's world records at the end of each tick (`World.metric_rows`;
#: `recloop train` logs them at evaluations). The others (homogenization, catalog coverage...)
#: cost more per tick than the session steps of a tick: scenario runs measure them.
ENV_METRICS = ("ctr", "session_length", "intra_list_diversity", "churn_rate", "return_rate")

SMALL_OVERRIDES = [
    "population.size=100",
    "catalog.n_items=150",
    "catalog.n_creators=10",
    "ticks=5",
]


def reward_weights(mode: Mode, reward: dict[str, float] | None) -> dict[str, float]:
    """The mode's default weights updated by ``reward``; unknown terms are a ValueError."""
    unknown = sorted(set(reward or {}) - set(REWARD_TERMS))
    if unknown:
        raise ValueError(f"unknown reward terms {unknown}; terms: {', '.join(REWARD_TERMS)}")
    weights = dict.fromkeys(REWARD_TERMS, 0.0)
    weights.update(DEFAULT_REWARD[mode])
    weights.update({k: float(v) for k, v in (reward or {}).items()})
    return weights


def resolve_duplicates(actions: np.ndarray, n_candidates: int) -> np.ndarray:
    """Candidate indices (n, k) with repeats replaced deterministically.

    Slots are read left to right; an index already used in the row is replaced by the first
    candidate (in candidate order, i.e. the retriever's best first) not yet in the slate.
    """
    a = np.array(actions, dtype=np.int64, ndmin=2)
    n, k = a.shape
    if k > n_candidates:
        raise ValueError(f"slate of {k} items cannot be drawn from {n_candidates} candidates")
    if n == 1 and k:  # one session: a Python loop over k slots beats the array bookkeeping
        row = a[0].tolist()
        if min(row) < 0 or max(row) >= n_candidates:
            raise ValueError(f"candidate indices must be in [0, {n_candidates}), got {[row]}")
        if len(set(row)) == k:  # no repeat: the (new) array as it is
            return a
        a[0] = _distinct_row(row, n_candidates)
        return a
    if a.size and (a.min() < 0 or a.max() >= n_candidates):
        raise ValueError(f"candidate indices must be in [0, {n_candidates}), got {a.tolist()}")
    rows = np.arange(n)
    used = np.zeros((n, n_candidates), dtype=bool)
    out = np.empty_like(a)
    for j in range(k):
        idx = a[:, j].copy()
        dup = used[rows, idx]
        if dup.any():
            idx[dup] = np.argmin(used[dup], axis=1)  # first False = first unused candidate
        used[rows, idx] = True
        out[:, j] = idx
    return out


def _distinct_row(row: list[int], n_candidates: int) -> list[int]:
    """`resolve_duplicates` of one row (the first unused candidate found by a cursor that
    only moves forward: candidates below it are all used)."""
    used: set[int] = set()
    out = []
    free = 0
    for idx in row:
        if idx in used:
            while free in used:
                free += 1
            idx = free
        used.add(idx)
        out.append(idx)
    return out


def intra_list_diversity(slates: np.ndarray, item_features: np.ndarray) -> np.ndarray:
    """Mean pairwise (1 − cosine) of the items of each slate (n,), in [0, 2]."""
    unit = unit_rows_clipped(item_features[slates])  # (n, k, d)
    k = slates.shape[1]
    if k < 2:
        return np.zeros(slates.shape[0], dtype=np.float32)
    total = unit.sum(axis=1)
    mean_cos = (np.einsum("nd,nd->n", total, total) - k) / (k * (k - 1))
    return (1.0 - mean_cos).astype(np.float32)


class Scheduler:
    """Hands out the next user to serve, advancing the world's ticks as needed."""

    def __init__(self, world: World, max_idle_ticks: int = 1000) -> None:
        self.world = world
        self.active: np.ndarray | None = None
        self.queue: deque[int] = deque()
        self.max_idle_ticks = max_idle_ticks

    def next_user(self, busy: set[int]) -> int:
        """The next user not in ``busy`` (added to ``busy``), beginning ticks as needed."""
        return self.next_users(1, busy)[0]

    def next_users(self, count: int, busy: set[int]) -> list[int]:
        """The next ``count`` users not in ``busy``, in order (each is added to ``busy``); the
        same as ``count`` calls of `next_user`, without a call per user."""
        out: list[int] = []
        idle = 0
        while len(out) < count:
            if idle == self.max_idle_ticks:
                raise RuntimeError(
                    f"no free user opened the app in {self.max_idle_ticks} ticks ({len(busy)} "
                    f"sessions running, {int(self.world.users.present.sum())} users present)"
                )
            queue, present = self.queue, self.world.users.present
            if count > 64:  # many lookups: a list answers them faster than the array
                present = present.tolist()
            popleft, take, need = queue.popleft, out.append, count - len(out)
            while queue and need:
                u = popleft()
                if u not in busy and present[u]:
                    busy.add(u)
                    take(u)
                    need -= 1
                    idle = 0
            if need:
                self.advance()
                idle += 1
        return out

    def advance(self) -> None:
        """End the running tick (if any) and begin the next one."""
        if self.active is not None:
            self.world.end_tick(self.active)
        self.active = self.world.begin_tick()
        self.queue.extend(self.active.tolist())


class SessionCore:
    """``n_sessions`` concurrent sessions on one world; see the module docstring."""

    def __init__(
        self,
        scenario: str | Path | Scenario = "filter_bubble",
        overrides: list[str] | None = None,
        *,
        n_sessions: int = 1,
        mode: Mode = "session",
        max_steps: int | None = None,
        reward: dict[str, float] | None = None,
        retriever: str = "popularity",
        retriever_kwargs: dict[str, Any] | None = None,
        n_candidates: int | None = None,
        explore_levels: tuple[float, ...] | list[float] = EXPLORE_LEVELS,
        continuous: bool = False,
    ) -> None:
        if mode not in ("session", "exploration"):
            raise ValueError(f"mode must be 'session' or 'exploration', got {mode!r}")
        if n_sessions < 1:
            raise ValueError(f"n_sessions must be at least 1, got {n_sessions}")
        self.scenario = load(scenario, overrides)
        self.mode: Mode = mode
        self.n = int(n_sessions)
        self.max_steps = int(max_steps or self.scenario.session.max_steps)
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.weights = reward_weights(mode, reward)
        self.retriever = retriever
        self.retriever_kwargs = dict(retriever_kwargs or {})
        import policies

        # fail early on unknown names or parameters, and on the oracle (no utilities here)
        policies.check_deployable(policies.make(retriever, **self.retriever_kwargs), "retriever")
        self.continuous = bool(continuous)
        self.explore_levels = np.asarray(explore_levels, dtype=np.float64)
        if self.explore_levels.size == 0 or np.any(
            (self.explore_levels < 0) | (self.explore_levels > 1)
        ):
            raise ValueError(f"explore_levels must be shares in [0, 1], got {explore_levels}")

        probe = self._new_world(0)  # sizes for the spaces; reset builds the world
        spec = probe.spec
        self.k, self.d = spec.k, spec.n_features
        n_avail = int(probe.items.available.sum())
        self.n_candidates = int(n_candidates or min(3 * self.k, n_avail))
        if not self.k <= self.n_candidates <= n_avail:
            raise ValueError(
                f"n_candidates must be between the slate size ({self.k}) and the number of "
                f"available items ({n_avail}), got {self.n_candidates}"
            )
        self.observation_space, self.action_space = self._spaces(
            ObservationBuilder(spec, self.max_steps)
        )
        self.world: World | None = None
        self.users = np.full(self.n, -1, dtype=np.int64)
        self.steps = np.zeros(self.n, dtype=np.int64)
        self.cands = np.zeros((self.n, self.n_candidates), dtype=np.int64)
        self._ages: np.ndarray | None = None
        self._age_features = np.zeros(0, dtype=np.float32)

    # ------------------------------------------------------------------ spaces
    def _spaces(self, builder: ObservationBuilder) -> tuple[spaces.Dict, spaces.Space[Any]]:
        obs = builder.space()
        action: spaces.Space[Any]
        if self.mode == "session":
            c, d = self.n_candidates, self.d
            obs = spaces.Dict(
                {
                    **obs.spaces,
                    "cand_features": spaces.Box(-1.0, 1.0, (c, d), np.float32),
                    "cand_popularity": spaces.Box(0.0, 1.0, (c,), np.float32),
                    "cand_age": spaces.Box(0.0, 1.0, (c,), np.float32),
                }
            )
            action = spaces.MultiDiscrete([c] * self.k)
        elif self.continuous:
            action = spaces.Box(0.0, 1.0, (1,), np.float32)
        else:
            action = spaces.Discrete(len(self.explore_levels))
        return obs, action

    # ------------------------------------------------------------------ lifecycle
    def _new_world(self, seed: int) -> World:
        """A world of the scenario with no policy (the agent recommends) and the fast utility
        users, whatever ``decider.kind`` says (``decider.utility`` includes a calibrated fit)."""
        decider = UtilityDecider(self.scenario.decider.utility)
        return World(self.scenario, None, seed=seed, decider=decider, metrics=ENV_METRICS)

    def build(self, seed: int) -> None:
        """A fresh world (and base recommender and observation builder) for ``seed``."""
        import policies

        self.world = self._new_world(int(seed))
        self.rng = self.world.rngs["env"]
        self.base: Recommender = policies.make(self.retriever, **self.retriever_kwargs)
        self.base.reset(self.world.spec, self.world.rngs["policy"])
        self.builder = ObservationBuilder(self.world.spec, self.max_steps)
        self.scheduler = Scheduler(self.world)
        self.users[:] = -1
        self.steps[:] = 0

    def reset(self, seed: int | None = None) -> None:
        """New sessions in every slot; a new world if ``seed`` is given or none exists yet."""
        if seed is not None or self.world is None:
            if seed is None:
                seed = int(np.random.SeedSequence().entropy % (2**31))  # type: ignore[operator]
            self.build(seed)
        self.reset_slots(np.arange(self.n))

    def reset_slots(self, slots: np.ndarray) -> None:
        """Give each of ``slots`` the next user, starting a new session."""
        slots = np.asarray(slots, dtype=np.int64)
        busy = set(self.users[self.users >= 0].tolist())
        busy.difference_update(self.users[slots].tolist())
        self.users[slots] = self.scheduler.next_users(slots.size, busy)
        self.steps[slots] = 0

    @property
    def tick(self) -> int:
        return self._world.tick

    @property
    def _world(self) -> World:
        if self.world is None:
            raise RuntimeError("call reset() first")
        return self.world

    # ------------------------------------------------------------------ observing
    def observe(self, slots: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Observations of all slots, with fresh candidates; or, for the final observation of
        finished sessions, of ``slots`` only, with the candidates their last slate came from."""
        sel = np.arange(self.n) if slots is None else np.asarray(slots, dtype=np.int64)
        # session mode: the request asks for the candidates (`candidates` then needs no copy)
        k = self.n_candidates if self.mode == "session" else None
        request = self._world.request(self.users[sel], k)
        unit = self._world.items.unit_clipped()
        obs = self.builder.observe(request, self.steps[sel], unit)
        if self.mode == "session":
            if slots is None:
                self.cands = cands = self.candidates(request)
            else:
                cands = self.cands[sel]
            obs["cand_features"] = unit.take(cands, axis=0)  # = unit[cands], faster
            obs["cand_popularity"] = self.builder.item_popularity(cands)
            obs["cand_age"] = self._age_feature(request.item_age).take(cands)
        return obs

    def _age_feature(self, item_age: np.ndarray) -> np.ndarray:
        """`item_age_feature` of every item, kept while the world hands out the same ages
        (`ItemStore.age` is computed once per tick and catalog size)."""
        if self._ages is not item_age:
            self._ages, self._age_features = item_age, item_age_feature(item_age)
        return self._age_features

    def candidates(self, request: RecommendRequest) -> np.ndarray:
        """(n, C) candidate item ids: the base recommender's top C, best first."""
        c = self.n_candidates
        n_available = np.count_nonzero(request.available)  # a bool array's sum, much faster
        if n_available < c:
            raise RuntimeError(
                f"only {n_available} items are available, fewer than the "
                f"{c} candidates of the action space"
            )
        if request.k != c:
            request = replace(request, k=c)
        return np.asarray(self.base.recommend(request), dtype=np.int64)

    # ------------------------------------------------------------------ acting
    def shares(self, actions: np.ndarray) -> np.ndarray:
        """Exploration share (n,) of each slot from the agent's actions."""
        a = np.asarray(actions)
        if self.continuous:
            return np.clip(a.reshape(self.n, -1)[:, 0].astype(np.float64), 0.0, 1.0)
        return self.explore_levels[a.reshape(self.n).astype(np.int64)]

    def explore(self, request: RecommendRequest, slates: np.ndarray, shares: np.ndarray) -> None:
        explore_slates(request, slates, shares, self.rng, self._world.items.unit_clipped())

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Serve every slot one slate; returns rewards, terminated, truncated, infos (no reset)."""
        world = self._world
        users = self.users.copy()
        if self.mode == "session":
            a = np.asarray(actions).reshape(self.n, self.k)
            idx = resolve_duplicates(a, self.n_candidates)
            if self.n == 1:
                slates = self.cands[0][idx]  # (1, k), as below
            else:
                slates = self.cands[np.arange(self.n)[:, None], idx]  # = take_along_axis(.., 1)
            shares = np.zeros(self.n)
        else:
            request = world.request(users)
            shares = self.shares(actions)
            slates = np.asarray(self.base.recommend(request), dtype=np.int64).copy()
            self.explore(request, slates, shares)
        fb = world.serve(users, slates, int(self.steps.min()))
        self.base.update(fb)
        self.builder.update(fb)
        self.steps += 1
        terminated = fb.ended_session | ~world.users.present[users]
        truncated = (self.steps >= self.max_steps) & ~terminated
        rewards = self.reward(fb, terminated | truncated)
        if self.n == 1:
            return rewards, terminated, truncated, [self._info_one(fb, int(users[0]), shares)]
        clicked = fb.clicked
        rating = np.where(clicked, nan_to(fb.rating, 0.0), 0.0)  # 0 = no rating
        tick = int(fb.tick)
        rows = zip(
            users.tolist(),
            fb.slates,
            clicked.tolist(),
            fb.chosen_item.tolist(),
            rating.tolist(),
            shares.tolist(),
            strict=True,
        )
        infos = [
            {
                "user": u,
                "tick": tick,
                "slate": slate,
                "clicked": c,
                "item": item,
                "rating": r,
                "explore_share": share,
            }
            for u, slate, c, item, r, share in rows
        ]
        return rewards, terminated, truncated, infos

    def _info_one(self, fb: Feedback, user: int, shares: np.ndarray) -> dict[str, Any]:
        """The info dict of `step` for one slot (a single env's step), from scalars."""
        clicked = bool(fb.chosen_pos[0] >= 0)
        rating = float(fb.rating[0]) if clicked else 0.0
        return {
            "user": user,
            "tick": int(fb.tick),
            "slate": fb.slates[0],
            "clicked": clicked,
            "item": int(fb.chosen_item[0]),
            "rating": 0.0 if rating != rating else rating,  # NaN: no rating
            "explore_share": float(shares[0]),
        }

    def reward(self, fb: Feedback, done: np.ndarray) -> np.ndarray:
        """Weighted sum of the reward terms (see the environments' docstrings), (n,) float32."""
        if fb.users.size == 1 and not self.weights["diversity"]:
            return self._reward_one(fb, bool(done[0]))
        return self._reward_rows(fb, done)

    def _reward_one(self, fb: Feedback, done: bool) -> np.ndarray:
        """`reward` of one slot (a single env's step) without the diversity term: the terms
        added to a float64 scalar with numpy's dtypes (the rating term a float32 product, as
        a Python float times a float32 array); the end-of-episode terms, when ``done``, by the
        arrays' expressions."""
        w, f32 = self.weights, np.float32
        clicked, ended = bool(fb.chosen_pos[0] >= 0), bool(fb.ended_session[0])
        r = w["click"] * float(clicked)
        if w["rating"]:
            stars = f32(fb.rating[0])
            value = (f32(3.0) if np.isnan(stars) else stars) - f32(3.0)
            r += float(f32(w["rating"]) * (value / f32(2.0) if clicked else f32(0.0)))
        if w["continue"]:
            r += w["continue"] * float(not ended)
        if w["leave"]:
            r -= w["leave"] * float(ended and int(self.steps[0]) < self.max_steps)
        if done and (w["churn"] or w["return"]):
            return self._end_terms(np.array([r]), fb, np.array([True])).astype(np.float32)
        return np.array([r], dtype=np.float32)

    def _reward_rows(self, fb: Feedback, done: np.ndarray) -> np.ndarray:
        """`reward` as arrays over the slots of ``fb``."""
        w = self.weights
        clicked = fb.clicked
        r = w["click"] * clicked.astype(np.float64)
        if w["rating"]:
            r += w["rating"] * np.where(clicked, (nan_to(fb.rating, 3.0) - 3.0) / 2, 0)
        if w["diversity"]:
            r += w["diversity"] * intra_list_diversity(fb.slates, fb.item_features)
        if w["continue"]:
            r += w["continue"] * ~fb.ended_session
        if w["leave"]:
            r -= w["leave"] * (fb.ended_session & (self.steps < self.max_steps))
        if (w["churn"] or w["return"]) and done.any():
            r = self._end_terms(r, fb, done)
        return r.astype(np.float32)

    def _end_terms(self, r: np.ndarray, fb: Feedback, done: np.ndarray) -> np.ndarray:
        """``r`` (float64, modified) with the churn and return terms of the ``done`` slots."""
        w, world = self.weights, self._world
        users = fb.users[done]
        params = world.scenario.emotion
        if w["churn"]:
            r[done] -= w["churn"] * emo.exit_prob(world.users.emotion, users, params)
        if w["return"]:  # the ending users' entries only, not the whole population's
            scale = world.scenario.population.activity_scale
            activity = world.users.persona.activity[users] * scale
            p = emo.activation_prob(world.users.emotion, activity, params, users)
            r[done] += w["return"] * p
        return r


def explore_slates(
    request: RecommendRequest,
    slates: np.ndarray,
    shares: np.ndarray,
    rng: np.random.Generator,
    item_unit: np.ndarray | None = None,
) -> None:
    """Replace the last ``share·k`` slots (stochastic rounding) of each slate, in place, by
    items novel to the user: not in the slate or the recent history and at most as similar
    to the user's recent topic profile as the median available item; drawn uniformly with
    ``rng`` (users without history get uniformly random items). ``item_unit``: as in
    `recent_stats`."""
    n, k = slates.shape
    if n == 1:  # one slate (a single env's step): the same draw and rounding on scalars
        m_one = min(max(int(np.floor(shares[0] * k + rng.random(1)[0])), 0), k)
        if m_one > 0:
            _explore_one(request, slates[0], m_one, rng, item_unit)
        return
    m = np.floor(shares * k + rng.random(n)).astype(np.int64).clip(0, k)

    rows = np.flatnonzero(m > 0)
    if rows.size == 0:
        return
    _explore_rows(request, slates, m, rows, rng, item_unit)


def _explore_rows(
    request: RecommendRequest,
    slates: np.ndarray,
    m: np.ndarray,
    rows: np.ndarray,
    rng: np.random.Generator,
    item_unit: np.ndarray | None,
) -> None:
    """`explore_slates` as arrays: ``m[i]`` novel items into each slate ``i`` of ``rows``."""
    k = slates.shape[1]
    ids = np.flatnonzero(request.available)
    col = np.full(request.available.size, -1, dtype=np.int64)
    col[ids] = np.arange(ids.size)
    profile = recent_stats(replace(request, recent=request.recent[rows]), item_unit)[0]
    unit = unit_rows_clipped(request.item_features[ids]) if item_unit is None else item_unit[ids]
    sims = profile @ unit.T  # (rows, available)
    kth = (ids.size - 1) // 2
    median = np.partition(sims, kth, axis=1)[:, kth]
    novel = sims <= median[:, None]
    r = np.arange(rows.size)[:, None]
    shown = col[slates[rows]]
    novel[r, shown] = False
    recent = col[np.maximum(request.recent[rows], 0)]
    novel[r, np.where((request.recent[rows] >= 0) & (recent >= 0), recent, shown[:, :1])] = False
    keys = np.where(novel, rng.random(sims.shape), np.inf)
    part = np.argpartition(keys, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
    picks = ids[np.take_along_axis(part, order, axis=1)]  # (rows, k) random novel items
    m_rows = np.minimum(m[rows], novel.sum(axis=1))
    t = np.arange(k)[None, :] - (k - m_rows)[:, None]  # index into picks for replaced slots
    take = t >= 0
    sub = slates[rows]
    sub[take] = picks[np.broadcast_to(r, t.shape)[take], t[take]]
    slates[rows] = sub


def _explore_one(
    request: RecommendRequest,
    slate: np.ndarray,
    m: int,
    rng: np.random.Generator,
    item_unit: np.ndarray | None,
) -> None:
    """`explore_slates` of one slate (a single env's step) that gets ``m`` > 0 novel items:
    the same similarities, median, random draws and picks, with the slate's and the history's
    items found by binary search in the available ids instead of an id -> column table. With
    float32 unit features of two or more columns (the world's) the profile and the picks are
    compiled (`kernels.recent_profile_one`, `kernels.explore_one`); the similarities stay a
    numpy product."""
    k = slate.size
    ids = np.flatnonzero(request.available)
    d = request.item_features.shape[1]
    if item_unit is not None and d > 1 and one_user_kernels(item_unit):
        profile = np.empty((1, d), dtype=np.float32)
        kernels.recent_profile_one(item_unit, request.recent[0], profile[0])
        # every item up to the last available one is available: the leading rows as they
        # are (the same contiguous values as the gathered copy, so the same product)
        whole = ids.size and ids[-1] == ids.size - 1
        unit = item_unit[: ids.size] if whole else item_unit[ids]
        sims = profile @ unit.T  # (1, available)
        kernels.explore_one(sims[0], ids, slate, request.recent[0], rng.random(sims.shape)[0], m)
        return
    profile = recent_stats(request, item_unit)[0]  # (1, d)
    unit = unit_rows_clipped(request.item_features[ids]) if item_unit is None else item_unit[ids]
    sims = profile @ unit.T  # (1, available)
    kth = (ids.size - 1) // 2
    novel = sims[0] <= np.partition(sims[0], kth)[kth]
    novel[np.searchsorted(ids, slate)] = False  # the slate's items are available
    recent = request.recent[0]
    at = np.minimum(np.searchsorted(ids, recent), ids.size - 1)
    novel[at[(recent >= 0) & (ids[at] == recent)]] = False  # recent items still available
    keys = np.where(novel, rng.random(sims.shape)[0], np.inf)
    part = np.argpartition(keys, k - 1)[:k]
    picks = ids[part[np.argsort(keys[part])]]  # the k smallest keys: random novel items
    m = min(m, int(novel.sum()))
    if m:
        slate[k - m :] = picks[:m]
