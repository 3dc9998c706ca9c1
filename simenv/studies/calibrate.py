"""Calibration (distillation): fit the fast `UtilityDecider` to an LLM persona's choices.

    recloop calibrate filter_bubble_llm --states 200 --out runs/calib

1. **Sample states.** A `World` of the scenario runs ``ticks`` ticks with the fast decider and
   the scenario's first policy (or ``policy``); a share ``explore`` of every slate's slots is
   replaced by random novel items (`simenv.envs.core.explore_slates`) so that slates vary. At
   every session step a random subset of the users in session (about ``states / ticks`` per
   tick) is a *state*: for it the teacher is asked for its choice probabilities right then,
   in one batched call, and the utility features (`agents.deciders.utility_features`) are
   recorded. All draws come from the world's `RngTree` (stream ``env``).
2. **Ask the teacher** for the full probability vector over the slate labels and ``none``
   (`LLMDecider.choice_probabilities`: one ``score`` call per batch, no sampling), which
   carries more information per LLM call than a sampled choice. With contextual calibration
   (``decider.llm.calibration``, the default) these are the calibrated probabilities the
   personas sample from (`agents.label_calibration`), so the fit distils the calibrated
   personas. Rows the backend failed on are dropped and counted.
3. **Fit** the choice weights (`agents.deciders.CHOICE_WEIGHTS`) by maximum likelihood of the
   multinomial logit ``softmax(features @ w / noise)`` against the soft targets (mean
   cross-entropy), with an L2 penalty ``l2/2·|w − w0|²`` toward the scenario's weights ``w0``,
   by Newton's method (the problem is convex). Weights whose feature never varies within a
   slate in the data are not identified and stay at ``w0``.
4. **Evaluate** on held-out *users* (a seeded split): cross-entropy against the teacher's
   probabilities, KL (cross-entropy minus the teacher's entropy), top-1 agreement (argmax vs
   argmax) and total variation, for the fitted weights, the scenario's (default) weights and
   the uniform choice; and the teacher's own answers: entropy, p(none), p(first item) and
   `slate_spread` (how much a persona's answer changes from slate to slate).
5. **Save** ``calibration.json`` (parameters, metrics, sizes, backend and model, scenario,
   seed, LLM calibration), ``llm_calibration.json`` (the label priors divided out, when
   calibrated) and ``utility.yaml`` (``decider: {kind: utility, utility: {...}}``), which
   ``recloop run SCENARIO --utility utility.yaml`` and ``recloop train ... --utility
   utility.yaml`` apply.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import yaml
from pydantic import ValidationError

import policies
from agents.deciders import (
    CHOICE_WEIGHTS,
    BaseDecider,
    DecisionContext,
    UtilityDecider,
    UtilityParams,
    choice_weights,
    utility_features,
)
from scenarios import Scenario, validate
from simenv.studies.run_folder import LLM_CALIBRATION, LLM_STATS, check_output_folder, write_json
from simenv.world import World

MODELS = ("fitted", "default", "uniform")
#: L2 strengths tried by cross-validation when none is given.
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
METRICS = ("cross_entropy", "kl", "top1_agreement", "total_variation", "p_none")


class Teacher(Protocol):
    """What calibration asks: ``(n, k + 1)`` choice probabilities (NaN rows = no answer)."""

    def choice_probabilities(self, ctx: DecisionContext) -> np.ndarray: ...


@dataclass(frozen=True)
class CalibrationConfig:
    """How states are sampled and the weights fitted: the options of `recloop calibrate`, which
    `simenv.cli.add_config_options` builds from the ``help`` and ``metavar`` of each field."""

    states: int = field(default=200, metadata={"help": "user states to sample"})
    ticks: int | None = field(
        default=None, metadata={"help": "ticks to simulate (default: the scenario's)"}
    )
    seed: int | None = field(
        default=None, metadata={"help": "world seed (default: the scenario's first)"}
    )
    policy: str | None = field(
        default=None,
        metadata={"help": "policy filling the slates (default: the scenario's first)"},
    )
    explore: float = field(
        default=0.4,
        metadata={
            "help": "share of each slate replaced by random novel items, for variety",
            "metavar": "SHARE",
        },
    )
    holdout: float = field(
        default=0.25,
        metadata={"help": "share of the users held out for evaluation", "metavar": "SHARE"},
    )
    # None: chosen from L2_GRID by cross-validation over users
    l2: float | None = field(
        default=None,
        metadata={
            "help": "L2 pull toward the scenario's weights (auto: chosen by cross-validation)",
            "metavar": "auto|X",
        },
    )

    def check(self) -> None:
        if self.states < 2:
            raise ValueError(f"--states must be at least 2, got {self.states}")
        if self.ticks is not None and self.ticks < 1:
            raise ValueError(f"--ticks must be positive, got {self.ticks}")
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"--explore must be a share in [0, 1], got {self.explore}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"--holdout must be a share in (0, 1), got {self.holdout}")
        if self.l2 is not None and (self.l2 < 0 or not math.isfinite(self.l2)):
            raise ValueError(f"--l2 must be 'auto' or a finite number >= 0, got {self.l2}")


@dataclass(frozen=True)
class Sampling:
    """How `sample_states` went: states asked for, slates the users in session saw over the
    ticks (the most that could be sampled), states sampled (with the ones the teacher gave no
    usable answer for) and dropped."""

    requested: int
    ticks: int
    slates_seen: int
    sampled: int
    dropped: int

    def shortfall(self) -> str | None:
        """Why fewer states than requested were sampled (None when all were)."""
        if self.sampled >= self.requested:
            return None
        raise_ = "raise --ticks, population.size or population.activity_scale"
        if self.slates_seen < self.requested:
            return (
                f"users in session saw only {self.slates_seen} slates over {self.ticks} "
                f"tick(s), fewer than the {self.requested} states asked for; {raise_}"
            )
        return (
            f"states are spread over the {self.ticks} tick(s) and their session steps, and too "
            f"few users were in session when the quota came due ({self.slates_seen} slates "
            f"seen in all); {raise_}"
        )

    def summary(self) -> str:
        """One line for the command's output: sampled of requested, and why fewer."""
        line = f"sampled {self.sampled} of {self.requested} requested states"
        why = self.shortfall()
        return f"{line}: {why}" if why else line

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shortfall": self.shortfall()}


