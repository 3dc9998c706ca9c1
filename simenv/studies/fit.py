"""`recloop fit`: parametric users fitted to MovieLens-100k by maximum likelihood.

    recloop fit --dataset movielens-100k --out fitted.yaml
    recloop validate --dataset movielens-100k --utility fitted.yaml --out runs/val-fitted
    recloop run popularity_bias --utility fitted.yaml

Only the *training part* of `recloop validate`'s split is used (the first ``train_share`` of
each user's ratings by time; the held-out part is dropped as soon as the file is read), so
validating the fitted file on the held-out part is honest (a test changes every held-out
rating and gets the same file). Within the training part the same split is
made again (``inner_share``): the personas, item statistics and latent factors are built from
its first part exactly as `recloop validate` builds them from the whole training part, and the
weights are fitted to what those personas should predict on its later part:

1. **Choice weights** (`agents.deciders.CHOICE_WEIGHTS`): each later-part item rated >= 4
   (watched) and, per positive, one item the user never rated in the training part, drawn
   uniformly and one matched on popularity (not watched), shown alone as in validation. The
   choice "item or none" is a multinomial logit over the two options with the utility
   decider's own features (`agents.deciders.utility_features`), fitted by Newton's method
   with an L2 pull toward the default weights whose strength is chosen by 5-fold
   cross-validation over users (`simenv.studies.calibrate.fit_choice_weights`,
   `choose_l2`). Weights whose feature never varies here (boredom, social, repeat,
   position, fatigue: a persona at rest, shown one item) keep their defaults. The no-choice
   utility is therefore the one of this question (half of the items asked about were
   watched), not a click-through rate of slates.
2. **Rating model**: ``clip(round(μ + N(0, σ²)), 1, 5)`` with ``μ = rating_base +
   rating_taste·(match − 0.4) + rating_quality·(q − ½) + rating_latent·latent + bias_u`` is an
   ordered probit with cuts at 1.5..4.5; ``rating_base``, ``rating_taste``,
   ``rating_quality``, ``rating_latent`` and ``rating_noise`` (σ) maximise the likelihood of
   every later-part rating (BFGS on the exact gradient).

``fitted.yaml`` holds ``population: {persona_model: mf, mf: {...}}`` and ``decider: {kind:
utility, utility: {...}}``, which ``--utility`` applies to any MovieLens scenario; the
sidecar ``fitted.json`` records the data, the split, the sizes, the cross-validation and the
fit's metrics on the part it was fitted on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from agents.deciders import (
    CHOICE_WEIGHTS,
    UtilityDecider,
    UtilityParams,
    choice_weights,
    latent_match,
    normal_cdf,
    slate_terms,
    star_probabilities,
    utility_features,
)
from scenarios.schema import Scenario
from simenv.studies import fidelity as fm
from simenv.studies.validate import (
    DATASETS,
    TrainingWorld,
    ValidateConfig,
    popularity_bins,
    sample_candidates,
    time_split,
    training_data,
    training_world,
    validation_scenario,
)

RATING_PARAMS = ("rating_base", "rating_taste", "rating_quality", "rating_latent")


@dataclass(frozen=True)
class FitConfig:
    """The options of `recloop fit` (built by `simenv.cli.add_config_options`)."""

    dataset: str = field(
        default="movielens-100k", metadata={"help": "dataset to fit to", "metavar": "NAME"}
    )
    data: Path | None = field(
        default=None,
        metadata={
            "help": "MovieLens-100k folder (default: $RECLOOP_DATA, then the cache)",
            "metavar": "DIR",
        },
    )
    out: Path = field(
        default=Path("fitted.yaml"),
        metadata={"help": "the fitted file (fitted.json is written beside it)", "metavar": "FILE"},
    )
    train_share: float = field(
        default=0.8,
        metadata={
            "help": "share of each user's ratings (oldest first) that the fit may read: "
            "validate's training part",
            "metavar": "SHARE",
        },
    )
    inner_share: float = field(
        default=0.8,
        metadata={
            "help": "the training part's own split: personas from its first share, weights "
            "fitted on the rest",
            "metavar": "SHARE",
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the negatives and the folds"})

    def check(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset '{self.dataset}' (known: {', '.join(DATASETS)})")
        for name in ("train_share", "inner_share"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be in (0, 1), got {value}")
        if self.out.suffix not in (".yaml", ".yml"):
            raise ValueError(f"--out must name a .yaml file, got {self.out}")


@dataclass
class FitResult:
    params: UtilityParams
    scenario: Scenario  # the persona model the weights belong to
    choice: dict[str, Any]
    rating: dict[str, Any]
    sizes: dict[str, int]
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


def fit_scenario(config: FitConfig, overrides: list[str] | None = None) -> Scenario:
    """The scenario whose weights are fitted: validate's, with ``persona_model: mf``."""
    vc = ValidateConfig(data=config.data, seed=config.seed, behaviour_ticks=0)
    return validation_scenario(vc, ["population.persona_model=mf", *(overrides or [])])


