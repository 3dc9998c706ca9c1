"""Numeric emotion per user and the hazards it drives.

State (one float32 per user each):

- ``satisfaction`` in [-1, 1]: moving average of how good recent slates were (a rating of 5 is
  +1, 1 is -1, a slate with nothing worth choosing pulls toward ``params.skip_valence``);
- ``fatigue`` in [0, 1]: grows with every slate seen in a session, recovers between ticks;
- ``boredom`` in [0, 1]: moving average of how similar each consumed item was to what the user
  consumed recently (repetition), decays while the user is away;
- ``curiosity`` in [0, 1]: the persona's baseline, raised by boredom.

They drive the probability of opening the app in a tick (`activation_prob`), of leaving the
platform after a session (`exit_prob`) and of coming back after leaving (`return_prob`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simenv.arrays import nan_to


class EmotionParams(BaseModel):
    """How emotion moves and what it does. Every field is a scenario knob (``emotion.*``)."""

    model_config = ConfigDict(extra="forbid")

    satisfaction_rate: float = Field(0.3, ge=0, le=1, description="EMA rate of satisfaction")
    skip_valence: float = Field(-0.3, ge=-1, le=1, description="valence of a slate left unchosen")
    fatigue_per_slate: float = Field(0.12, ge=0, le=1, description="fatigue added per slate seen")
    fatigue_recovery: float = Field(0.7, ge=0, le=1, description="share of fatigue gone per tick")
    boredom_rate: float = Field(0.3, ge=0, le=1, description="EMA rate of boredom (repetition)")
    boredom_recovery: float = Field(0.2, ge=0, le=1, description="share of boredom gone per tick")
    curiosity_from_boredom: float = Field(0.5, ge=0, description="curiosity gained per boredom")
    activation_satisfaction: float = Field(0.5, ge=0, description="activity gain per satisfaction")
    activation_fatigue: float = Field(0.5, ge=0, le=1, description="activity lost per fatigue")
    exit_base: float = Field(-4.0, description="logit of leaving after a neutral session")
    exit_satisfaction: float = Field(2.5, ge=0, description="exit logit per unit dissatisfaction")
    exit_boredom: float = Field(2.5, ge=0, description="exit logit per unit of boredom")
    boredom_tolerance: float = Field(
        0.0, ge=0, le=1, description="share of the boredom exit term a fully satisfied user ignores"
    )
    return_rate: float = Field(0.05, ge=0, le=1, description="per-tick chance a leaver returns")


@dataclass
class EmotionState:
    satisfaction: np.ndarray
    fatigue: np.ndarray
    boredom: np.ndarray
    curiosity: np.ndarray

    @classmethod
    def initial(cls, curiosity: np.ndarray) -> EmotionState:
        n = curiosity.shape[0]
        return cls(
            satisfaction=np.zeros(n, dtype=np.float32),
            fatigue=np.zeros(n, dtype=np.float32),
            boredom=np.zeros(n, dtype=np.float32),
            curiosity=curiosity.astype(np.float32, copy=True),
        )

    def describe(self, user: int) -> str:
        """The emotion of one user in words (for prompts, interviews and logs)."""
        return describe_emotion(
            float(self.satisfaction[user]),
            float(self.fatigue[user]),
            float(self.boredom[user]),
            float(self.curiosity[user]),
        )


def describe_emotion(satisfaction: float, fatigue: float, boredom: float, curiosity: float) -> str:
    mood = (
        "pleased with what you have been shown"
        if satisfaction > 0.3
        else "disappointed with what you have been shown"
        if satisfaction < -0.3
        else "neither pleased nor disappointed"
    )
    parts = [f"You feel {mood}"]
    if fatigue > 0.5:
        parts.append("tired of scrolling")
    if boredom > 0.5:
        parts.append("bored because everything looks the same")
    if curiosity > 0.6:
        parts.append("curious to try something new")
    return ", ".join(parts) + "."


def start_tick(state: EmotionState, params: EmotionParams) -> None:
    """Recovery between ticks for everybody (present or away)."""
    state.fatigue *= 1.0 - params.fatigue_recovery
    state.boredom *= 1.0 - params.boredom_recovery


def after_slate(
    state: EmotionState,
    users: np.ndarray,
    consumed: np.ndarray,
    rating: np.ndarray,
    similarity: np.ndarray,
    base_curiosity: np.ndarray,
    params: EmotionParams,
) -> None:
    """Update the emotion of ``users`` after each saw one slate.

    ``consumed`` (n,) bool, ``rating`` (n,) stars (nan when nothing was consumed), ``similarity``
    (n,) cosine between the consumed item and the user's recent consumption (0 when none).
    """
    if np.size(users) == 1:  # one user (a single env's step)
        u, ate = int(np.ravel(users)[0]), bool(np.ravel(consumed)[0])
        _after_slate_one(state, u, ate, rating, similarity, base_curiosity, params)
        return
    a = params.satisfaction_rate
    valence = np.where(consumed, (nan_to(rating, 3.0) - 3.0) / 2.0, params.skip_valence)
    state.satisfaction[users] = (1 - a) * state.satisfaction[users] + a * valence
    state.fatigue[users] = np.minimum(state.fatigue[users] + params.fatigue_per_slate, 1.0)
    b = params.boredom_rate
    bored = (1 - b) * state.boredom[users] + b * np.clip(similarity, 0.0, 1.0)
    state.boredom[users] = np.where(consumed, bored, state.boredom[users])
    curious = base_curiosity[users] + params.curiosity_from_boredom * state.boredom[users]
    state.curiosity[users] = np.clip(curious, 0.0, 1.0)


def _after_slate_one(
    state: EmotionState,
    u: int,
    consumed: bool,
    rating: np.ndarray,
    similarity: np.ndarray,
    base_curiosity: np.ndarray,
    params: EmotionParams,
) -> None:
    """`after_slate` of one user (a single env's step): the same float32 operations on
    numpy scalars."""
    f32 = np.float32
    a, b = params.satisfaction_rate, params.boredom_rate
    if consumed:
        stars = f32(np.ravel(rating)[0])
        valence = (f32(3.0) if np.isnan(stars) else stars) - 3.0
        valence = valence / 2.0
    else:
        valence = f32(params.skip_valence)  # np.where casts the float to the arrays' float32
    state.satisfaction[u] = (1 - a) * state.satisfaction[u] + a * valence
    state.fatigue[u] = min(state.fatigue[u] + params.fatigue_per_slate, f32(1.0))
    if consumed:
        sim = min(max(f32(np.ravel(similarity)[0]), f32(0.0)), f32(1.0))
        state.boredom[u] = (1 - b) * state.boredom[u] + b * sim
    curious = base_curiosity[u] + params.curiosity_from_boredom * state.boredom[u]
    state.curiosity[u] = min(max(curious, f32(0.0)), f32(1.0))


def activation_prob(
    state: EmotionState,
    activity: np.ndarray,
    params: EmotionParams,
    users: np.ndarray | None = None,
) -> np.ndarray:
    """Probability that each user opens the app this tick (before presence is applied); with
    ``users``, of those users only (``activity`` then holds theirs): the same values as the
    full array's entries, without a pass over the population."""
    satisfaction, fatigue = state.satisfaction, state.fatigue
    if users is not None:
        satisfaction, fatigue = satisfaction[users], fatigue[users]
    gain = 1.0 + params.activation_satisfaction * satisfaction
    loss = 1.0 - params.activation_fatigue * fatigue
    return np.clip(activity * gain * loss, 0.0, 1.0)


def exit_prob(state: EmotionState, users: np.ndarray, params: EmotionParams) -> np.ndarray:
    """Probability that each of ``users`` leaves the platform after today's session."""
    sat = state.satisfaction[users]
    tolerance = 1.0 - params.boredom_tolerance * np.clip(sat, 0.0, 1.0)
    logit = (
        params.exit_base
        - params.exit_satisfaction * sat
        + params.exit_boredom * state.boredom[users] * tolerance
    )
    return 1.0 / (1.0 + np.exp(-logit))


def on_return(state: EmotionState, users: np.ndarray, base_curiosity: np.ndarray) -> None:
    """A user who comes back starts fresh: neutral mood, rested, baseline curiosity."""
    state.satisfaction[users] = 0.0
    state.fatigue[users] = 0.0
    state.boredom[users] *= 0.5
    state.curiosity[users] = base_curiosity[users]
