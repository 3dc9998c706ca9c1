"""`recloop validate` and `recloop fit` on a slice of MovieLens-100k (fixture `movielens_slice`):
the split, the candidates, the split-leak proof, the report, fit -> validate end to end,
the LLM path on the fake backend, determinism and bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from agents.deciders import UtilityDecider, utility_features
from agents.llm_decider import LLMDecider
from simenv.cli import main
from simenv.data.movielens import MovieLens, load_movielens
from simenv.llm.fake import FakeBackend
from simenv.studies import validate as val
from simenv.studies.fit import FitConfig, probit_nll, run_fit
from simenv.studies.validate import ValidateConfig, time_split


@pytest.fixture(scope="module")
def ml(movielens_slice: Path) -> MovieLens:
    return load_movielens(movielens_slice)


def _scenario(data: Path, *overrides: str) -> val.Scenario:
    return val.validation_scenario(ValidateConfig(data=data), list(overrides))


# ---------------------------------------------------------------------------- split, candidates


def test_time_split_keeps_each_users_oldest_share(ml: MovieLens) -> None:
    split = time_split(ml.ratings, 0.8)
    n = ml.ratings.groupby("user").size()
    train = split.train.groupby("user").size()
    assert (train == np.floor(0.8 * n + 1e-9).astype(int)).all()
    assert len(split.train) + len(split.test) == len(ml.ratings)
    last = split.train.groupby("user")["timestamp"].max()
    first = split.test.groupby("user")["timestamp"].min()
    assert (last[first.index] <= first).all()
    pairs = set(zip(split.train["user"], split.train["item"], strict=True))
    assert not pairs & set(zip(split.test["user"], split.test["item"], strict=True))


def test_candidates_are_held_out_likes_against_never_rated_items(ml: MovieLens) -> None:
    split = time_split(ml.ratings, 0.8)
    counts = np.bincount(split.train["item"], minlength=ml.n_items)
    bins = val.popularity_bins(counts)
    users = val.eligible_users(split)
    c = val.sample_candidates(split, users, ml.n_items, bins, (1, 3), np.random.default_rng(0))
    rated = set(zip(ml.ratings["user"], ml.ratings["item"], strict=True))
    liked = split.test[split.test["rating"] >= 4]
    liked_pairs = set(zip(liked["user"], liked["item"], strict=True))
    pos, neg = c[c["label"] == 1], c[c["label"] == 0]
    for scheme in val.SCHEMES:
        p = pos[pos["scheme"] == scheme]
        assert set(zip(p["user"], p["item"], strict=True)) == liked_pairs
        for ratio in (1, 3):
            rows = val.setting(c, scheme, ratio)
            assert (rows["label"] == 0).sum() == ratio * len(p)
    assert not set(zip(neg["user"], neg["item"], strict=True)) & rated
    # popularity-matched negatives share their positives' bin (every bin has unrated items here)
    for u, g in c[c["scheme"] == "popularity"].groupby("user"):
        want = np.sort(np.repeat(bins[g.loc[g["label"] == 1, "item"]], 3))
        assert np.array_equal(np.sort(bins[g.loc[g["label"] == 0, "item"]]), want), u
    assert bins[counts == 0].max(initial=0) == 0 and set(np.unique(bins[counts > 0])) <= set(
        range(1, val.POPULARITY_BINS + 1)
    )


# ---------------------------------------------------------------------------- split hygiene


def _perturbed(ml: MovieLens, split: val.Split) -> MovieLens:
    """``ml`` with every held-out rating changed (1 <-> 5, 2 <-> 4, 3 -> 1)."""
    key = ["user", "item", "timestamp"]
    test = split.test[key].assign(held=True)
    r = ml.ratings.merge(test, on=key, how="left")
    held = r["held"].notna().to_numpy()
    new = r["rating"].to_numpy().copy()
    new[held] = np.where(new[held] == 3, 1, 6 - new[held])
    return dataclasses.replace(ml, ratings=r.drop(columns="held").assign(rating=new))


def _everything_built(ml: MovieLens, scenario: val.Scenario) -> dict[str, object]:
    """Every array and text the protocol builds from the training part, for fixed pairs."""
    split = time_split(ml.ratings, 0.8)
    tw = val.training_world(scenario, val.training_data(ml, split), UtilityDecider())
    users = np.arange(0, 60, 3)
    items = np.arange(0, 1600, 80)
    ctx = tw.world.decision_context(users, items[:, None], step=0)
    llm = LLMDecider(FakeBackend())
    wide = tw.world.decision_context(users, np.stack([items, items + 1, items + 2], 1), step=0)
    out: dict[str, object] = {
        f"persona.{name}": getattr(tw.population.persona, name)
        for name in tw.population.persona.__dataclass_fields__
    }
    cat = tw.population.catalog
    out.update(
        {
            "catalog.quality": cat.quality,
            "catalog.prior": cat.popularity_prior,
            "catalog.mean_rating": cat.mean_rating,
            "catalog.latent": cat.latent,
            "popularity_signal": ctx.item_popularity,
            "utility_features": utility_features(ctx),
            "rating_probabilities": UtilityDecider().rating_probabilities(ctx),
            "prompts": llm.choice_prompts(
                wide, llm.system_prompts(wide), llm.memory_texts(wide), llm.emotion_texts(wide)
            ),
            **{f"baseline.{k}": v for k, v in val.baseline_scores(tw, users, items).items()},
        }
    )
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, True)
    return a == b


def test_no_held_out_rating_reaches_a_persona_a_prompt_or_an_item_statistic(
    ml: MovieLens, movielens_slice: Path
) -> None:
    """Every held-out rating perturbed: personas (latent tastes included), prompts, item
    statistics, features and baselines stay bit-identical. A training rating perturbed
    changes them (the comparison can see a change)."""
    scenario = _scenario(movielens_slice, "population.persona_model=mf")
    split = time_split(ml.ratings, 0.8)
    perturbed = _perturbed(ml, split)
    assert (perturbed.ratings["rating"] != ml.ratings["rating"]).sum() == len(split.test)
    before, after = _everything_built(ml, scenario), _everything_built(perturbed, scenario)
    assert before.keys() == after.keys()
    changed = [k for k in before if not _same(before[k], after[k])]
    assert changed == []
    # positive control: one training rating of user 0 changed
    first = split.train.iloc[0]
    r = ml.ratings.copy()
    hit = (r["user"] == first["user"]) & (r["item"] == first["item"])
    r.loc[hit, "rating"] = 6 - r.loc[hit, "rating"] if first["rating"] != 3 else 1
    control = _everything_built(dataclasses.replace(ml, ratings=r), scenario)
    moved = {k for k in before if not _same(before[k], control[k])}
    assert {"persona.rating_bias", "catalog.quality", "persona.latent"} <= moved


def test_the_report_checks_split_hygiene(movielens_slice: Path, tmp_path: Path) -> None:
    config = ValidateConfig(data=movielens_slice, behaviour_ticks=2, ratios=(1, 3))
    report = val.run_validation(_scenario(movielens_slice), config, tmp_path, progress=False)
    assert report["hygiene"]["checks"] == {
        "held_out_pairs_in_training": 0,
        "users_with_training_after_held_out": 0,
        "persona_examples_that_are_held_out": 0,
    }
    assert report["split"]["train_ratings"] + report["split"]["held_out_ratings"] == sum(
        1 for _ in (movielens_slice / "u.data").open()
    )


# ---------------------------------------------------------------------------- the report


def test_validate_writes_a_report_stating_what_every_number_is_for(
    movielens_slice: Path, tmp_path: Path
) -> None:
    out = tmp_path / "val"
    code = main(
        [
            "validate",
            "--data",
            str(movielens_slice),
            "--out",
            str(out),
            "--ratios",
            "1,3",
            "--behaviour-ticks",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((out / "validation.json").read_text())
    assert report["persona"] == "utility (genre)"
    assert report["decider"]["kind"] == "utility" and report["seed"] == 0
    assert report["sample"]["users"] == report["sample"]["eligible_users"] > 50
    settings = {(t["scheme"], t["ratio"]) for t in report["taste"]}
    assert settings == {(s, r) for s in ("uniform", "popularity") for r in (1, 3)}
    for t in report["taste"]:
        assert set(t["models"]) == {"persona", "popularity", "item_mean", "mf"}
        for m in t["models"].values():
            assert 0 <= m["accuracy"] <= 1 and 0 <= m["auc"] <= 1
        assert t["negatives"] == t["ratio"] * t["positives"]
    r = report["ratings"]
    assert sum(r["data"]) == pytest.approx(1) and sum(r["simulated"]) == pytest.approx(1)
    assert 0 < r["total_variation"] < 1 and r["errors"]["persona"]["n_pairs"] == r["pairs"]
    assert len(report["behaviour"]["correlations"]) == 4
    md = (out / "validation.md").read_text()
    assert "decider `utility`, persona model `genre`" in md and "seed 0" in md
    for section in ("Taste alignment", "Ratings", "Behaviour", "Split hygiene"):
        assert section in md
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "behaviour.png",
        "ratings.png",
        "taste.png",
    ]


def test_validate_is_seeded(movielens_slice: Path) -> None:
    config = ValidateConfig(data=movielens_slice, users=20, behaviour_ticks=1, ratios=(1,))
    a = val.run_validation(_scenario(movielens_slice), config, progress=False)
    b = val.run_validation(_scenario(movielens_slice), config, progress=False)
    c = val.run_validation(
        _scenario(movielens_slice), dataclasses.replace(config, seed=1), progress=False
    )
    drop = ("seconds", "llm_stats")
    assert {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop
    }
    assert a["taste"] != c["taste"]
    assert a["sample"]["users"] == 20


def test_the_persona_decides_by_its_own_choice_rule(movielens_slice: Path) -> None:
    """Watch = utility above the no-choice utility: the log-odds are U(item) − U(none)."""
    scenario = _scenario(movielens_slice)
    ml = load_movielens(movielens_slice)
    decider = UtilityDecider(scenario.decider.utility)
    tw = val.training_world(scenario, val.training_data(ml, time_split(ml.ratings)), decider)
    users, items = np.arange(30), np.arange(100, 130)
    odds = val.watch_log_odds(decider, tw.world, users, items, batch=7)
    ctx = tw.world.decision_context(users, items[:, None], step=0)
    util = decider.utility_matrix(ctx)
    np.testing.assert_allclose(odds, util[:, 0] - util[:, 1], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- fit -> validate


def test_fit_then_validate_with_the_fitted_file(movielens_slice: Path, tmp_path: Path) -> None:
    fitted = tmp_path / "fitted.yaml"
    code = main(
        [
            "fit",
            "--dataset",
            "movielens-100k",
            "--data",
            str(movielens_slice),
            "--out",
            str(fitted),
            "--no-progress",
        ]
    )
    assert code == 0
    doc = yaml.safe_load(fitted.read_text())
    assert doc["population"]["persona_model"] == "mf"
    weights = doc["decider"]["utility"]
    details = json.loads(fitted.with_suffix(".json").read_text())
    assert details["choice"]["converged"]
    assert {"taste", "latent", "quality", "no_choice"} <= set(details["choice"]["identified"])
    assert details["sizes"]["ratings_read"] < sum(1 for _ in (movielens_slice / "u.data").open())
    assert weights["latent"] > 0 and weights["rating_noise"] > 0
    out = tmp_path / "val"
    code = main(
        [
            "validate",
            "--data",
            str(movielens_slice),
            "--utility",
            str(fitted),
            "--out",
            str(out),
            "--ratios",
            "1",
            "--behaviour-ticks",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((out / "validation.json").read_text())
    assert report["persona"] == "utility (mf)"
    assert report["decider"]["utility_file"] == str(fitted)
    assert report["decider"]["utility"]["latent"] == pytest.approx(weights["latent"])
    assert f"weights from `{fitted}`" in (out / "validation.md").read_text()
    # the fitted file applies to a MovieLens run as well (latent tastes in the world)
    run = tmp_path / "run"
    code = main(
        [
            "run",
            "popularity_bias",
            "--utility",
            str(fitted),
            "--out",
            str(run),
            "--set",
            "ticks=1",
            "--set",
            "population.size=40",
            "--set",
            f"catalog.data_path={movielens_slice}",
            "--policy",
            "mf",
            "--no-progress",
        ]
    )
    assert code == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["population"]["persona_model"] == "mf"


def test_fitted_weights_beat_the_defaults_on_a_held_out_slice(movielens_slice: Path) -> None:
    """On the slice, personas with latent tastes and fitted weights rank held-out likes better
    than the default genre personas do (both validated on the same candidates)."""
    config = ValidateConfig(data=movielens_slice, behaviour_ticks=0, ratios=(1,))
    base = val.run_validation(_scenario(movielens_slice), config, progress=False)
    fit = run_fit(
        FitConfig(data=movielens_slice, out=Path("unused.yaml")), progress=False, write=False
    )
    fitted = _scenario(
        movielens_slice,
        "population.persona_model=mf",
        *(f"decider.utility.{k}={v}" for k, v in fit.params.model_dump().items()),
    )
    better = val.run_validation(fitted, config, progress=False)
    for b, f in zip(base["taste"], better["taste"], strict=True):
        assert f["models"]["persona"]["auc"] > b["models"]["persona"]["auc"]
    assert better["ratings"]["total_variation"] < base["ratings"]["total_variation"]


def test_fit_reads_only_the_training_part(
    ml: MovieLens, movielens_slice: Path, tmp_path: Path
) -> None:
    """Every held-out rating changed in the files: the fitted parameters are bit-identical."""
    split = time_split(ml.ratings, 0.8)
    raw_user = ml.users["raw_id"].to_numpy()[split.test["user"].to_numpy()]
    raw_item = ml.items["raw_id"].to_numpy()[split.test["item"].to_numpy()]
    held = {(int(u), int(i)) for u, i in zip(raw_user, raw_item, strict=True)}
    folder = tmp_path / "perturbed"
    folder.mkdir()
    for name in ("u.item", "u.genre", "u.user"):
        (folder / name).write_bytes((movielens_slice / name).read_bytes())
    lines, changed = [], 0
    for line in (movielens_slice / "u.data").read_text().splitlines():
        u, i, r, t = line.split("\t")
        if (int(u), int(i)) in held:
            r, changed = str(6 - int(r) if r != "3" else 1), changed + 1
        lines.append("\t".join([u, i, r, t]))
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    assert changed == len(split.test)
    config = FitConfig(data=movielens_slice, out=tmp_path / "a.yaml")
    a = run_fit(config, progress=False, write=False)
    b = run_fit(dataclasses.replace(config, data=folder), progress=False, write=False)
    assert a.params == b.params and a.sizes == b.sizes


def test_the_rating_model_likelihood_has_the_right_gradient() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(50), rng.normal(size=(50, 2))])
    stars = rng.integers(1, 6, size=50).astype(float)
    offset = rng.normal(size=50) * 0.3
    theta = np.array([3.0, 0.4, -0.2, np.log(0.9)])
    value, grad = probit_nll(theta, x, offset, stars)
    eps = 1e-6
    numeric = [
        (
            probit_nll(theta + eps * e, x, offset, stars)[0]
            - probit_nll(theta - eps * e, x, offset, stars)[0]
        )
        / (2 * eps)
        for e in np.eye(4)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    assert value > 0


# ---------------------------------------------------------------------------- LLM personas


def test_validate_asks_llm_personas_through_the_normal_decider(
    movielens_slice: Path, tmp_path: Path
) -> None:
    out = tmp_path / "llm"
    code = main(
        [
            "validate",
            "--data",
            str(movielens_slice),
            "--decider",
            "llm",
            "--backend",
            "fake",
            "--users",
            "3",
            "--max-per-user",
            "2",
            "--ratios",
            "1",
            "--behaviour-ticks",
            "1",
            "--set",
            "decider.llm.embeddings=topics",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((out / "validation.json").read_text())
    assert report["persona"] == "llm (fake default)"
    assert report["decider"]["llm"]["backend"] == "fake"
    assert report["sample"] == {
        "users": 3,
        "eligible_users": report["sample"]["eligible_users"],
        "max_per_user": 2,
        "seed": 0,
    }
    t = report["taste"][0]
    assert t["positives"] <= 6 and t["unanswered"] == 0
    assert report["ratings"]["pairs"] <= 6
    assert report["llm_stats"] and (out / "llm_cache.sqlite").is_file()
    assert "LLM backend `fake`, model `None`" in (out / "validation.md").read_text()


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "--users", "0"], "--users must be at least 1"),
        (["validate", "--dataset", "netflix"], "unknown dataset 'netflix'"),
        (["validate", "--train-share", "1"], "--train-share must be in (0, 1)"),
        (["validate", "--ratios", "0,3"], "--ratios must be positive"),
        (["validate", "--behaviour-policy", "nope"], "unknown --behaviour-policy 'nope'"),
        (["validate", "--users", "5000"], "only"),
        (["validate", "--set", "population.source=synthetic"], "needs population.source"),
        (["validate", "--utility", "missing.yaml"], "file not found"),
        (["fit", "--out", "fitted.txt"], "--out must name a .yaml file"),
        (["fit", "--inner-share", "0"], "--inner-share must be in (0, 1)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, movielens_slice: Path, tmp_path: Path, capsys
) -> None:
    common = ["--data", str(movielens_slice), "--no-progress"]
    if "--out" not in argv:
        common += ["--out", str(tmp_path / ("fitted.yaml" if argv[0] == "fit" else "val"))]
    code = main([*argv, *common])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("recloop: error: "), err
    assert message in err[0]


def test_a_utility_file_with_unknown_fields_is_refused(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("decider: {kind: utility, utility: {taste: 1}}\npopulation: {size: 3}\n")
    assert main(["validate", "--utility", str(bad), "--out", str(tmp_path / "v")]) == 2
    assert "unexpected field(s): population.size" in capsys.readouterr().err
    bad.write_text("decider: {utility: {taste: 1}}\npopulation: {persona_model: deep}\n")
    assert main(["validate", "--utility", str(bad), "--out", str(tmp_path / "v")]) == 2
    assert "population.persona_model" in capsys.readouterr().err


def test_missing_data_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["validate", "--data", str(tmp_path), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MovieLens-100k not found" in err[0]


@pytest.mark.slow
def test_full_movielens_validation_of_the_fitted_users(
    movielens_path: Path, tmp_path: Path
) -> None:
    """The README's fidelity rows at full size: fitted users rank held-out likes above the
    popularity and MF baselines with popularity-matched negatives, and give ratings whose
    distribution is within 0.10 total variation of the held-out ratings'."""
    fitted = tmp_path / "fitted.yaml"
    assert main(["fit", "--data", str(movielens_path), "--out", str(fitted), "--no-progress"]) == 0
    out = tmp_path / "val"
    assert (
        main(
            [
                "validate",
                "--data",
                str(movielens_path),
                "--utility",
                str(fitted),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads((out / "validation.json").read_text())
    pop1 = next(t for t in report["taste"] if (t["scheme"], t["ratio"]) == ("popularity", 1))
    persona = pop1["models"]["persona"]["auc"]
    assert all(persona > pop1["models"][b]["auc"] for b in ("popularity", "item_mean", "mf"))
    assert report["ratings"]["total_variation"] <= 0.10
    assert pd.notna(report["behaviour"]["correlations"][0]["world"])