def fit(
    scenario: Scenario, config: FitConfig, progress: Callable[[str], None] | None = None
) -> FitResult:
    """Fit the choice weights and the rating model (module docstring) on the training part."""
    from simenv.data.movielens import load_movielens
    from simenv.studies.calibrate import Sampling, StateSet, choose_l2, fit_choice_weights

    config.check()
    started = time.perf_counter()
    say = progress or (lambda _: None)
    ml = load_movielens(scenario.catalog.data_path)
    visible = time_split(ml.ratings, config.train_share).train  # the held-out part stays out
    inner = time_split(visible, config.inner_share)
    say("personas and latent factors from the training part's first part")
    default = scenario.decider.utility
    tw = training_world(scenario, training_data(ml, inner), UtilityDecider(default))
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(11,)))
    users = np.unique(inner.test.loc[inner.test["rating"] >= 4, "user"].to_numpy())
    candidates = sample_candidates(inner, users, ml.n_items, popularity_bins(tw.counts), (1,), rng)
    rows = candidates  # each positive once per scheme, with its one negative of the scheme
    say(f"choice weights: {len(rows)} watched / not-watched pairs")
    u, items = rows["user"].to_numpy(), rows["item"].to_numpy()
    ctx = tw.world.decision_context(u, items[:, None], step=0)
    features = utility_features(ctx)
    label = rows["label"].to_numpy()
    targets = np.stack([label, 1 - label], axis=1).astype(np.float64)
    pairs = Sampling(requested=u.size, ticks=0, slates_seen=u.size, sampled=u.size, dropped=0)
    states = StateSet(features, targets, u, np.zeros(u.size, dtype=np.int64), pairs)
    w0 = choice_weights(default)
    l2, l2_cv = choose_l2(states, w0, default.noise, rng)
    result = fit_choice_weights(features, targets, w0, noise=default.noise, l2=l2)
    weights = {n: float(v) for n, v in zip(CHOICE_WEIGHTS, result.weights, strict=True)}
    logit = (features.astype(np.float64) @ result.weights) / default.noise
    score = logit[:, 0] - logit[:, 1]
    choice = {
        "weights": weights,
        "identified": result.identified,
        "l2": l2,
        "l2_cross_validation": l2_cv,
        "loss": result.loss,
        "converged": result.converged,
        "fitted_part": {
            scheme: fm.per_user(u[m], label[m], score[m], score[m] > 0)
            for scheme in ("uniform", "popularity")
            for m in [rows["scheme"].to_numpy() == scheme]
        },
    }
    say(f"rating model: {len(inner.test)} ratings")
    rating = fit_rating_model(tw, inner.test, default)
    params = default.model_copy(update={**weights, **rating["params"]})
    return FitResult(
        params=params,
        scenario=scenario,
        choice=choice,
        rating=rating,
        sizes={
            "ratings_read": len(visible),
            "persona_ratings": len(inner.train),
            "fit_ratings": len(inner.test),
            "choice_pairs": len(rows),
            "users": int(users.size),
        },
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------- ratings


def rating_design(
    tw: TrainingWorld, ratings: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 4) columns multiplying `RATING_PARAMS` (1, match − 0.4, q − ½, latent match), the
    (n,) fixed offsets (the persona's rating bias) and the (n,) stars of ``ratings``."""
    u, items = ratings["user"].to_numpy(), ratings["item"].to_numpy()
    ctx = tw.world.decision_context(u, items[:, None], step=0)
    match = slate_terms(ctx).match[:, 0].astype(np.float64)
    lat = latent_match(ctx, items[:, None])
    latent = np.zeros(u.size) if lat is None else lat[:, 0].astype(np.float64)
    quality = ctx.item_quality[items].astype(np.float64)
    x = np.column_stack([np.ones(u.size), match - 0.4, quality - 0.5, latent])
    offset = ctx.persona.rating_bias[u].astype(np.float64)
    return x, offset, ratings["rating"].to_numpy(np.float64)


def fit_rating_model(
    tw: TrainingWorld, ratings: pd.DataFrame, start: UtilityParams
) -> dict[str, Any]:
    """Maximum likelihood of the ordered probit of the module docstring on ``ratings``."""
    x, offset, stars = rating_design(tw, ratings)
    theta0 = np.array([*(getattr(start, n) for n in RATING_PARAMS), np.log(start.rating_noise)])
    theta, nll, iterations = minimize_bfgs(lambda t: probit_nll(t, x, offset, stars), theta0)
    params = {n: float(v) for n, v in zip(RATING_PARAMS, theta[:4], strict=True)}
    params["rating_noise"] = float(np.exp(theta[4]))
    probs = star_probabilities(x @ theta[:4] + offset, params["rating_noise"])
    data = fm.rating_distribution(stars)
    return {
        "params": params,
        "neg_log_likelihood": nll,
        "iterations": iterations,
        "fitted_part": {
            "total_variation": fm.total_variation(probs.mean(axis=0), data),
            "share_1_2": {"data": float(data[:2].sum()), "model": float(probs.mean(0)[:2].sum())},
        },
    }


def probit_nll(
    theta: np.ndarray, x: np.ndarray, offset: np.ndarray, stars: np.ndarray
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of ``stars`` under the ordered probit and its gradient in
    ``theta`` = (coefficients of ``x``, log σ)."""
    sigma = float(np.exp(theta[-1]))
    mu = x @ theta[:-1] + offset
    lo = np.where(stars <= 1, -np.inf, stars - 0.5)
    hi = np.where(stars >= 5, np.inf, stars + 0.5)
    z_lo, z_hi = (lo - mu) / sigma, (hi - mu) / sigma
    right = z_lo > 0  # the band is right of the mean: take it from the upper tail
    p = np.where(right, normal_cdf(-z_lo) - normal_cdf(-z_hi), normal_cdf(z_hi) - normal_cdf(z_lo))
    p = np.maximum(p, 1e-300)
    pdf_lo, pdf_hi = _pdf(z_lo), _pdf(z_hi)
    zpdf_lo = np.where(np.isfinite(z_lo), z_lo, 0.0) * pdf_lo  # z·φ(z) -> 0 at ±inf
    zpdf_hi = np.where(np.isfinite(z_hi), z_hi, 0.0) * pdf_hi
    d_mu = (pdf_lo - pdf_hi) / (sigma * p)  # d log p / d mu
    d_log_sigma = (zpdf_lo - zpdf_hi) / p
    n = stars.size
    grad = np.concatenate([-(x.T @ d_mu) / n, [-d_log_sigma.sum() / n]])
    return float(-np.log(p).mean()), grad


def _pdf(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return np.where(np.isfinite(z), out, 0.0)


def minimize_bfgs(
    f: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    max_iter: int = 500,
    tol: float = 1e-8,
) -> tuple[np.ndarray, float, int]:
    """Minimise a smooth ``f`` (returning value and gradient) by BFGS with a backtracking
    line search; returns (x, f(x), iterations)."""
    x = np.asarray(x0, dtype=np.float64).copy()
    value, grad = f(x)
    h = np.eye(x.size)
    it = 0
    for it in range(1, max_iter + 1):
        if np.abs(grad).max() < tol:
            break
        direction = -h @ grad
        if grad @ direction >= 0:  # not a descent direction: restart from the gradient
            h = np.eye(x.size)
            direction = -grad
        step = 1.0
        while True:
            cand = x + step * direction
            cand_value, cand_grad = f(cand)
            if np.isfinite(cand_value) and cand_value <= value + 1e-4 * step * grad @ direction:
                break
            step *= 0.5
            if step < 1e-12:
                return x, value, it
        s, y = cand - x, cand_grad - grad
        sy = float(s @ y)
        if sy > 1e-12:
            rho = 1.0 / sy
            eye = np.eye(x.size)
            h = (eye - rho * np.outer(s, y)) @ h @ (eye - rho * np.outer(y, s)) + rho * np.outer(
                s, s
            )
        x, value, grad = cand, cand_value, cand_grad
    return x, value, it


# ---------------------------------------------------------------------------- files


def fitted_document(result: FitResult) -> dict[str, Any]:
    """The ``fitted.yaml`` mapping: the persona model and the utility decider's weights."""
    pop = result.scenario.population
    values = {k: float(f"{v:.6g}") for k, v in result.params.model_dump().items()}
    return {
        "population": {"persona_model": pop.persona_model, "mf": pop.mf.model_dump()},
        "decider": {"kind": "utility", "utility": values},
    }


def write_fit(result: FitResult, out: Path) -> tuple[Path, Path]:
    """Write ``out`` (fitted.yaml) and the sidecar ``<stem>.json``; returns their paths."""
    from simenv.studies.provenance import provenance
    from simenv.studies.run_folder import write_json, write_text

    cfg = result.meta.get("config", {})
    header = (
        f"# recloop fit: {cfg.get('dataset')}, persona model mf, choice weights and rating "
        f"model by maximum likelihood on the first {cfg.get('train_share')} of each user's "
        "ratings by time (recloop validate's training part)\n"
        f"# details: {out.with_suffix('.json').name}; apply with: recloop validate|run ... "
        f"--utility {out.name}\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    yaml_path = write_text(out, header + yaml.safe_dump(fitted_document(result), sort_keys=False))
    doc = {
        **result.meta,
        "made_with": provenance(result.scenario),
        "sizes": result.sizes,
        "choice": result.choice,
        "rating": result.rating,
        "params": result.params.model_dump(),
        "seconds": round(result.seconds, 2),
    }
    json_path = write_json(out.with_suffix(".json"), doc)
    return yaml_path, json_path


def run_fit(
    config: FitConfig,
    overrides: list[str] | None = None,
    progress: bool = True,
    write: bool = True,
) -> FitResult:
    """`fit` on `fit_scenario`; writes the files unless ``write`` is false."""
    import sys

    config.check()
    if write:
        check_output_file(Path(config.out))
    scenario = fit_scenario(config, overrides)
    say = (lambda text: print(f"fit: {text}", file=sys.stderr)) if progress else None
    result = fit(scenario, config, say)
    result.meta = {"dataset": config.dataset, "config": _jsonable(config)}
    if write:
        write_fit(result, config.out)
    return result


def check_output_file(out: Path) -> None:
    """Refuse, before fitting, an ``--out`` that is a folder, lies under a file or cannot be
    written (`check_output_folder` on the file's path, or on its folder when it exists)."""
    from simenv.studies.run_folder import OutputFolderError, check_output_folder

    if str(out) == "" or out.is_dir():
        raise OutputFolderError(f"--out {str(out)!r} must name a file (fitted.yaml), not a folder")
    check_output_folder(out.parent if out.exists() else out)


def _jsonable(config: FitConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