@dataclass
class StateSet:
    """Sampled states: the utility features and the teacher's probabilities of each."""

    features: np.ndarray  # (S, k + 1, F) float32, see `utility_features`
    targets: np.ndarray  # (S, k + 1) float64 teacher probabilities
    users: np.ndarray  # (S,) int64
    ticks: np.ndarray  # (S,) int64
    sampling: Sampling  # how the states were drawn (of a subset: of the whole set)

    def __len__(self) -> int:
        return int(self.users.size)

    @property
    def dropped(self) -> int:
        """States the teacher gave no usable answer for."""
        return self.sampling.dropped

    def subset(self, mask: np.ndarray) -> StateSet:
        return StateSet(
            self.features[mask], self.targets[mask], self.users[mask], self.ticks[mask],
            self.sampling,
        )  # fmt: skip


@dataclass
class FitResult:
    weights: np.ndarray  # (F,) in CHOICE_WEIGHTS order
    loss: float  # final penalised mean cross-entropy on the training states
    iterations: int
    converged: bool
    identified: list[str]  # weights whose feature varies within slates in the data
    l2: float = 0.0
    l2_cv: dict[str, float] = field(default_factory=dict)  # l2 -> cross-validated CE


@dataclass
class CalibrationResult:
    params: UtilityParams  # the scenario's parameters with the fitted choice weights
    default: UtilityParams  # the scenario's parameters (the start and L2 anchor)
    metrics: dict[str, dict[str, dict[str, float]]]  # split -> model -> metric -> value
    teacher: dict[str, dict[str, float]]  # split -> the teacher's own entropy and p_none
    fit: FitResult
    n_states: dict[str, int]
    n_users: dict[str, int]
    dropped: int
    sampling: Sampling
    config: CalibrationConfig
    seed: int
    ticks: int
    policy: str
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- states


