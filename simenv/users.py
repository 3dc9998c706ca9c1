"""Users: the per-user arrays of a world and the phases of the tick that change them.

`UserState` is a struct of arrays indexed by user id: persona, drifted taste, emotion,
presence, memory, the recent-items ring and its feature sum, the social inbox ring, genre
history and the slates seen in the current tick. Its methods are the user phases of the tick,
called by `simenv.world.World` in story order:

- `UserState.activate` (activation): fatigue and boredom recover, leavers may return, present
  users open the app by activity and emotion;
- `UserState.after_slate` (after each slate): emotion, memory records, the recent-items ring,
  genre history and taste drift toward consumed items; then `UserState.share`: liked items go
  to friends' inboxes and memories;
- `UserState.churn` (end of the tick): active users may leave the platform.

The state holds plain arrays and no reference to a world, so it can be built from saved
arrays as well as by `UserState.start`.

`PlatformChoice` is the user side of several competing platforms (``recloop/ecosystem``): each
user's satisfaction with each platform and the softmax choice between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents import emotion as emo
from agents.memory import MemoryKind, MemoryStore
from agents.persona import PersonaTable
from policies.base import Feedback, SocialGraph
from scenarios.schema import SocialConfig
from simenv import kernels
from simenv.arrays import one_user_kernels, ring_slots, short_float32_rows, unit_rows
from simenv.catalog import ItemStore
from simenv.social import fan_out


@dataclass
class UserState:
    """Every user's state (``n`` users, ``d`` topics, ``H`` recent items, ``B`` inbox slots)."""

    persona: PersonaTable  # traits; persona.taste is the starting taste
    taste: np.ndarray  # (n, d) float32 taste, drifting toward consumed items
    taste_initial: np.ndarray  # (n, d) float32 taste at tick 0
    emotion: emo.EmotionState
    present: np.ndarray  # (n,) bool, False once a user left the platform
    memory: MemoryStore
    recent: np.ndarray  # (n, H) int64 ring of recently consumed item ids, -1 = empty
    recent_ptr: np.ndarray  # (n,) int64 next slot of ``recent``
    recent_profile: np.ndarray  # (n, d) float32 sum of the features of the ``recent`` items
    inbox: np.ndarray  # (n, B) int64 ring of items friends shared, -1 = empty
    inbox_ptr: np.ndarray  # (n,) int64 next slot of ``inbox``
    genre_history: np.ndarray  # (n, d) float32 topic mass consumed so far
    session_length: np.ndarray  # (n,) int64 slates seen in the current (or last) tick

    @classmethod
    def start(
        cls, persona: PersonaTable, n_features: int, *, memory: int, history: int, inbox: int
    ) -> UserState:
        """Users at tick 0: present, neutral emotion, empty memory, rings and history."""
        n, d = len(persona), n_features
        taste = persona.taste.astype(np.float32, copy=True)
        return cls(
            persona=persona,
            taste=taste,
            taste_initial=taste.copy(),
            emotion=emo.EmotionState.initial(persona.curiosity),
            present=np.ones(n, dtype=bool),
            memory=MemoryStore(n, memory),
            recent=np.full((n, history), -1, dtype=np.int64),
            recent_ptr=np.zeros(n, dtype=np.int64),
            recent_profile=np.zeros((n, d), dtype=np.float32),
            inbox=np.full((n, inbox), -1, dtype=np.int64),
            inbox_ptr=np.zeros(n, dtype=np.int64),
            genre_history=np.zeros((n, d), dtype=np.float32),
            session_length=np.zeros(n, dtype=np.int64),
        )

    @property
    def n(self) -> int:
        return int(self.present.shape[0])

    # ------------------------------------------------------------------ activation

    def activate(
        self, t: int, params: emo.EmotionParams, activity_scale: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Start of tick ``t``: returns (users who open the app, users who came back).

        Fatigue and boredom recover; each absent user returns with ``params.return_rate``;
        each present user opens the app with `emotion.activation_prob` of its activity times
        ``activity_scale``. The slate counters of the tick start at 0."""
        emo.start_tick(self.emotion, params)
        away = np.flatnonzero(~self.present)
        returned = away[rng.random(away.size) < params.return_rate]
        if returned.size:
            self.present[returned] = True
            emo.on_return(self.emotion, returned, self.persona.curiosity)
            self.memory.record(returned, MemoryKind.RETURNED, -1, t, importance=0.7)
        p = emo.activation_prob(self.emotion, self.persona.activity * activity_scale, params)
        draw = rng.random(self.n)
        active = np.flatnonzero(self.present & (draw < p))
        self.session_length[:] = 0
        return active, returned

    # ------------------------------------------------------------------ after a slate

    def after_slate(
        self, fb: Feedback, items: ItemStore, params: emo.EmotionParams, drift: float
    ) -> None:
        """Each of ``fb.users`` saw one slate: emotion, memory (consumed or skipped), the
        recent-items ring, genre history and taste drift (a share ``drift`` of the way toward
        each consumed item). One user (a single env's step) with float32 arrays:
        `_after_slate_one`, the same values."""
        if fb.users.size == 1 and one_user_kernels(
            items.features, items.unit, self.recent_profile, self.taste, self.genre_history
        ):
            self._after_slate_one(fb, items, params, drift)
        else:
            self._after_slate_rows(fb, items, params, drift)

    def _after_slate_rows(
        self, fb: Feedback, items: ItemStore, params: emo.EmotionParams, drift: float
    ) -> None:
        """`after_slate` as arrays over the users of ``fb`` (any number of them)."""
        t, clicked = fb.tick, fb.clicked
        users, chosen = fb.users[clicked], fb.chosen_item[clicked]
        similarity = np.zeros(fb.users.size, dtype=np.float32)
        if users.size:  # (none in a one-user step without a click)
            similarity[clicked] = _cosine(
                _rows(items.features, chosen), _rows(self.recent_profile, users)
            )
        emo.after_slate(
            self.emotion, fb.users, clicked, fb.rating, similarity, self.persona.curiosity, params
        )
        valence = (fb.rating[clicked] - 3.0) / 2.0
        self.memory.record(
            users,
            MemoryKind.CONSUMED,
            chosen,
            t,
            rating=fb.rating[clicked],
            valence=valence,
            importance=0.4 + 0.6 * np.abs(valence),
        )
        self.memory.record(
            fb.users[~clicked],
            MemoryKind.SKIPPED,
            fb.slates[~clicked, 0],
            t,
            valence=params.skip_valence,
            importance=0.2,
        )
        if users.size:
            self._consume(users, chosen, items, drift)
        self.session_length[fb.users] += 1

    def _after_slate_one(
        self, fb: Feedback, items: ItemStore, params: emo.EmotionParams, drift: float
    ) -> None:
        """`after_slate` of one user: the similarity (`kernels.cosine_one`), the emotion, one
        memory record and the consumption (`kernels.consume_one`) without (1, d) arrays."""
        u, clicked = int(fb.users[0]), bool(fb.chosen_pos[0] >= 0)
        item = int(fb.chosen_item[0])
        similarity = np.zeros(1, dtype=np.float32)
        if clicked:
            similarity[0] = kernels.cosine_one(items.features[item], self.recent_profile[u])
        emo.after_slate(
            self.emotion, fb.users, fb.clicked, fb.rating, similarity, self.persona.curiosity,
            params,
        )  # fmt: skip
        if clicked:
            rating = fb.rating[0]  # a float32 scalar: the same float32 operations as (1,) arrays
            valence = (rating - 3.0) / 2.0
            self.memory.record_one(
                u, MemoryKind.CONSUMED, item, fb.tick, rating, valence, 0.4 + 0.6 * abs(valence)
            )
            kernels.consume_one(
                u, item, self.recent, self.recent_ptr, self.recent_profile, self.genre_history,
                self.taste, items.features, items.unit, drift,
            )  # fmt: skip
        else:
            self.memory.record_one(
                u, MemoryKind.SKIPPED, int(fb.slates[0, 0]), fb.tick, None, params.skip_valence, 0.2
            )
        self.session_length[u] += 1

    def _consume(
        self, users: np.ndarray, chosen: np.ndarray, items: ItemStore, drift: float
    ) -> None:
        """Recent-items ring, its feature sum, genre history and taste drift."""
        feats = items.features
        if users.size >= 64 and self._kernel_fits(feats, items.unit):  # one compiled pass
            keep, pull = np.float32(1 - drift), np.float32(drift)
            if kernels.consume(
                users, chosen, self.recent, self.recent_ptr, self.recent_profile,
                self.genre_history, self.taste, feats, items.unit, keep, pull, drift > 0,
            ):  # fmt: skip
                return
        slots = ring_slots(self.recent_ptr, users, self.recent.shape[1])
        evicted = self.recent[users, slots]
        # rows gathered with np.take (what fancy indexing gives, several times faster); a
        # row update is ``a[users] = a[users] + x``, what ``a[users] += x`` computes
        old = _rows(feats, np.maximum(evicted, 0))
        old[evicted < 0] = 0.0
        added = _rows(feats, chosen)
        self.recent_profile[users] = _rows(self.recent_profile, users) + (added - old)
        self.recent[users, slots] = chosen
        self.genre_history[users] = _rows(self.genre_history, users) + added
        if drift > 0 and users.size:
            moved = (1 - drift) * _rows(self.taste, users) + drift * _rows(items.unit, chosen)
            self.taste[users] = unit_rows(moved)

    def _kernel_fits(self, *item_tables: np.ndarray) -> bool:
        """Whether `kernels.consume` computes what `_consume`'s numpy code does: the user
        tables it writes and ``item_tables`` are float32 (the world's always are) with rows
        short enough for its `unit_rows` (`short_float32_rows`)."""
        return short_float32_rows(self.recent_profile, self.genre_history, self.taste, *item_tables)

    def share(
        self,
        fb: Feedback,
        graph: SocialGraph | None,
        cfg: SocialConfig,
        rng: np.random.Generator,
    ) -> None:
        """Users who rated what they consumed at least ``cfg.share_min_rating`` share it with
        probability ``cfg.share_prob``: it reaches every friend's inbox and memory."""
        if not cfg.enabled or graph is None:
            return
        if fb.users.size == 1:  # one user (a single env's step): the same draw, on scalars
            if fb.chosen_pos[0] < 0:
                return
            liked = fb.rating[0] >= cfg.share_min_rating
            if not (rng.random(1)[0] < cfg.share_prob and liked):
                return
            friends = graph.friends(int(fb.users[0]))  # in fan_out's order
            shared_items = np.full(friends.size, fb.chosen_item[0], dtype=np.int64)
        else:
            clicked = fb.clicked
            users = fb.users[clicked]
            if users.size == 0:
                return
            liked = fb.rating[clicked] >= cfg.share_min_rating
            share = liked & (rng.random(users.size) < cfg.share_prob)
            sharers, items = users[share], fb.chosen_item[clicked][share]
            friends, shared_items, _ = fan_out(graph, sharers, items)
        if friends.size == 0:
            return
        slots = ring_slots(self.inbox_ptr, friends, self.inbox.shape[1])
        self.inbox[friends, slots] = shared_items
        self.memory.record(friends, MemoryKind.SHARED, shared_items, fb.tick, importance=0.6)

    # ------------------------------------------------------------------ churn

    def churn(
        self, active: np.ndarray, t: int, params: emo.EmotionParams, rng: np.random.Generator
    ) -> np.ndarray:
        """End of tick ``t``: each of ``active`` leaves with `emotion.exit_prob`; returns them."""
        p = emo.exit_prob(self.emotion, active, params)
        leaving = active[rng.random(active.size) < p]
        self.present[leaving] = False
        self.memory.record(leaving, MemoryKind.LEFT, -1, t, importance=0.9)
        return leaving


@dataclass
class PlatformChoice:
    """Users' satisfaction with each of ``P`` platforms and their choice between them.

    A user opening the app picks platform p with probability softmax(``satisfaction[u] /
    temperature``); after the tick, the satisfaction with the platform visited moves a share
    ``rate`` of the way toward the tick's score of the visit (in [0, 1])."""

    satisfaction: np.ndarray  # (n, P) float64
    temperature: float
    rate: float

    @classmethod
    def start(
        cls, n_users: int, n_platforms: int, initial: float, temperature: float, rate: float
    ) -> PlatformChoice:
        return cls(np.full((n_users, n_platforms), initial), temperature, rate)

    def choose(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(len(users),) int64 platform of each user, one uniform draw each from ``rng``."""
        logits = self.satisfaction[users] / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        cum = np.cumsum(np.exp(logits), axis=1)
        draw = rng.random(users.size) * cum[:, -1]
        choice = (cum < draw[:, None]).sum(axis=1)
        return np.minimum(choice, self.satisfaction.shape[1] - 1).astype(np.int64)

    def update(self, users: np.ndarray, platform: np.ndarray, score: np.ndarray) -> None:
        """Move each user's satisfaction with the platform visited toward ``score``."""
        old = self.satisfaction[users, platform]
        self.satisfaction[users, platform] = (1 - self.rate) * old + self.rate * score


def _rows(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` for an index array (a new array), gathered by `np.take`."""
    return np.take(table, index, axis=0)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", unit_rows(a), unit_rows(b)).astype(np.float32)
