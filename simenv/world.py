"""The world: users, items, creators, a social graph and one recommender, ticking.

One tick (`World.step`) is the story in docs/architecture.md:

1. items      creators publish (cold start) and adapt to exposure; items age and retire
2. activation leavers may return; present users open the app by activity and emotion
3. recommend  the policy returns a slate per user in a session      ┐ repeated for up to
4. decide     the decider answers for every user at once            │ ``session.max_steps``
5. update     memory, emotion, taste drift, sharing with friends    │ slates, while users
6. feedback   the log gets one row per impression; policy.update    ┘ stay in the session
7. churn and measure: unhappy users may leave; the tick's metrics are appended

Hot state lives in arrays indexed by user or item id; `UserAgent`/`ItemAgent`/`CreatorAgent`
are mesa agents that view those arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mesa
import numpy as np
import pandas as pd
from mesa.agent import AgentSet

from agents import emotion as emo
from agents.deciders import Decider, DecisionContext, Decisions, UtilityDecider
from agents.items import CreatorAgent, ItemAgent, adapt_topics, creator_exposure, exposure_trend
from agents.memory import MemoryKind, MemoryStore
from agents.users import UserAgent
from policies.base import Feedback, PlatformSpec, Recommender, RecommendRequest
from policies.selection import InvalidSlatesError, valid_slates
from scenarios.schema import Scenario
from simenv import metrics as metrics_registry
from simenv.arrays import ring_slots, unit_rows
from simenv.catalog import new_items_for_creators
from simenv.items import ItemStore
from simenv.log import InteractionLog
from simenv.metrics.context import MetricContext
from simenv.population import Population, build_population
from simenv.rng import RngTree
from simenv.social import fan_out


class PolicyError(RuntimeError):
    """A recommender returned something the world cannot serve."""


@dataclass
class CreatorState:
    topics: np.ndarray  # (C, d) current topic profiles
    active: np.ndarray  # (C,) bool
    idle_ticks: np.ndarray  # (C,) ticks in a row without exposure


@dataclass
class TickBuffer:
    """Impressions of the current tick, gathered for the metrics."""

    users: list[np.ndarray] = field(default_factory=list)
    slates: list[np.ndarray] = field(default_factory=list)
    chosen: list[np.ndarray] = field(default_factory=list)
    rating: list[np.ndarray] = field(default_factory=list)

    def add(self, fb: Feedback) -> None:
        self.users.append(fb.users)
        self.slates.append(fb.slates)
        self.chosen.append(fb.chosen_item)
        self.rating.append(fb.rating)


class World(mesa.Model):
    """A recommendation ecosystem under one policy and one seed."""

    def __init__(
        self,
        scenario: Scenario,
        policy: Recommender | None,
        *,
        seed: int = 0,
        decider: Decider | None = None,
        population: Population | None = None,
    ) -> None:
        self.rngs = RngTree(seed)
        super().__init__(rng=self.rngs["mesa"])
        self.scenario = scenario
        self.seed = seed
        self._buffer = TickBuffer()
        self._returned = np.zeros(0, dtype=np.int64)
        self.tick = 0
        self.policy = policy
        self.decider = decider or UtilityDecider(scenario.decider.utility)
        pop = population or build_population(scenario, self.rngs)
        self._init_items(pop)
        self._init_users(pop)
        self._lengths = np.zeros(self.n_users, dtype=np.int64)
        self.social = pop.social
        self.log = InteractionLog(scenario.log_interactions)
        self.metric_names = scenario.metrics or metrics_registry.available()
        self.metric_rows: list[dict[str, float]] = []
        self.spec = PlatformSpec(
            n_users=self.n_users,
            n_items=self.items.capacity,
            n_features=self.items.n_features,
            k=scenario.session.slate_size,
            history=scenario.session.history,
        )
        if self.spec.k > int(self.items.available.sum()):
            raise ValueError(
                f"session.slate_size ({self.spec.k}) is larger than the catalog "
                f"({int(self.items.available.sum())} items)"
            )
        if policy is not None:
            policy.reset(self.spec, self.rngs["policy"])

    # ------------------------------------------------------------------ construction

    def _init_items(self, pop: Population) -> None:
        cat, cfg = pop.catalog, self.scenario.creators
        n_creators = cat.n_creators
        extra = 0
        if cfg.enabled:
            mean = n_creators * cfg.publish_rate * self.scenario.ticks
            extra = int(np.ceil(mean + 6 * np.sqrt(mean + 1) + 16))
        self.items = ItemStore(cat, len(cat) + extra)
        topics = cat.creator_topics
        if topics is None:
            topics = np.full((n_creators, cat.n_topics), 1.0 / cat.n_topics, dtype=np.float32)
        self.creators = CreatorState(
            topics=np.asarray(topics, dtype=np.float32),
            active=np.ones(n_creators, dtype=bool),
            idle_ticks=np.zeros(n_creators, dtype=np.int64),
        )
        ItemAgent.create_agents(self, self.items.size, item_id=np.arange(self.items.size))
        CreatorAgent.create_agents(self, n_creators, creator_id=np.arange(n_creators))

    def _init_users(self, pop: Population) -> None:
        s = self.scenario.session
        self.persona = pop.persona
        n, d = len(pop.persona), self.items.n_features
        self.n_users = n
        self.taste = pop.persona.taste.astype(np.float32, copy=True)
        self.taste_initial = self.taste.copy()
        self.emotion = emo.EmotionState.initial(pop.persona.curiosity)
        self.present = np.ones(n, dtype=bool)
        self.memory = MemoryStore(n, s.memory)
        self.recent = np.full((n, s.history), -1, dtype=np.int64)
        self.recent_ptr = np.zeros(n, dtype=np.int64)
        self.recent_profile = np.zeros((n, d), dtype=np.float32)
        self.inbox = np.full((n, self.scenario.social.inbox), -1, dtype=np.int64)
        self.inbox_ptr = np.zeros(n, dtype=np.int64)
        self.genre_history = np.zeros((n, d), dtype=np.float32)
        UserAgent.create_agents(self, n, user_id=np.arange(n))

    @property
    def user_agents(self) -> AgentSet:
        return self.agents_by_type[UserAgent]

    @property
    def item_agents(self) -> AgentSet:
        return self.agents_by_type[ItemAgent]

    @property
    def creator_agents(self) -> AgentSet:
        return self.agents_by_type[CreatorAgent]

    # ------------------------------------------------------------------ the tick

    def step(self) -> None:
        """One tick with the world's own policy: the story in the module docstring."""
        if self.policy is None:
            raise RuntimeError("this world has no policy: drive it with begin_tick/serve/end_tick")
        active = self.begin_tick()
        in_session = active
        for step in range(self.scenario.session.max_steps):
            if in_session.size == 0:
                break
            slates = self.policy.recommend(self.request(in_session))
            last = step == self.scenario.session.max_steps - 1
            feedback = self.serve(in_session, slates, step, last_step=last)
            self.policy.update(feedback)
            in_session = in_session[~feedback.ended_session]
        self.end_tick(active)

    # The tick in public phases, for environments that put an RL agent in the policy's place:
    # begin_tick() -> request()/serve() for any users, any number of times -> end_tick(active).

    def begin_tick(self) -> np.ndarray:
        """Items and activation phases; returns the ids of the users who open the app."""
        self._items_phase(self.tick)
        active, self._returned = self._activation_phase(self.tick)
        self._buffer = TickBuffer()
        self._lengths = np.zeros(self.n_users, dtype=np.int64)
        return active

    def request(self, users: np.ndarray) -> RecommendRequest:
        """What a recommender may see about ``users`` now."""
        return RecommendRequest(
            tick=self.tick,
            users=users,
            k=self.spec.k,
            item_features=self.items.features,
            available=self.items.available,
            item_age=self.items.age(self.tick),
            recent=self.recent[users],
            social=self.social,
        )

    def serve(
        self, users: np.ndarray, slates: np.ndarray, step: int = 0, last_step: bool = False
    ) -> Feedback:
        """Show one slate to each of ``users``: decide, update the users, log; return feedback.
        ``last_step``: the caller ends the session after this slate whatever the users answer.

        The policy is not updated here: that is the caller's (`step` calls ``policy.update``).
        """
        slates = self._check_slates(slates, users)
        ctx = self.decision_context(users, slates, step, last_step)
        if step == 0:  # reflection phase: before the first slate of a session
            self.decider.reflect(ctx)
        decisions = self.decider.decide(ctx)
        feedback = self._feedback(self.tick, users, slates, decisions)
        self._update_users(feedback, self.tick)
        self.log.append(feedback, step)
        self._buffer.add(feedback)
        self._lengths[users] += 1
        return feedback

    def end_tick(self, active: np.ndarray) -> None:
        """Churn of today's active users, creators' reaction, metrics; the clock advances."""
        churned = self._churn_phase(active, self.tick)
        lengths = self._lengths[active]
        self._measure(self.tick, active, lengths, churned, self._returned, self._buffer)
        self.tick += 1

    def run(self, ticks: int | None = None) -> None:
        for _ in range(self.scenario.ticks if ticks is None else ticks):
            self.step()

    # 1. items ---------------------------------------------------------------

    def _items_phase(self, t: int) -> None:
        cfg = self.scenario.creators
        if cfg.max_item_age is not None:
            self.items.retire_older_than(t, cfg.max_item_age)
        if not cfg.enabled or t == 0:
            return
        rng = self.rngs["creators"]
        counts = rng.poisson(cfg.publish_rate, size=self.creators.active.size)
        counts[~self.creators.active] = 0
        who = np.repeat(np.arange(counts.size), counts)
        if who.size == 0:
            return
        new = new_items_for_creators(
            who, self.creators.topics, t, rng, topic_names=self.items.topic_names
        )
        for item in self.items.add(new):
            ItemAgent(self, int(item))

    def _creators_react(self, exposures: np.ndarray) -> None:
        cfg, cr = self.scenario.creators, self.creators
        if not cfg.enabled:
            return
        got = creator_exposure(self.items.creator, exposures, cr.active.size)
        cr.idle_ticks = np.where(got > 0, 0, cr.idle_ticks + 1)
        if cfg.leave_after is not None:
            cr.active &= cr.idle_ticks < cfg.leave_after
        trend = exposure_trend(self.items.features, exposures)
        cr.topics = adapt_topics(cr.topics, trend, cfg.adapt)

    # 2. activation ------------------------------------------------------------

    def _activation_phase(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        params, rng = self.scenario.emotion, self.rngs["activation"]
        emo.start_tick(self.emotion, params)
        away = np.flatnonzero(~self.present)
        returned = away[rng.random(away.size) < params.return_rate]
        if returned.size:
            self.present[returned] = True
            emo.on_return(self.emotion, returned, self.persona.curiosity)
            self.memory.record(returned, MemoryKind.RETURNED, -1, t, importance=0.7)
        scale = self.scenario.population.activity_scale
        p = emo.activation_prob(self.emotion, self.persona.activity * scale, params)
        draw = rng.random(self.n_users)
        active = np.flatnonzero(self.present & (draw < p))
        return active, returned

    # 3-6. one slate for every user in a session ------------------------------------

    def decision_context(
        self, users: np.ndarray, slates: np.ndarray, step: int, last_step: bool = False
    ) -> DecisionContext:
        return DecisionContext(
            tick=self.tick,
            step=step,
            last_step=last_step,
            users=users,
            slates=slates,
            persona=self.persona,
            taste=self.taste,
            emotion=self.emotion,
            item_features=self.items.features,
            item_unit=self.items.unit,
            item_quality=self.items.quality,
            item_popularity=self.items.popularity_signal(self.n_users),
            recent=self.recent,
            recent_profile=self.recent_profile,
            inbox=self.inbox,
            rng=self.rngs["decider"],
            item_titles=self.items.titles,
            item_descriptions=self.items.descriptions,
            topic_names=self.items.topic_names,
            memory=self.memory,
        )

    def _check_slates(self, slates: np.ndarray, users: np.ndarray) -> np.ndarray:
        name = getattr(self.policy, "name", type(self.policy).__name__) if self.policy else "agent"
        shape = (users.size, self.spec.k)
        try:
            return valid_slates(
                slates, self.items.available, shape, who=f"policy '{name}'", any_integer=True
            )
        except InvalidSlatesError as err:
            raise PolicyError(str(err)) from None

    def _feedback(self, t: int, users: np.ndarray, slates: np.ndarray, d: Decisions) -> Feedback:
        rows = np.arange(users.size)
        chosen_item = np.where(d.chosen_pos >= 0, slates[rows, np.maximum(d.chosen_pos, 0)], -1)
        return Feedback(
            tick=t,
            users=users,
            slates=slates,
            chosen_pos=d.chosen_pos,
            chosen_item=chosen_item.astype(np.int64),
            rating=d.rating,
            ended_session=d.ended_session,
            item_features=self.items.features,
        )

    def _update_users(self, fb: Feedback, t: int) -> None:
        feats = self.items.features
        clicked = fb.clicked
        users, items = fb.users[clicked], fb.chosen_item[clicked]
        similarity = _cosine(feats[items], self.recent_profile[users])
        full_similarity = np.zeros(fb.users.size, dtype=np.float32)
        full_similarity[clicked] = similarity
        emo.after_slate(
            self.emotion,
            fb.users,
            clicked,
            fb.rating,
            full_similarity,
            self.persona.curiosity,
            self.scenario.emotion,
        )
        valence = (fb.rating[clicked] - 3.0) / 2.0
        self.memory.record(
            users,
            MemoryKind.CONSUMED,
            items,
            t,
            rating=fb.rating[clicked],
            valence=valence,
            importance=0.4 + 0.6 * np.abs(valence),
        )
        skipped = fb.users[~clicked]
        self.memory.record(
            skipped,
            MemoryKind.SKIPPED,
            fb.slates[~clicked, 0],
            t,
            valence=self.scenario.emotion.skip_valence,
            importance=0.2,
        )
        self._consume(users, items)
        self._share(users, items, fb.rating[clicked], t)
        cap = self.items.capacity
        self.items.exposure_total += np.bincount(fb.slates.ravel(), minlength=cap)
        self.items.consumption_total += np.bincount(items, minlength=cap)

    def _consume(self, users: np.ndarray, items: np.ndarray) -> None:
        """Recent-items ring, its feature sum, genre history and taste drift."""
        feats = self.items.features
        slots = ring_slots(self.recent_ptr, users, self.recent.shape[1])
        evicted = self.recent[users, slots]
        old = np.where((evicted >= 0)[:, None], feats[np.maximum(evicted, 0)], 0.0)
        self.recent_profile[users] += feats[items] - old
        self.recent[users, slots] = items
        self.genre_history[users] += feats[items]
        rate = self.scenario.population.drift
        if rate > 0 and users.size:
            target = self.items.unit[items]
            moved = (1 - rate) * self.taste[users] + rate * target
            self.taste[users] = unit_rows(moved)

    def _share(self, users: np.ndarray, items: np.ndarray, rating: np.ndarray, t: int) -> None:
        cfg = self.scenario.social
        if not cfg.enabled or self.social is None or users.size == 0:
            return
        liked = rating >= cfg.share_min_rating
        draw = self.rngs["social"].random(users.size)
        share = liked & (draw < cfg.share_prob)
        friends, shared_items, _ = fan_out(self.social, users[share], items[share])
        if friends.size == 0:
            return
        slots = ring_slots(self.inbox_ptr, friends, self.inbox.shape[1])
        self.inbox[friends, slots] = shared_items
        self.memory.record(friends, MemoryKind.SHARED, shared_items, t, importance=0.6)

    # 7. churn and measure ---------------------------------------------------------

    def _churn_phase(self, active: np.ndarray, t: int) -> np.ndarray:
        p = emo.exit_prob(self.emotion, active, self.scenario.emotion)
        leaving = active[self.rngs["activation"].random(active.size) < p]
        self.present[leaving] = False
        self.memory.record(leaving, MemoryKind.LEFT, -1, t, importance=0.9)
        return leaving

    def _measure(
        self,
        t: int,
        active: np.ndarray,
        lengths: np.ndarray,
        churned: np.ndarray,
        returned: np.ndarray,
        buf: TickBuffer,
    ) -> None:
        k = self.spec.k
        slates = np.concatenate(buf.slates) if buf.slates else np.zeros((0, k), dtype=np.int64)
        exposures = np.bincount(slates.ravel(), minlength=self.items.capacity)
        self._creators_react(exposures)
        ctx = MetricContext(
            tick=t,
            n_users=self.n_users,
            present=self.present.copy(),
            active=active,
            session_length=lengths,
            churned=churned,
            returned=returned,
            imp_users=_cat(buf.users, np.int64),
            slates=slates,
            chosen_item=_cat(buf.chosen, np.int64),
            rating=_cat(buf.rating, np.float32),
            item_features=self.items.features,
            available=self.items.available.copy(),
            exposure_total=self.items.exposure_total.copy(),
            consumption_total=self.items.consumption_total.copy(),
            genre_history=self.genre_history,
            recent=self.recent,
            taste=self.taste,
            taste_initial=self.taste_initial,
            rng=self.rngs["metrics"],
        )
        row: dict[str, float] = {"tick": float(t)}
        row.update(metrics_registry.compute(ctx, self.metric_names))
        row["items_available"] = float(self.items.available.sum())
        row["creators_active"] = float(self.creators.active.sum())
        row.update(self.decider.tick_counters())  # e.g. llm_fallbacks
        self.metric_rows.append(row)

    # ------------------------------------------------------------------ results

    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metric_rows)

    def interactions_frame(self) -> pd.DataFrame:
        return self.log.to_frame()


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", unit_rows(a), unit_rows(b)).astype(np.float32)
