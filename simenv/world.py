"""The world: users, items, creators, a social graph and one recommender, ticking.

`World` orders the story of a tick (docs/architecture.md); the state and the phases live with
what they are about:

1. items      `simenv.creators`: creators publish (cold start); items age and retire
              (`simenv.catalog.ItemStore`)
2. activation `simenv.users.UserState.activate`: leavers may return; present users open the app
3. recommend  the policy returns a slate per user in a session      ┐ repeated for up to
4. decide     the decider answers for every user at once            │ ``session.max_steps``
5. update     `UserState.after_slate` and `UserState.share`         │ slates, while users
6. feedback   the log gets one row per impression; policy.update    ┘ stay in the session
7. end        `UserState.churn`; creators react to the tick's exposure (`simenv.creators`);
              the tick's metrics are appended (measuring changes nothing)

`UserAgent`/`ItemAgent`/`CreatorAgent` (`agents.views`) are mesa agents that view the arrays;
the world creates them, for the initial catalog and for every publication alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mesa
import numpy as np
import pandas as pd
from mesa.agent import AgentSet

from agents.deciders import Decider, DecisionContext, Decisions, UtilityDecider
from agents.views import CreatorAgent, ItemAgent, UserAgent
from policies.base import Feedback, PlatformSpec, Recommender, RecommendRequest, TrueUtility
from policies.selection import InvalidSlatesError, valid_slates
from policies.slate_policy import needs_true_utilities
from scenarios.schema import Scenario
from simenv import creators as cr
from simenv import metrics as metrics_registry
from simenv.catalog import Catalog, ItemStore
from simenv.creators import CreatorState, Order
from simenv.log import InteractionLog
from simenv.metrics.context import MetricContext
from simenv.population import Population, build_population
from simenv.rng import RngTree
from simenv.sizing import check_fits, item_capacity
from simenv.users import UserState

#: The mesa agents the world creates, each a view of one id (`view_id`): a checkpoint stores
#: them as (kind, id, unique_id) rows (`World.__getstate__`).
VIEWS: tuple[type[UserAgent] | type[ItemAgent] | type[CreatorAgent], ...] = (
    UserAgent,
    ItemAgent,
    CreatorAgent,
)
#: Mesa's agent registries in a model, rebuilt from those rows.
_AGENT_REGISTRIES = ("_agents", "_agents_by_type", "_all_agents")

#: Columns of `World.metrics_frame` besides ``tick`` and the registered metrics: the world's
#: own counts and the built-in deciders' `tick_counters`. A scenario's ``plots`` may name them.
EXTRA_COLUMNS = ("items_available", "creators_active", "llm_fallbacks")


class PolicyError(RuntimeError):
    """A recommender returned something the world cannot serve."""


def _default_decider(scenario: Scenario) -> Decider:
    """The decider of a world built without one: the utility model of a ``decider.kind:
    utility`` scenario. The world does not build LLM personas (that needs a backend and a run
    folder, `simenv.studies`), so an LLM scenario without a decider is an error, never
    parametric users in disguise."""
    if scenario.decider.kind == "llm":
        raise ValueError(
            f"scenario {scenario.name!r} asks for LLM personas (decider.kind: llm) but the "
            "World was given no decider: build it with simenv.studies.make_world(scenario, "
            "policy, seed=...), which builds the LLM decider, or pass "
            "decider=UtilityDecider(scenario.decider.utility) for parametric users"
        )
    return UtilityDecider(scenario.decider.utility)


@dataclass
class TickBuffer:
    """Impressions of the current tick, gathered for the creators and the metrics."""

    users: list[np.ndarray] = field(default_factory=list)
    slates: list[np.ndarray] = field(default_factory=list)
    chosen: list[np.ndarray] = field(default_factory=list)
    rating: list[np.ndarray] = field(default_factory=list)

    def add(self, fb: Feedback) -> None:
        self.users.append(fb.users)
        self.slates.append(fb.slates)
        self.chosen.append(fb.chosen_item)
        self.rating.append(fb.rating)

    def all_slates(self, k: int) -> np.ndarray:
        """(R, k) every slate served this tick, in serving order (joined once per tick)."""
        if len(self.slates) != 1:
            joined = np.concatenate(self.slates) if self.slates else np.zeros((0, k), np.int64)
            self.slates[:] = [joined]
        return self.slates[0]

    def exposures(self, k: int, n_items: int) -> np.ndarray:
        """(n_items,) impressions of each item this tick."""
        return np.bincount(self.all_slates(k).ravel(), minlength=n_items)

    def consumptions(self, n_items: int) -> np.ndarray:
        """(n_items,) consumptions of each item this tick."""
        chosen = _cat(self.chosen, np.int64)
        return np.bincount(chosen[chosen >= 0], minlength=n_items)


class World(mesa.Model):
    """A recommendation ecosystem under one policy and one seed.

    ``decider`` answers for the users; without one the world uses the scenario's utility model,
    and refuses (`ValueError`) a scenario whose ``decider.kind`` is ``llm``:
    `simenv.studies.make_world` builds the world with the decider the scenario names.
    ``metrics``: the metric names recorded each tick (default: the scenario's ``metrics`` and
    ``extra_metrics``; the environments record a cheap few).
    """

    def __init__(
        self,
        scenario: Scenario,
        policy: Recommender | None,
        *,
        seed: int = 0,
        decider: Decider | None = None,
        population: Population | None = None,
        metrics: Sequence[str] | None = None,
    ) -> None:
        check_fits(scenario)  # one clear error before allocating a world that cannot fit
        self.rngs = RngTree(seed)
        super().__init__(rng=self.rngs["mesa"])
        self.scenario = scenario
        self.seed = seed
        self._buffer = TickBuffer()
        self._returned = np.zeros(0, dtype=np.int64)
        self.tick = 0
        self.policy = policy
        self.decider = decider or _default_decider(scenario)
        pop = population or build_population(scenario, self.rngs)
        self._init_items(pop.catalog)
        self._init_users(pop)
        self.social = pop.social
        self.log = InteractionLog(scenario.log_interactions)
        self.metric_names = (
            metrics_registry.recorded(scenario.metrics, scenario.extra_metrics)
            if metrics is None
            else metrics_registry.recorded(metrics)
        )
        self.metric_rows: list[dict[str, float]] = []
        self.spec = PlatformSpec(
            n_users=self.n_users,
            n_items=self.items.capacity,
            n_features=self.items.n_features,
            k=scenario.session.slate_size,
            history=scenario.session.history,
            max_steps=scenario.session.max_steps,
        )
        if self.spec.k > int(self.items.available.sum()):
            raise ValueError(
                f"session.slate_size ({self.spec.k}) is larger than the catalog "
                f"({int(self.items.available.sum())} items)"
            )
        # an oracle policy is handed the users' true utilities with every request
        self._hand_utilities = policy is not None and needs_true_utilities(policy)
        if policy is not None and self._hand_utilities and not self.decider.defines_true_utilities:
            raise ValueError(
                f"policy '{policy.name}' needs the users' true "
                f"utilities, which the {self.decider.name} decider does not define (it has no "
                "utility model): run it with decider.kind: utility"
            )
        if policy is not None:
            policy.reset(self.spec, self.rngs["policy"])

    # ------------------------------------------------------------------ construction

    def _init_items(self, cat: Catalog) -> None:
        """The item store (capacity for every publication of the run), the initial catalog
        and the creators."""
        n_creators = cat.n_creators
        capacity = item_capacity(len(cat), n_creators, self.scenario.creators, self.scenario.ticks)
        n_latent = 0 if cat.latent is None else int(cat.latent.shape[1])
        self.items = ItemStore(capacity, cat.topic_names, n_latent)
        self._add_items(cat)
        topics = cat.creator_topics
        if topics is None:
            topics = np.full((n_creators, cat.n_topics), 1.0 / cat.n_topics, dtype=np.float32)
        self.creators = CreatorState.start(topics)
        CreatorAgent.create_agents(self, n_creators, creator_id=np.arange(n_creators))

    def _init_users(self, pop: Population) -> None:
        s = self.scenario.session
        self.users = UserState.start(
            pop.persona,
            self.items.n_features,
            memory=s.memory,
            history=s.history,
            inbox=self.scenario.social.inbox,
        )
        UserAgent.create_agents(self, self.n_users, user_id=np.arange(self.n_users))

    def _add_items(self, new: Catalog) -> np.ndarray:
        """Publish ``new`` into the item store, with one `ItemAgent` per item; returns the ids."""
        ids = self.items.add(new)
        ItemAgent.create_agents(self, ids.size, item_id=ids.tolist())
        return ids

    @property
    def n_users(self) -> int:
        return self.users.n

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

    def begin_tick(self, orders: Sequence[Order] = ()) -> np.ndarray:
        """Items and activation phases; returns the ids of the users who open the app.

        ``orders``: what the driven creators (`CreatorState.drive`) publish this tick."""
        self._items_phase(self.tick, orders)
        params, pop = self.scenario.emotion, self.scenario.population
        active, self._returned = self.users.activate(
            self.tick, params, pop.activity_scale, self.rngs["activation"]
        )
        self._buffer = TickBuffer()
        return active

    def request(self, users: np.ndarray, k: int | None = None) -> RecommendRequest:
        """What a recommender may see about ``users`` now (and, only for the world's own
        policy when it is an oracle, their true utilities); ``k``: the length of the ranking
        asked for (default: the slate size; a session env asks for its candidates)."""
        return RecommendRequest(
            tick=self.tick,
            users=users,
            k=self.spec.k if k is None else k,
            item_features=self.items.features,
            available=self.items.available,
            item_age=self.items.age(self.tick),
            recent=self.users.recent.take(users, axis=0),  # = recent[users], faster
            social=self.social,
            true_utility=self._true_utility(users) if self._hand_utilities else None,
        )

    def _true_utility(self, users: np.ndarray) -> TrueUtility:
        """``(rows, items) ->`` the decider's deterministic utilities of ``items`` for
        ``users[rows]`` in the users' current state (no random numbers are drawn)."""
        empty = np.zeros((users.size, 0), dtype=np.int64)
        ctx = self.decision_context(users, empty, step=0)

        def utility(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
            return self.decider.true_utilities(ctx, rows, items)

        return utility

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
        sc = self.scenario
        self.users.after_slate(feedback, self.items, sc.emotion, sc.population.drift)
        self.users.share(feedback, self.social, sc.social, self.rngs["social"])
        self.items.record(feedback.slates, feedback.chosen_item[feedback.clicked])
        self.log.append(feedback, step)
        self._buffer.add(feedback)
        return feedback

    def end_tick(self, active: np.ndarray) -> None:
        """Churn of today's active users, creators' reaction, metrics; the clock advances."""
        params, rng = self.scenario.emotion, self.rngs["activation"]
        churned = self.users.churn(active, self.tick, params, rng)
        self._creators_phase()
        lengths = self.users.session_length[active]
        self._measure(self.tick, active, lengths, churned, self._returned, self._buffer)
        self.tick += 1

    def run(self, ticks: int | None = None) -> None:
        for _ in range(self.scenario.ticks if ticks is None else ticks):
            self.step()

    # 1. items ---------------------------------------------------------------

    def _items_phase(self, t: int, orders: Sequence[Order]) -> None:
        """Old items retire; scripted creators publish (from tick 1, if creators are enabled),
        then the driven creators' ``orders`` are published, in order."""
        cfg = self.scenario.creators
        if cfg.max_item_age is not None:
            self.items.retire_older_than(t, cfg.max_item_age)
        rng, names = self.rngs["creators"], self.items.topic_names
        batches: list[Catalog | None] = []
        if cfg.enabled and t > 0:
            batches.append(cr.publish(self.creators, cfg.publish_rate, t, rng, names))
        batches += [cr.fulfil(self.creators, order, t, rng, names) for order in orders]
        ids = [self._add_items(new) for new in batches if new is not None]
        added = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        n = self.creators.n
        self.creators.published = np.bincount(self.items.creator[added], minlength=n)[:n]

    # 3-6. one slate for every user in a session ------------------------------------

    def decision_context(
        self, users: np.ndarray, slates: np.ndarray, step: int, last_step: bool = False
    ) -> DecisionContext:
        u = self.users
        return DecisionContext(
            tick=self.tick,
            step=step,
            last_step=last_step,
            users=users,
            slates=slates,
            persona=u.persona,
            taste=u.taste,
            emotion=u.emotion,
            item_features=self.items.features,
            item_unit=self.items.unit,
            item_quality=self.items.quality,
            item_popularity=self.items.popularity_signal(self.n_users),
            item_latent=self.items.latent,
            recent=u.recent,
            recent_profile=u.recent_profile,
            inbox=u.inbox,
            rng=self.rngs["decider"],
            item_titles=self.items.titles,
            item_descriptions=self.items.descriptions,
            topic_names=self.items.topic_names,
            memory=u.memory,
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
        if users.size == 1:  # one user (a single env's step): the chosen item as a scalar
            pos = int(d.chosen_pos[0])
            chosen_item = np.array([slates[0, pos] if pos >= 0 else -1], dtype=np.int64)
        else:
            rows = np.arange(users.size)
            chosen = slates[rows, np.maximum(d.chosen_pos, 0)]
            chosen_item = np.where(d.chosen_pos >= 0, chosen, -1).astype(np.int64)
        return Feedback(
            tick=t,
            users=users,
            slates=slates,
            chosen_pos=d.chosen_pos,
            chosen_item=chosen_item,
            rating=d.rating,
            ended_session=d.ended_session,
            item_features=self.items.features,
        )

    # 7. end of the tick: creators react, measure ----------------------------------

    def _creators_phase(self) -> None:
        """Creators note what their items got this tick and react to it (nothing to do when
        creators are off and none is driven from outside)."""
        if not (self.scenario.creators.enabled or self.creators.driven.any()):
            return
        k, cap = self.spec.k, self.items.capacity
        cr.record_tick(
            self.creators,
            self.items.creator,
            self.items.features,
            self._buffer.exposures(k, cap),
            self._buffer.consumptions(cap),
        )
        cr.react(self.creators, self.scenario.creators)

    def _measure(
        self,
        t: int,
        active: np.ndarray,
        lengths: np.ndarray,
        churned: np.ndarray,
        returned: np.ndarray,
        buf: TickBuffer,
    ) -> None:
        u = self.users
        ctx = MetricContext(
            tick=t,
            n_users=self.n_users,
            present=u.present.copy(),
            active=active,
            session_length=lengths,
            churned=churned,
            returned=returned,
            imp_users=_cat(buf.users, np.int64),
            slates=buf.all_slates(self.spec.k),
            chosen_item=_cat(buf.chosen, np.int64),
            rating=_cat(buf.rating, np.float32),
            item_features=self.items.features,
            available=self.items.available.copy(),
            exposure_total=self.items.exposure_total.copy(),
            consumption_total=self.items.consumption_total.copy(),
            genre_history=u.genre_history,
            recent=u.recent,
            taste=u.taste,
            taste_initial=u.taste_initial,
            rng=self.rngs["metrics"],
        )
        row: dict[str, float] = {"tick": t}  # an int: metrics.parquet's tick is int64
        every, last = self.scenario.metrics_every, self.scenario.ticks - 1
        with_heavy = metrics_registry.due(t, every, last)
        row.update(metrics_registry.compute(ctx, self.metric_names, with_heavy=with_heavy))
        row["items_available"] = float(self.items.available.sum())
        row["creators_active"] = float(self.creators.active.sum())
        row.update(self.decider.tick_counters())  # e.g. llm_fallbacks
        self.metric_rows.append(row)

    # ------------------------------------------------------------------ pickling (checkpoints)

    def __getstate__(self) -> dict[str, Any]:
        """The world's state for pickling (`simenv.studies.checkpoint`). Mesa's agents, views
        of one id each, are stored as rows (kind, id, unique_id) in registration order instead
        of as one Python object each, which made pickling a world about 20 times slower; any
        other agent type keeps the agents as they are."""
        state = self.__dict__.copy()
        agents = list(self._agents)
        if not all(type(agent) in VIEWS for agent in agents):
            return state
        for name in _AGENT_REGISTRIES:
            del state[name]
        state["_agent_rows"] = np.array(
            [(VIEWS.index(type(a)), a.view_id, a.unique_id) for a in agents], dtype=np.int64
        ).reshape(-1, 3)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled world: rebuild mesa's agents with their unique ids, in their
        registration order, and continue mesa's per-model id counter (kept in the agent class,
        not in the model) after them, so agents published later get the ids they would have."""
        rows = state.pop("_agent_rows", None)
        self.__dict__.update(state)
        if rows is not None:
            self._agents: dict[mesa.Agent, None] = {}
            self._agents_by_type: dict[type[mesa.Agent], AgentSet] = {}
            self._all_agents = AgentSet([], random=self.random)
            for kind, view_id, unique_id in rows.tolist():
                VIEWS[kind](self, view_id).unique_id = unique_id
        last = max((agent.unique_id for agent in self._agents), default=0)
        mesa.Agent._ids[self] = itertools.count(last + 1)

    # ------------------------------------------------------------------ results

    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metric_rows)

    def interactions_frame(self) -> pd.DataFrame:
        return self.log.to_frame()


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
