"""Calibration (distillation): utility features, the fit, `recloop calibrate` and applying it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import policies
from agents.deciders import (
    CHOICE_WEIGHTS,
    DecisionContext,
    Decisions,
    SlateTerms,
    UtilityDecider,
    UtilityParams,
    choice_weights,
    slate_terms,
    utility_features,
)
from agents.llm_decider import LLMDecider
from scenarios import Scenario, load, validate
from simenv.cli import main
from simenv.llm import LLMError
from simenv.llm.fake import FakeBackend
from simenv.studies import calibrate as cal
from simenv.world import World

#: Non-default choice weights for the known-answer tests.
TRUE = UtilityParams(
    taste=3.0,
    quality=2.5,
    popularity=0.5,
    novelty=2.0,
    boredom=1.0,
    social=2.0,
    repeat=1.0,
    position=0.8,
    no_choice=2.0,
    fatigue=1.0,
)


def _scenario(**over: Any) -> Scenario:
    raw: dict[str, Any] = {
        "name": "calib_tiny",
        "ticks": 4,
        "population": {"size": 150, "activity_scale": 2.0},
        "catalog": {"n_items": 200, "n_topics": 6, "n_creators": 10},
        "session": {"slate_size": 5, "max_steps": 2, "memory": 8},
        "social": {"degree": 4, "share_prob": 0.8},
    }
    raw.update(over)
    return validate(raw, source="test")


# ---------------------------------------------------------------------------- the refactor


class _ReferenceUtilityDecider(UtilityDecider):
    """The utility formula and decide() as they were before `utility_features` existed."""

    def utilities(self, ctx: DecisionContext, terms: SlateTerms) -> tuple[np.ndarray, np.ndarray]:
        p, u, e = self.params, ctx.users, ctx.emotion
        k = ctx.slates.shape[1]
        conformity = ctx.persona.conformity[u][:, None]
        curiosity = e.curiosity[u][:, None]
        boredom = e.boredom[u][:, None]
        util = (
            p.taste * terms.match
            + p.quality * (ctx.item_quality[ctx.slates] - 0.5)
            + p.popularity * conformity * ctx.item_popularity[ctx.slates]
            + p.novelty * curiosity * (1.0 - terms.similarity)
            - p.boredom * boredom * terms.similarity
            + p.social * terms.shared
            - p.repeat * terms.repeat
            - p.position * np.log1p(np.arange(k))[None, :]
        )
        none = p.no_choice + p.fatigue * e.fatigue[u]
        return util.astype(np.float32), none.astype(np.float32)

    def decide(self, ctx: DecisionContext) -> Decisions:
        p, n = self.params, ctx.users.shape[0]
        terms = slate_terms(ctx)
        util, none = self.utilities(ctx, terms)
        full = np.concatenate([util, none[:, None]], axis=1)
        noisy = full + p.noise * ctx.rng.gumbel(size=full.shape)
        pick = np.argmax(noisy, axis=1)
        chose = pick < util.shape[1]
        chosen_pos = np.where(chose, pick, -1).astype(np.int64)
        rows = np.arange(n)
        slot = np.minimum(pick, util.shape[1] - 1)
        rating = self._rating(ctx, terms.match[rows, slot], ctx.slates[rows, slot])
        rating = np.where(chose, rating, np.nan).astype(np.float32)
        ended = self._ends(ctx, chose, ctx.rng.random(n))
        return Decisions(chosen_pos=chosen_pos, rating=rating, ended_session=ended)

    def _rating(self, ctx: DecisionContext, match: np.ndarray, items: np.ndarray) -> np.ndarray:
        p = self.params
        latent = (
            3.0
            + p.rating_taste * (match - 0.4)
            + p.rating_quality * (ctx.item_quality[items] - 0.5)
            + ctx.persona.rating_bias[ctx.users]
            + p.rating_noise * ctx.rng.standard_normal(match.shape[0])
        )
        return np.clip(np.rint(latent), 1, 5)


def _busy_context(world: World, users: np.ndarray) -> DecisionContext:
    """A context whose slates hold recently consumed and friend-shared items too."""
    slates = world.policy.recommend(world.request(users))  # type: ignore[union-attr]
    slates[:, 1] = world.users.recent[users, 0]
    slates[:, 2] = world.users.inbox[users, 0]
    ok = (slates >= 0).all(axis=1) & (slates[:, 1] != slates[:, 2])
    ok &= np.array([np.unique(s).size == s.size for s in slates])
    return world.decision_context(users[ok], slates[ok], 0)


def test_utility_features_give_the_old_utilities() -> None:
    world = World(_scenario(), policies.make("popularity"), seed=1)
    world.run(3)
    world.users.recent[:, 0] = np.where(world.users.recent[:, 0] >= 0, world.users.recent[:, 0], 5)
    world.users.inbox[:, 0] = np.where(world.users.inbox[:, 0] >= 0, world.users.inbox[:, 0], 7)
    ctx = _busy_context(world, np.arange(world.n_users))
    assert ctx.users.size > 50
    terms = slate_terms(ctx)
    assert terms.repeat.any() and terms.shared.any() and (terms.similarity != 0).any()
    feats = utility_features(ctx)
    assert feats.shape == (ctx.users.size, 6, len(CHOICE_WEIGHTS)) and feats.dtype == np.float32
    for params in (UtilityParams(), TRUE):
        old_util, old_none = _ReferenceUtilityDecider(params).utilities(ctx, terms)
        old = np.concatenate([old_util, old_none[:, None]], axis=1)
        np.testing.assert_allclose(feats @ choice_weights(params), old, atol=2e-5)
        util, none = UtilityDecider(params).utilities(ctx, terms)
        np.testing.assert_allclose(util, old_util, atol=2e-5)
        np.testing.assert_allclose(none, old_none, atol=2e-5)
        probs = UtilityDecider(params).choice_probabilities(ctx)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
        np.testing.assert_allclose(
            probs, cal.predict(feats, choice_weights(params), 1.0), atol=1e-6
        )


@pytest.mark.parametrize("name", ["filter_bubble", "boredom"])
def test_utility_decider_decisions_unchanged(name: str) -> None:
    """Same seed, same decisions as the formula before the refactor, over whole runs."""
    sc = load(name, ["ticks=4", "population.size=200", "catalog.n_items=300"])
    frames = []
    for decider in (
        UtilityDecider(sc.decider.utility),
        _ReferenceUtilityDecider(sc.decider.utility),
    ):
        world = World(sc, policies.make("mf"), seed=7, decider=decider)
        world.run()
        frames.append(world.interactions_frame())
    assert len(frames[0]) > 500
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_llm_choice_probabilities_are_the_choice_question() -> None:
    world = World(_scenario(), policies.make("popularity"), seed=0)
    world.run(1)
    users = np.arange(6)
    ctx = world.decision_context(users, world.policy.recommend(world.request(users)), 0)  # type: ignore[union-attr]
    backend = FakeBackend(seed=4)
    d = LLMDecider(backend, calibration="none")
    state = ctx.rng.bit_generator.state
    probs = d.choice_probabilities(ctx)
    assert ctx.rng.bit_generator.state == state  # no draws
    systems = d.system_prompts(ctx)
    prompts = d.choice_prompts(ctx, systems, d.memory_texts(ctx), d.emotion_texts(ctx))
    labels = d.choice_labels(5)
    raw = np.stack(backend.score(prompts, [labels] * 6))
    np.testing.assert_allclose(probs, raw)
    assert probs.shape == (6, 6)
    # contextual calibration (the default): the answers divided by each persona's label prior
    # (the mean answer to its content-free prompts), what the decider samples from
    d = LLMDecider(backend)
    calibrated = d.choice_probabilities(ctx)
    assert ctx.rng.bit_generator.state == state
    for row, system in enumerate(systems):
        free = d.content_free_prompts("choice", 5, system)
        prior = np.stack(backend.score(free, [labels] * len(free))).mean(axis=0)
        expected = raw[row] / prior
        np.testing.assert_allclose(calibrated[row], expected / expected.sum(), rtol=1e-12)
    # failed rows are NaN with utility_fallback, an LLMError with fail
    bad = LLMDecider(FakeBackend(garbage=True), on_error="utility_fallback")
    assert np.isnan(bad.choice_probabilities(ctx)).all()
    with pytest.raises(LLMError):
        LLMDecider(FakeBackend(garbage=True)).choice_probabilities(ctx)


# ---------------------------------------------------------------------------- the fit


def test_fit_recovers_weights_from_exact_probabilities() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6, len(CHOICE_WEIGHTS))).astype(np.float32)
    x[:, :, 6] = 0.0  # a feature that never varies: not identified, kept at the start
    true = choice_weights(TRUE)
    targets = cal.predict(x, true, noise=0.5)
    start = choice_weights(UtilityParams())
    fit = cal.fit_choice_weights(x, targets, start, noise=0.5, l2=0.0)
    assert fit.converged and fit.iterations < 30
    free = [n != "repeat" for n in CHOICE_WEIGHTS]
    np.testing.assert_allclose(fit.weights[free], true[free], atol=1e-5)
    assert fit.weights[6] == start[6] and "repeat" not in fit.identified
    # a strong L2 keeps the weights near the start
    pulled = cal.fit_choice_weights(x, targets, start, noise=0.5, l2=1e3)
    assert np.abs(pulled.weights - start).max() < 0.05


def test_slate_spread_by_hand() -> None:
    targets = np.array([[0.5, 0.5], [0.7, 0.3], [0.2, 0.8], [0.2, 0.8], [0.9, 0.1]])
    users = np.array([0, 0, 1, 1, 2])  # user 2 has one state: not counted
    # user 0: std 0.1 for both labels; user 1: 0
    assert cal.slate_spread(targets, users) == pytest.approx(0.05)
    assert np.isnan(cal.slate_spread(targets[:1], users[:1]))
    stats = cal.teacher_stats(targets, users)
    assert stats["p_none"] == pytest.approx(0.5) and stats["p_first"] == pytest.approx(0.5)


def test_metrics_by_hand() -> None:
    targets = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    pred = np.array([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25]])
    m = cal.choice_metrics(pred, targets)
    assert m["cross_entropy"] == pytest.approx(np.log(4) / 2 + np.log(2) / 2)
    assert m["kl"] == pytest.approx((np.log(4) - np.log(2) + np.log(2)) / 2)
    assert m["top1_agreement"] == 0.5  # row 0: argmax 2 vs 0; row 1: 0 vs 0
    assert m["total_variation"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["p_none"] == pytest.approx(0.375)


def test_split_by_user_is_disjoint_and_seeded() -> None:
    users = np.repeat(np.arange(20), 3)
    a_train, a_test = cal.split_by_user(users, 0.25, np.random.default_rng(3))
    _, b_test = cal.split_by_user(users, 0.25, np.random.default_rng(3))
    np.testing.assert_array_equal(a_test, b_test)
    assert not set(users[a_train]) & set(users[a_test])
    assert len(set(users[a_test])) == 5 and (a_train ^ a_test).all()
    with pytest.raises(ValueError, match="at least 2"):
        cal.split_by_user(np.zeros(4, dtype=np.int64), 0.25, np.random.default_rng(0))


def test_known_answer_recovers_utility_params() -> None:
    """A teacher that IS a utility decider with known non-default weights is recovered."""
    sc = _scenario()
    config = cal.CalibrationConfig(states=500, l2=1e-6)
    result = cal.calibrate(sc, UtilityDecider(TRUE), config)
    assert sum(result.n_states.values()) >= 400 and result.dropped == 0
    assert result.n_users["held_out"] >= 10
    assert "repeat" not in result.fit.identified  # no policy shows recently consumed items
    assert result.params.repeat == UtilityParams().repeat  # ... so it stays at the default
    for name in result.fit.identified:
        tol = 0.3 if name == "boredom" else 0.1  # boredom·similarity varies little
        assert getattr(result.params, name) == pytest.approx(getattr(TRUE, name), abs=tol), name
    held = result.metrics["held_out"]
    assert held["fitted"]["kl"] < 1e-3 < held["default"]["kl"]
    assert held["fitted"]["cross_entropy"] < held["default"]["cross_entropy"]
    assert held["fitted"]["cross_entropy"] < held["uniform"]["cross_entropy"]
    assert held["fitted"]["top1_agreement"] > 0.95 > held["default"]["top1_agreement"]
    assert held["fitted"]["total_variation"] < 0.02
    assert result.params.rating_taste == UtilityParams().rating_taste  # only choice weights
    # the same seed gives the same calibration; the default l2 is cross-validated
    again = cal.calibrate(sc, UtilityDecider(TRUE), config)
    assert again.params == result.params and again.metrics == result.metrics
    auto = cal.calibrate(sc, UtilityDecider(TRUE), cal.CalibrationConfig(states=200))
    assert set(auto.fit.l2_cv) == {f"{v:g}" for v in cal.L2_GRID}
    assert auto.fit.l2 == min(cal.L2_GRID, key=lambda v: auto.fit.l2_cv[f"{v:g}"])


# ---------------------------------------------------------------------------- the CLI

FAKE = ["--backend", "fake", "--set", "decider.llm.embeddings=topics"]


def test_cli_calibrate_fake_backend_and_apply(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "cal"
    args = ["calibrate", "filter_bubble_llm", *FAKE, "--set", "population.size=30"]
    assert main([*args, "--states", "40", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "fitted" in printed and "uniform" in printed and "utility.yaml" in printed
    assert "calibrated: contextual" in printed and "spread across a persona's slates" in printed
    files = {"calibration.json", "utility.yaml", "llm_stats.json", "llm_calibration.json"}
    assert files <= {p.name for p in out.iterdir()}
    doc = json.loads((out / "calibration.json").read_text())
    assert doc["backend"] == "fake" and doc["model"] == "fake-1"
    assert doc["llm_calibration"] == "contextual"
    assert set(doc["teacher"]) == {"held_out", "train", "all"}
    assert set(doc["teacher"]["all"]) == {
        "entropy", "p_none", "p_first", "slate_spread", "utility_spread"
    }  # fmt: skip
    assert doc["teacher"]["all"]["utility_spread"] > 0  # the utility persona reads the slate
    priors = json.loads((out / "llm_calibration.json").read_text())
    assert [q["kind"] for q in priors["questions"]] == ["choice"]  # calibrate asks only that
    assert doc["scenario"] == "filter_bubble_llm" and doc["seed"] == 0
    assert sum(doc["n_states"].values()) >= 30
    for model in ("fitted", "default", "uniform"):
        assert set(doc["metrics"]["held_out"][model]) == set(cal.METRICS)
    assert set(doc["fitted"]) == set(CHOICE_WEIGHTS)
    applied = yaml.safe_load((out / "utility.yaml").read_text())
    assert applied["decider"]["kind"] == "utility"
    assert applied["decider"]["utility"]["taste"] == pytest.approx(doc["fitted"]["taste"], 1e-5)
    UtilityParams.model_validate(applied["decider"]["utility"])

    run = tmp_path / "run"
    args = ["run", "filter_bubble_llm", "--utility", str(out / "utility.yaml")]
    args += ["--set", "ticks=1", "--set", "decider.utility.noise=2", "--out", str(run)]
    assert main([*args, "--no-progress"]) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["decider"]["kind"] == "utility"
    for name in CHOICE_WEIGHTS:
        assert config["decider"]["utility"][name] == applied["decider"]["utility"][name]
    assert config["decider"]["utility"]["noise"] == 2  # --set comes after --utility


def test_cli_calibrate_says_why_fewer_states_were_sampled(tmp_path: Path, capsys: Any) -> None:
    """16 users, 5 ticks, one slate a session: fewer slates are shown than 200 states asked
    for; the output and calibration.json say how many were sampled and what to raise."""
    out = tmp_path / "cal"
    args = ["calibrate", "filter_bubble_llm", *FAKE, "--no-progress"]
    assert main([*args, "--states", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "calibration.json").read_text())
    states = doc["states"]
    assert states["requested"] == 200 and states["ticks"] == 5
    assert 0 < states["sampled"] == states["slates_seen"] < 200
    assert states["sampled"] == sum(doc["n_states"].values()) + states["dropped"]
    why = (
        f"users in session saw only {states['slates_seen']} slates over 5 tick(s), fewer than "
        "the 200 states asked for; raise --ticks, population.size or population.activity_scale"
    )
    assert states["shortfall"] == why
    assert f"states: sampled {states['sampled']} of 200 requested states: {why}" in printed
    # enough users: all requested states are sampled and no shortfall is reported
    full = tmp_path / "full"
    assert main([*args, "--states", "20", "--out", str(full)]) == 0
    assert "states: sampled 20 of 20 requested states\n" in capsys.readouterr().out
    assert json.loads((full / "calibration.json").read_text())["states"]["shortfall"] is None
    # enough slates in all, but too few users in session when the per-step quota came due
    spread = cal.Sampling(requested=200, ticks=5, slates_seen=300, sampled=150, dropped=0)
    assert spread.summary().startswith("sampled 150 of 200 requested states: states are spread")
    assert spread.summary().endswith("raise --ticks, population.size or population.activity_scale")


def test_cli_train_utility_reaches_the_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import simenv.studies.train
    from simenv.envs.core import SMALL_OVERRIDES, SessionCore

    path = tmp_path / "utility.yaml"
    path.write_text(yaml.safe_dump(cal.utility_document(TRUE)))
    seen: list[Any] = []

    def stop_before_training(config: Any, progress: bool) -> None:
        seen.append(config)
        raise SystemExit(0)  # not an Exception: main does not turn it into an error line

    monkeypatch.setattr(simenv.studies.train, "train", stop_before_training)
    args = ["train", "ppo", "--env", "recloop/Session-v0", "--scenario", "filter_bubble"]
    args += ["--utility", str(path), "--out", str(tmp_path / "t")]
    with pytest.raises(SystemExit):
        main([*args, *[a for kv in SMALL_OVERRIDES for a in ("--set", kv)]])
    overrides = seen[0].env_kwargs["overrides"]
    assert "decider.utility.taste=3.0" in overrides
    core = SessionCore("filter_bubble", overrides)
    core.build(0)
    assert core.world is not None and core.world.decider.params == TRUE  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--states", "1"], "--states must be at least 2"),
        (["--holdout", "1"], "--holdout must be a share"),
        (["--policy", "nope"], "nope"),
        (["--set", "population.size=1"], "at least 2"),
    ],
)
def test_cli_calibrate_bad_input(
    argv: list[str], message: str, tmp_path: Path, capsys: Any
) -> None:
    args = ["calibrate", "filter_bubble_llm", *FAKE, "--out", str(tmp_path / "c"), "--no-progress"]
    assert main([*args, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recloop: error:") and message in err and "\n" not in err


def test_cli_utility_file_errors(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "bad.yaml"
    cases = {
        "decider: {utility: {tastee: 1.0}}": "decider.utility.tastee",
        "decider: {utility: {taste: high}}": "decider.utility.taste",
        "ticks: 3": "expected a mapping decider",
        "decider: [1, 2": "not valid YAML",
    }
    for text, message in cases.items():
        bad.write_text(text)
        assert main(["run", "filter_bubble", "--utility", str(bad), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (text, err)
    assert main(["run", "filter_bubble", "--utility", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------- embedded model


@pytest.mark.slow  # about 35 s on 2 CPU cores: loading SmolLM2 and 8 choice prompts
def test_calibrate_with_the_embedded_model(
    tmp_path: Path, capsys: Any, embedded_model: Path
) -> None:
    out = tmp_path / "cal"
    args = ["calibrate", "filter_bubble_llm", "--states", "8", "--ticks", "1"]
    for kv in ("population.size=8", "population.activity_scale=5", "decider.llm.embeddings=topics"):
        args += ["--set", kv]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "calibration.json").read_text())
    assert doc["backend"] == "transformers" and doc["dropped_states"] == 0
    assert sum(doc["n_states"].values()) == 8
    held = doc["metrics"]["held_out"]
    assert all(np.isfinite(held[m]["cross_entropy"]) for m in ("fitted", "default", "uniform"))
    assert "fitted" in capsys.readouterr().out