def sample_states(
    scenario: Scenario,
    teacher: Teacher,
    config: CalibrationConfig,
    progress: Callable[[int], None] | None = None,
) -> StateSet:
    """Run the scenario's world and collect about ``config.states`` states (module docstring)."""
    ticks = config.ticks or scenario.ticks
    if ticks > scenario.ticks:  # item capacity for creators is reserved for scenario.ticks
        scenario = scenario.model_copy(update={"ticks": ticks})
    seed = scenario.seeds[0] if config.seed is None else config.seed
    name, params = _policy_spec(scenario, config.policy)
    policy = policies.make(name, **params)
    # the fast decider plays the users (whatever decider.kind says); the teacher is asked
    world = World(scenario, policy, seed=seed, decider=UtilityDecider(scenario.decider.utility))
    rng = world.rngs["env"]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
    dropped = collected = seen = 0
    max_steps = scenario.session.max_steps
    for t in range(ticks):
        if collected >= config.states:
            break
        active = world.begin_tick()
        in_session = active
        quota = math.ceil((config.states - collected) / (ticks - t))  # shortfalls carry over
        for step in range(max_steps):
            if in_session.size == 0:
                break
            seen += in_session.size
            slates = _slates(world, policy, in_session, config.explore, rng)
            take = min(in_session.size, math.ceil(quota / (max_steps - step)))
            if take > 0:
                rows = np.sort(rng.choice(in_session.size, size=take, replace=False))
                ctx = world.decision_context(in_session[rows], slates[rows], step)
                probs = np.asarray(teacher.choice_probabilities(ctx), dtype=np.float64)
                ok = np.isfinite(probs).all(axis=1)
                dropped += int((~ok).sum())
                feats = utility_features(ctx)[ok]
                parts.append((feats, probs[ok], ctx.users[ok], world.tick))
                quota -= take
                collected += take
                if progress is not None:
                    progress(take)
            feedback = world.serve(in_session, slates, step)
            policy.update(feedback)
            in_session = in_session[~feedback.ended_session]
        world.end_tick(active)
    if not parts:
        raise ValueError(
            "no states were collected: no user opened the app; raise --ticks or "
            "population.activity_scale"
        )
    return StateSet(
        features=np.concatenate([p[0] for p in parts]),
        targets=np.concatenate([p[1] for p in parts]),
        users=np.concatenate([p[2] for p in parts]).astype(np.int64),
        ticks=np.concatenate([np.full(p[2].size, p[3], dtype=np.int64) for p in parts]),
        sampling=Sampling(config.states, ticks, seen, collected, dropped),
    )


def _policy_spec(scenario: Scenario, name: str | None) -> tuple[str, dict[str, Any]]:
    if name is not None:
        return name, {}
    first = scenario.policies[0]
    return first.name, dict(first.params)


def _slates(
    world: World,
    policy: policies.Recommender,
    users: np.ndarray,
    explore: float,
    rng: np.random.Generator,
) -> np.ndarray:
    request = world.request(users)
    slates = np.array(policy.recommend(request), dtype=np.int64)  # a copy we may change
    if explore > 0:
        from simenv.envs.core import explore_slates

        explore_slates(request, slates, np.full(users.size, explore), rng)
    return slates


