"""The metrics of `recloop validate` (`simenv.studies.fidelity`), each checked against values
worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simenv.studies import fidelity as fm


def test_decision_scores_by_hand() -> None:
    # tp = 2 (positions 0, 4), predicted 3, positive 3, right 3 of 5
    got = fm.decision_scores(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1]))
    assert got == pytest.approx({"accuracy": 0.6, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    # nothing predicted: precision and F1 are 0 (scikit-learn's zero_division=0)
    none = fm.decision_scores(np.array([1, 0]), np.array([0, 0]))
    assert none == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_roc_auc_by_hand() -> None:
    # pairs (positive, negative): (.9,.8) 1, (.9,.3) 1, (.3,.8) 0, (.3,.3) ½ -> 2.5 / 4
    assert fm.roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.3])) == 0.625
    assert fm.roc_auc(np.array([1, 1, 0]), np.array([3, 2, 1])) == 1.0
    assert math.isnan(fm.roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_per_user_averages_over_users() -> None:
    users = np.array([0, 0, 0, 0, 1, 1])
    labels = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.3, 0.2, 0.7])
    decisions = scores > 0.5
    got = fm.per_user(users, labels, scores, decisions)
    # user 0: AUC 0.625, decisions [1,1,0,0]: accuracy .5, precision .5, recall .5, F1 .5
    # user 1: AUC 0, decisions [0,1]: accuracy 0, precision 0, recall 0, F1 0
    assert got["auc"] == pytest.approx((0.625 + 0.0) / 2)
    assert got["accuracy"] == pytest.approx(0.25)
    assert got["precision"] == got["recall"] == got["f1"] == pytest.approx(0.25)
    assert (got["n_users"], got["n_pairs"]) == (2, 6)
    # a user without negatives counts for accuracy but has no AUC
    only = fm.per_user(np.array([0, 1]), np.array([1, 1]), np.array([1.0, 2.0]), np.ones(2))
    assert math.isnan(only["auc"]) and only["accuracy"] == 1.0


def test_top_share_decisions_take_as_many_as_there_are_positives() -> None:
    users = np.array([0, 0, 0, 1, 1, 1, 1])
    labels = np.array([1, 0, 0, 1, 1, 0, 0])
    scores = np.array([0.1, 0.9, 0.5, 4.0, 3.0, 2.0, 1.0])
    d = fm.top_share_decisions(users, scores, labels, np.random.default_rng(0))
    assert d.tolist() == [False, True, False, True, True, False, False]
    tied = fm.top_share_decisions(
        np.zeros(4, int), np.ones(4), np.array([1, 1, 0, 0]), np.random.default_rng(1)
    )
    assert tied.sum() == 2


def test_distribution_distances_by_hand() -> None:
    assert fm.rating_distribution(np.array([1, 1, 2, 5.4, 4.6])).tolist() == [0.4, 0.2, 0, 0, 0.4]
    p = np.array([0.5, 0.5, 0, 0, 0])
    q = np.array([0.25, 0.25, 0.5, 0, 0])
    assert fm.total_variation(p, q) == 0.5
    assert fm.jensen_shannon(p, p) == 0.0
    assert fm.jensen_shannon(np.array([1.0, 0]), np.array([0, 1.0])) == 1.0
    # p = (1, 0), q = (½, ½), m = (¾, ¼): ½·log2(4/3) + ½·(½·log2(2/3) + ½·log2(2))
    expected = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert fm.jensen_shannon(np.array([1.0, 0]), np.array([0.5, 0.5])) == pytest.approx(expected)


def test_rating_errors_by_hand() -> None:
    got = fm.rating_errors(np.array([0, 0, 1]), np.array([4, 2, 3]), np.array([3, 3, 3]))
    # user 0: errors -1, +1 -> MAE 1, RMSE 1; user 1: 0 -> mean over users 0.5; bias 0
    assert got == {"mae": 0.5, "rmse": 0.5, "bias": 0.0, "n_users": 2, "n_pairs": 3}


def test_spearman_by_hand() -> None:
    # ranks of y: 2, 3, 4, 1; d = -1, -1, -1, 3; rho = 1 - 6·12 / (4·15) = -0.2
    assert fm.spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 5])) == pytest.approx(-0.2)
    assert fm.spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 2, 3])) == pytest.approx(1.0)
    assert math.isnan(fm.spearman(np.array([1, 1, 1]), np.array([1, 2, 3])))
    assert fm.average_ranks(np.array([5, 1, 5, 3])).tolist() == [3.5, 1, 3.5, 2]
