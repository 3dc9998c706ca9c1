"""Bandit recommenders. The non-contextual ones are per-item bandits over the catalog: every
served slate position is one pull of that item, its reward is the click (``reward="click"``) or
``rating / 5`` of a click (``reward="rating"``). ``decay < 1`` forgets old evidence per tick.
"""

from __future__ import annotations

import numpy as np

from policies.base import Feedback, RecommendRequest
from policies.learning import REWARDS, ItemStats, feedback_features, impression_rewards
from policies.registry import register
from policies.selection import available_ids, mix_slates, recent_of, sample_distinct, top_global
from policies.slate_policy import SlatePolicy, check_choice, check_range


class ItemBandit(SlatePolicy):
    """Shared state of the per-item bandits: impressions and reward sums per item."""

    def __init__(
        self,
        reward: str = "click",
        decay: float = 1.0,
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(retrain_every=retrain_every, train_ticks=train_ticks)
        self.reward = check_choice("reward", reward, REWARDS)
        self.decay = check_range("decay", decay, 0.0, 1.0)

    def _init_state(self) -> None:
        self.stats = ItemStats(self.spec.n_items, self.decay)

    def _learn(self, feedback: Feedback) -> None:
        items, rewards = impression_rewards(feedback, self.reward)
        self.stats.add(items, rewards, feedback.tick)


@register("epsilon_greedy")
class EpsilonGreedy(ItemBandit):
    """Epsilon-greedy over items.

    Observes: impressions and clicks (ratings with ``reward="rating"``). Learns: each item's
    mean reward, smoothed towards ``initial`` by one pseudo-pull. Each slate position is
    independently an exploration with probability ``epsilon`` (a uniformly random available
    item) and otherwise the next item by estimated mean.
    """

    def __init__(
        self,
        epsilon: float = 0.1,
        initial: float = 0.5,
        reward: str = "click",
        decay: float = 1.0,
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(reward, decay, retrain_every, train_ticks)
        self.epsilon = check_range("epsilon", epsilon, 0.0, 1.0)
        self.initial = check_range("initial", initial, 0.0)

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        greedy = self.rank_global(request, n, self.stats.mean(self.initial, 1.0))
        explore = self.rng.random(greedy.shape) < self.epsilon
        rows = np.flatnonzero(explore.any(1))
        if rows.size == 0:
            return greedy
        avail = available_ids(request.available)
        recent = recent_of(request)[rows]
        randoms = sample_distinct(None, avail, recent, n, self.rng)
        greedy[rows] = mix_slates(greedy[rows], randoms, explore[rows])
        return greedy


@register("softmax")
class Softmax(ItemBandit):
    """Boltzmann exploration over items.

    Observes: impressions and clicks. Learns: each item's mean reward, smoothed towards
    ``initial`` by one pseudo-pull. Each user's slate is sampled without replacement with
    probabilities proportional to ``exp(mean / temperature)``.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        initial: float = 0.5,
        reward: str = "click",
        decay: float = 1.0,
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(reward, decay, retrain_every, train_ticks)
        self.temperature = check_range("temperature", temperature, 1e-9)
        self.initial = check_range("initial", initial, 0.0)

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        q = self.stats.mean(self.initial, 1.0)
        avail = available_ids(request.available)
        z = q[avail] / self.temperature
        weights = np.zeros_like(q)
        if avail.size:
            weights[avail] = np.exp(z - z.max())
        return self.rank_sampled(request, n, weights)


@register("ucb")
class UCB(ItemBandit):
    """UCB1 over items.

    Observes: impressions and clicks. Learns: each item's pulls and mean reward. Ranks by
    ``mean + c * sqrt(2 ln N / n_i)`` (N = all pulls); items never shown rank first (ties
    between them broken by the policy's generator), so new items get tried.
    """

    def __init__(
        self,
        c: float = 1.0,
        reward: str = "click",
        decay: float = 1.0,
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(reward, decay, retrain_every, train_ticks)
        self.c = check_range("c", c, 0.0)

    def index(self) -> np.ndarray:
        """The UCB index of every item (``inf`` for unseen items)."""
        pulls = self.stats.pulls
        total = max(float(pulls.sum()), 1.0)
        mean = self.stats.mean(0.0, 0.0)
        with np.errstate(divide="ignore"):
            bonus = np.sqrt(2.0 * np.log(max(total, np.e)) / pulls)
        return np.where(pulls > 0, mean + self.c * bonus, np.inf)

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        return self.rank_global(request, n, self.index())


@register("thompson")
class Thompson(ItemBandit):
    """Beta-Bernoulli Thompson sampling over items.

    Observes: impressions and clicks (fractional rewards with ``reward="rating"``). Learns: a
    Beta(``prior_a`` + rewards, ``prior_b`` + pulls - rewards) posterior per item. Each request
    draws ``samples`` posterior samples of all items; every user is assigned one of them at
    random and gets the top items of that sample (one sample per user would need a dense
    users x items draw).
    """

    def __init__(
        self,
        prior_a: float = 1.0,
        prior_b: float = 1.0,
        samples: int = 16,
        reward: str = "click",
        decay: float = 1.0,
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(reward, decay, retrain_every, train_ticks)
        self.prior_a = check_range("prior_a", prior_a, 1e-9)
        self.prior_b = check_range("prior_b", prior_b, 1e-9)
        self.samples = int(check_range("samples", samples, 1))

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        avail = available_ids(request.available)
        recent = recent_of(request)
        out = np.empty((request.n, n), dtype=np.int64)
        if request.n == 0:
            return out
        a = self.prior_a + self.stats.rewards[avail]
        b = self.prior_b + np.maximum(self.stats.pulls[avail] - self.stats.rewards[avail], 0.0)
        groups = min(self.samples, request.n)
        group = self.rng.integers(0, groups, size=request.n)
        for g in range(groups):
            rows = np.flatnonzero(group == g)
            if rows.size == 0:
                continue
            theta = self.rng.beta(a, b)
            ties = self._ties(avail.size, rows.size)
            out[rows] = top_global(theta, avail, recent[rows], n, ties)
        return out


@register("linucb")
class LinUCB(SlatePolicy):
    """LinUCB with one model shared by all users over the public item features.

    Observes: impressions, clicks (ratings with ``reward="rating"``) and ``item_features``.
    Learns: a ridge regression of the reward on ``[features, 1]`` (``A = reg I + sum x x^T``,
    ``b = sum r x``). Ranks by ``theta . x + alpha * sqrt(x^T A^-1 x)``, so items whose feature
    direction is under-explored (including new items) get a bonus.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        reg: float = 1.0,
        reward: str = "click",
        decay: float = 1.0,
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(retrain_every=retrain_every, train_ticks=train_ticks)
        self.alpha = check_range("alpha", alpha, 0.0)
        self.reg = check_range("reg", reg, 1e-12)
        self.reward = check_choice("reward", reward, REWARDS)
        self.decay = check_range("decay", decay, 0.0, 1.0)

    def _init_state(self) -> None:
        d = self.spec.n_features + 1
        self.A = self.reg * np.eye(d)
        self.b = np.zeros(d)
        self._last_tick: int | None = None
        self._features: np.ndarray | None = None

    @staticmethod
    def _design(features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)

    def _learn(self, feedback: Feedback) -> None:
        items, rewards = impression_rewards(feedback, self.reward)
        if self.decay < 1.0 and self._last_tick is not None and feedback.tick > self._last_tick:
            f = self.decay ** (feedback.tick - self._last_tick)
            d = self.A.shape[0]
            self.A = f * self.A + (1.0 - f) * self.reg * np.eye(d)
            self.b *= f
        self._last_tick = feedback.tick
        features = feedback_features(feedback, self._features)
        if items.size == 0 or features is None:
            return
        x = self._design(features[items])
        self.A += x.T @ x
        self.b += x.T @ rewards

    def scores(self, item_features: np.ndarray, items: np.ndarray) -> np.ndarray:
        """UCB scores of ``items`` given the catalog's ``item_features``."""
        x = self._design(item_features[items])
        a_inv = np.linalg.inv(self.A)
        theta = a_inv @ self.b
        width = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", x, a_inv, x), 0.0))
        return x @ theta + self.alpha * width

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        self._features = request.item_features
        avail = available_ids(request.available)
        return self.rank_global(request, n, self.scores(request.item_features, avail))