def split_by_user(
    users: np.ndarray, holdout: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, held-out) over states; a random share ``holdout`` of the users
    (at least one, and at least one left for training) is held out."""
    ids = np.unique(users)
    if ids.size < 2:
        raise ValueError(
            f"the states come from {ids.size} user(s); calibration needs at least 2 to hold "
            "some out: raise --states, --ticks or population.size"
        )
    n_hold = min(ids.size - 1, max(1, round(holdout * ids.size)))
    held = rng.permutation(ids)[:n_hold]
    test = np.isin(users, held)
    return ~test, test


# ---------------------------------------------------------------------------- the fit


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def predict(features: np.ndarray, weights: np.ndarray, noise: float) -> np.ndarray:
    """(S, k + 1) multinomial-logit probabilities ``softmax(features @ weights / noise)``."""
    return np.exp(log_softmax(features.astype(np.float64) @ weights / noise))


def fit_choice_weights(
    features: np.ndarray,
    targets: np.ndarray,
    start: np.ndarray,
    *,
    noise: float = 1.0,
    l2: float = 1e-3,
    max_iter: int = 100,
    tol: float = 1e-9,
) -> FitResult:
    """Maximum likelihood of ``softmax(features @ w / noise)`` against soft ``targets``.

    Minimises ``mean_s CE(targets_s, p_s(w)) + l2/2·|w − start|²`` by damped Newton steps
    (exact gradient and Hessian; convex, so the line search always finds a decrease).
    Weights whose feature never varies within a state get no curvature from the data: with
    ``l2 > 0`` they stay at ``start``; with ``l2 = 0`` they are pinned there explicitly.
    """
    x = features.astype(np.float64) / noise  # (S, K, F)
    t = targets / targets.sum(axis=1, keepdims=True)
    w0 = np.asarray(start, dtype=np.float64)
    s = x.shape[0]
    spread = np.abs(x - x.mean(axis=1, keepdims=True)).max(axis=(0, 1))  # (F,)
    free = spread > 1e-9

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        logp = log_softmax(x @ w)
        loss = -float((t * logp).sum()) / s + 0.5 * l2 * float(((w - w0) ** 2).sum())
        return loss, logp

    w = w0.copy()
    loss, logp = objective(w)
    converged, it = False, 0
    flat = x.reshape(-1, x.shape[2])  # (S·K, F): the sums below as matrix products
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        p = np.exp(logp)
        grad = flat.T @ (p - t).ravel() / s + l2 * (w - w0)
        xp = (x * p[:, :, None]).sum(axis=1)
        hess = ((flat * p.reshape(-1, 1)).T @ flat - xp.T @ xp) / s
        hess += l2 * np.eye(w.size)
        grad[~free] = 0.0
        hess[~free, :] = 0.0
        hess[:, ~free] = 0.0
        hess[~free, ~free] = 1.0
        if np.abs(grad).max() < tol:
            converged = True
            break
        step = np.linalg.solve(hess + 1e-12 * np.eye(w.size), grad)
        lr = 1.0
        while lr > 1e-10:
            cand_loss, cand_logp = objective(w - lr * step)
            if cand_loss <= loss - 1e-4 * lr * float(grad @ step):
                break
            lr *= 0.5
        else:
            converged = True  # no decrease possible: at the optimum up to rounding
            break
        w, loss, logp = w - lr * step, cand_loss, cand_logp
    return FitResult(
        weights=w,
        loss=loss,
        iterations=it,
        converged=converged,
        identified=[n for n, f in zip(CHOICE_WEIGHTS, free, strict=True) if f],
    )


def choose_l2(
    states: StateSet,
    start: np.ndarray,
    noise: float,
    rng: np.random.Generator,
    grid: tuple[float, ...] = L2_GRID,
    folds: int = 5,
) -> tuple[float, dict[str, float]]:
    """The L2 strength of ``grid`` with the lowest cross-entropy in a ``folds``-fold
    cross-validation over users (each user's states in one fold), and every strength's score."""
    ids = rng.permutation(np.unique(states.users))
    if ids.size < 2:
        return 1e-2, {}
    fold_of = dict(
        zip(ids.tolist(), (np.arange(ids.size) % min(folds, ids.size)).tolist(), strict=True)
    )
    fold = np.array([fold_of[u] for u in states.users.tolist()])
    scores: dict[str, float] = {}
    for l2 in grid:
        total = 0.0
        for f in np.unique(fold):
            train, test = fold != f, fold == f
            fit = fit_choice_weights(
                states.features[train], states.targets[train], start, noise=noise, l2=l2
            )
            pred = predict(states.features[test], fit.weights, noise)
            total += choice_metrics(pred, states.targets[test])["cross_entropy"] * test.sum()
        scores[f"{l2:g}"] = total / len(states)
    best = min(grid, key=lambda l2: scores[f"{l2:g}"])
    return best, scores


# ---------------------------------------------------------------------------- metrics


def choice_metrics(pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Mean cross-entropy (nats), KL, top-1 agreement, total variation and the predicted
    probability of choosing nothing, of predictions ``pred`` against ``targets`` (S, k + 1)."""
    logq = np.log(np.clip(pred, 1e-300, None))
    ce = -(targets * logq).sum(axis=1)
    entropy = -(targets * np.log(np.clip(targets, 1e-300, None))).sum(axis=1)
    return {
        "cross_entropy": float(ce.mean()),
        "kl": float((ce - entropy).mean()),
        "top1_agreement": float(top1_agreement(pred, targets).mean()),
        "total_variation": float(0.5 * np.abs(pred - targets).sum(axis=1).mean()),
        "p_none": float(pred[:, -1].mean()),
    }


def top1_agreement(pred: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(S,) chance that the prediction's top option is the teacher's top option, ties of the
    prediction broken at random (the uniform choice agrees with probability 1/(k + 1))."""
    top = pred == pred.max(axis=1, keepdims=True)
    hit = top[np.arange(pred.shape[0]), targets.argmax(axis=1)]
    return hit / top.sum(axis=1)


def evaluate(
    states: StateSet, fitted: np.ndarray, default: np.ndarray, noise: float
) -> dict[str, dict[str, float]]:
    """`choice_metrics` of the fitted weights, the default weights and the uniform choice."""
    k1 = states.targets.shape[1]
    preds = {
        "fitted": predict(states.features, fitted, noise),
        "default": predict(states.features, default, noise),
        "uniform": np.full(states.targets.shape, 1.0 / k1),
    }
    return {name: choice_metrics(p, states.targets) for name, p in preds.items()}


def teacher_stats(targets: np.ndarray, users: np.ndarray) -> dict[str, float]:
    """The teacher's mean entropy (the lowest cross-entropy any model can reach), mean
    probability of choosing nothing and of the first slate position, and `slate_spread`."""
    entropy = -(targets * np.log(np.clip(targets, 1e-300, None))).sum(axis=1)
    return {
        "entropy": float(entropy.mean()),
        "p_none": float(targets[:, -1].mean()),
        "p_first": float(targets[:, 0].mean()),
        "slate_spread": slate_spread(targets, users),
    }


def slate_spread(targets: np.ndarray, users: np.ndarray) -> float:
    """How much the teacher's answer depends on the slate: per persona with at least two
    states, the standard deviation over its states (slates) of p(label), averaged over the
    labels; then the mean over those personas. 0 when every persona gives the same answer to
    every slate; NaN when no persona has two states."""
    spreads = [
        float(targets[users == u].std(axis=0).mean())
        for u in np.unique(users)
        if int((users == u).sum()) >= 2
    ]
    return float(np.mean(spreads)) if spreads else float("nan")


# ---------------------------------------------------------------------------- together


def calibrate(
    scenario: Scenario,
    teacher: Teacher,
    config: CalibrationConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> CalibrationResult:
    """Sample states, ask ``teacher``, fit on the training users, evaluate on held-out ones."""
    config = config or CalibrationConfig()
    config.check()
    started = time.perf_counter()
    seed = scenario.seeds[0] if config.seed is None else config.seed
    states = sample_states(scenario, teacher, config, progress)
    from simenv.rng import RngTree

    rng = RngTree(seed)["env"]
    train_mask, test_mask = split_by_user(states.users, config.holdout, rng)
    train, test = states.subset(train_mask), states.subset(test_mask)
    default = scenario.decider.utility
    w0 = choice_weights(default)
    l2, l2_cv = config.l2, dict[str, float]()
    if l2 is None:
        l2, l2_cv = choose_l2(train, w0, default.noise, rng)
    fit = fit_choice_weights(train.features, train.targets, w0, noise=default.noise, l2=l2)
    fit.l2, fit.l2_cv = l2, l2_cv
    params = default.model_copy(
        update={n: float(v) for n, v in zip(CHOICE_WEIGHTS, fit.weights, strict=True)}
    )
    return CalibrationResult(
        params=params,
        default=default,
        metrics={
            "held_out": evaluate(test, fit.weights, w0, default.noise),
            "train": evaluate(train, fit.weights, w0, default.noise),
        },
        teacher={
            "held_out": teacher_stats(test.targets, test.users),
            "train": teacher_stats(train.targets, train.users),
            "all": {
                **teacher_stats(states.targets, states.users),
                # the same measure for the scenario's utility persona on the same states
                "utility_spread": slate_spread(
                    predict(states.features, w0, default.noise), states.users
                ),
            },
        },
        fit=fit,
        n_states={"train": len(train), "held_out": len(test)},
        n_users={
            "train": int(np.unique(train.users).size),
            "held_out": int(np.unique(test.users).size),
        },
        dropped=states.dropped,
        sampling=states.sampling,
        config=config,
        seed=seed,
        ticks=config.ticks or scenario.ticks,
        policy=_policy_spec(scenario, config.policy)[0],
        seconds=time.perf_counter() - started,
    )


def llm_teacher(scenario: Scenario, out: Path | None) -> Any:
    """The `LLMDecider` of ``scenario.decider.llm`` (whatever ``decider.kind`` says), its
    answers cached in ``out/llm_cache.sqlite``."""
    from simenv.studies.factory import make_decider

    raw = scenario.model_dump()
    raw["decider"]["kind"] = "llm"
    return make_decider(validate(raw, source=scenario.name), out)


def run_calibration(
    scenario: Scenario,
    out: Path,
    config: CalibrationConfig | None = None,
    *,
    teacher: Teacher | None = None,
    progress: bool = True,
) -> CalibrationResult:
    """`calibrate` against the scenario's LLM personas (or ``teacher``) and write ``out``."""
    from tqdm import tqdm

    from agents.llm_decider import LLMDecider

    config = config or CalibrationConfig()
    config.check()
    name, params = _policy_spec(scenario, config.policy)
    policies.make(name, **params)  # an unknown policy fails before any model loads
    out = check_output_folder(Path(out), into_run=False)
    out.mkdir(parents=True, exist_ok=True)
    if teacher is None:
        teacher = cast(Teacher, llm_teacher(scenario, out))
    with tqdm(total=config.states, disable=not progress, unit="state", dynamic_ncols=True) as bar:
        result = calibrate(scenario, teacher, config, bar.update)
    if isinstance(teacher, BaseDecider) and (stats := teacher.stats()):
        write_json(out / LLM_STATS, stats)
    if isinstance(teacher, BaseDecider) and (priors := teacher.label_priors()):
        write_json(out / LLM_CALIBRATION, priors)
    backend = getattr(teacher, "backend", None)
    result.meta = {
        "scenario": scenario.name,
        "backend": getattr(backend, "name", type(teacher).__name__),
        "model": getattr(backend, "model", None),
        # contextual calibration of the LLM's answers (`agents.label_calibration`)
        "llm_calibration": teacher.calibration if isinstance(teacher, LLMDecider) else None,
    }
    write_calibration(result, out)
    return result


# ---------------------------------------------------------------------------- files


def utility_document(params: UtilityParams) -> dict[str, Any]:
    """The ``utility.yaml`` mapping: ``decider: {kind: utility, utility: {...}}``."""
    values = {k: float(f"{v:.6g}") for k, v in params.model_dump().items()}
    return {"decider": {"kind": "utility", "utility": values}}


def write_calibration(result: CalibrationResult, out: Path) -> tuple[Path, Path]:
    """Write ``calibration.json`` and ``utility.yaml`` into ``out``; returns their paths."""
    from agents.prompts import PROMPT_VERSION

    out = Path(out)
    doc = {
        **result.meta,
        "seed": result.seed,
        "ticks": result.ticks,
        "policy": result.policy,
        "prompt_version": PROMPT_VERSION,
        "config": asdict(result.config),
        "states": result.sampling.as_dict(),
        "n_states": result.n_states,
        "n_users": result.n_users,
        "dropped_states": result.dropped,
        "choice_weights": list(CHOICE_WEIGHTS),
        "fitted": {n: getattr(result.params, n) for n in CHOICE_WEIGHTS},
        "default": {n: getattr(result.default, n) for n in CHOICE_WEIGHTS},
        "identified": result.fit.identified,
        "fit": {
            "loss": result.fit.loss,
            "iterations": result.fit.iterations,
            "converged": result.fit.converged,
            "l2": result.fit.l2,
            "l2_cross_validation": result.fit.l2_cv,
        },
        "metrics": result.metrics,
        "teacher": result.teacher,
        "params": result.params.model_dump(),
        "seconds": round(result.seconds, 3),
    }
    json_path, yaml_path = out / "calibration.json", out / "utility.yaml"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    header = (
        f"# recloop calibrate: {result.meta.get('scenario')} on "
        f"{result.meta.get('backend')} ({result.meta.get('model')}), seed {result.seed}, "
        f"{sum(result.n_states.values())} states\n"
        "# apply with: recloop run SCENARIO --utility utility.yaml  (or recloop train ...)\n"
    )
    yaml_path.write_text(header + yaml.safe_dump(utility_document(result.params), sort_keys=False))
    return json_path, yaml_path


def format_table(result: CalibrationResult, split: str = "held_out") -> str:
    """The metrics of ``split`` as a text table, one row per model."""
    names = {
        "cross_entropy": "cross-entropy",
        "kl": "KL",
        "top1_agreement": "top-1 agree",
        "total_variation": "total var.",
        "p_none": "p(none)",
    }
    n_s, n_u = result.n_states[split], result.n_users[split]
    lines = [
        f"{split.replace('_', '-')} ({n_s} states, {n_u} users)".ljust(30)
        + "".join(f"{names[m]:>15}" for m in METRICS)
    ]
    for model in MODELS:
        row = result.metrics[split][model]
        lines.append(f"  {model:<28}" + "".join(f"{row[m]:>15.4f}" for m in METRICS))
    teacher = result.teacher[split]
    lines.append(
        f"  {'teacher (LLM) itself':<28}{teacher['entropy']:>15.4f}{0:>15.4f}{1:>15.4f}"
        f"{0:>15.4f}{teacher['p_none']:>15.4f}"
    )
    lines.append("  (the teacher's cross-entropy is its entropy: the lowest any model can reach)")
    every = result.teacher["all"]
    lines.append(
        f"teacher's answers (all states): p(none) {every['p_none']:.4f}, p(first item) "
        f"{every['p_first']:.4f}, spread across a persona's slates {every['slate_spread']:.4f} "
        f"(the scenario's utility persona: {every['utility_spread']:.4f})"
    )
    lines.append(
        "  (spread: mean over personas of the std of p(label) over their slates; 0 = the "
        "answer ignores the slate)"
    )
    return "\n".join(lines)


def utility_overrides(path: str | Path) -> list[str]:
    """``--set`` overrides (``decider.kind=...``, ``decider.utility.<name>=...`` and, from a
    ``fitted.yaml`` of `recloop fit`, ``population.persona_model=...`` and
    ``population.mf.<name>=...``) from a ``utility.yaml`` written by `recloop calibrate` or
    `recloop fit` (or any file of that shape)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--utility: file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(
            f"--utility {path}: not valid YAML ({' '.join(str(exc).split())})"
        ) from exc
    doc = doc if isinstance(doc, dict) else {}
    decider = doc.get("decider")
    decider = decider if isinstance(decider, dict) else {}
    utility = decider.get("utility")
    population = doc.get("population", {})
    extra = sorted(set(map(str, doc)) - {"decider", "population"})
    extra += sorted(set(map(str, decider)) - {"kind", "utility"})
    if isinstance(population, dict):
        extra += [f"population.{k}" for k in sorted(set(map(str, population)) - _POPULATION)]
    if not isinstance(utility, dict) or not isinstance(population, dict) or extra:
        raise ValueError(
            f"--utility {path}: expected a mapping decider: {{kind: ..., utility: {{...}}}} "
            "(and optionally population: {persona_model: ..., mf: {...}}) as written by "
            "`recloop calibrate` or `recloop fit`"
            + (f" (unexpected field(s): {', '.join(extra)})" if extra else "")
        )
    _check_utility_file(path, utility, population)
    out = [f"decider.kind={decider['kind']}"] if "kind" in decider else []
    for key, value in utility.items():
        out.append(f"decider.utility.{key}={_yaml_scalar(value)}")
    if "persona_model" in population:
        out.append(f"population.persona_model={_yaml_scalar(population['persona_model'])}")
    for key, value in (population.get("mf") or {}).items():
        out.append(f"population.mf.{key}={_yaml_scalar(value)}")
    return out


#: The population fields a utility file may set (`recloop fit` writes them).
_POPULATION = {"persona_model", "mf"}


def _check_utility_file(path: Path, utility: dict[str, Any], population: dict[str, Any]) -> None:
    """Validate the decider.utility and population parts, naming the file and field."""
    from scenarios import format_validation_error
    from scenarios.schema import PopulationConfig

    try:
        UtilityParams.model_validate(utility)
    except ValidationError as exc:
        msg = format_validation_error(exc).replace("field '", "field 'decider.utility.")
        raise ValueError(f"--utility {path}: {msg}") from exc
    try:
        PopulationConfig.model_validate(population)
    except ValidationError as exc:
        msg = format_validation_error(exc).replace("field '", "field 'population.")
        raise ValueError(f"--utility {path}: {msg}") from exc


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("...").strip()


__all__ = [
    "CalibrationConfig",
    "CalibrationResult",
    "FitResult",
    "Sampling",
    "StateSet",
    "Teacher",
    "calibrate",
    "choice_metrics",
    "fit_choice_weights",
    "format_table",
    "run_calibration",
    "sample_states",
    "split_by_user",
    "utility_overrides",
    "write_calibration",
]
