"""The metrics of `recloop validate`: plain functions of numpy arrays, checked by hand in tests.

- watch decisions (`decision_scores`): accuracy, precision, recall and F1 of 0/1 decisions
  against 0/1 labels (precision is 0 when nothing is predicted positive, recall 0 when
  nothing is positive: scikit-learn's ``zero_division=0``);
- ranking (`roc_auc`): the probability that a random positive scores above a random negative,
  ties counting one half (Mann-Whitney U with average ranks);
- per user (`per_user`): every metric computed within each user's candidates, then the plain
  mean over users (macro); users without a positive or a negative have no AUC and are left out
  of it;
- rating distributions: `total_variation` (½ Σ|p − q|, in [0, 1]) and `jensen_shannon`
  divergence in bits (base-2 logarithms, in [0, 1]);
- `rating_errors`: MAE and RMSE per user, averaged over users, and the mean bias (prediction
  minus truth) over all pairs;
- `spearman`: Pearson correlation of average ranks (NaN when a side is constant).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DECISION_METRICS = ("accuracy", "precision", "recall", "f1")
TASTE_METRICS = (*DECISION_METRICS, "auc")


def decision_scores(labels: np.ndarray, decisions: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of 0/1 ``decisions`` against 0/1 ``labels``."""
    y = np.asarray(labels, dtype=bool)
    d = np.asarray(decisions, dtype=bool)
    tp = float(np.sum(y & d))
    predicted, positive = float(d.sum()), float(y.sum())
    precision = tp / predicted if predicted else 0.0
    recall = tp / positive if positive else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float(np.mean(y == d)) if y.size else float("nan")
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing their average rank."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    sorted_x = x[order]
    first = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], x.size]
    ranks[order] = ((starts + ends + 1) / 2.0)[group]
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for 0/1 ``labels`` (NaN without a positive or a negative)."""
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_user(
    users: np.ndarray, labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray
) -> dict[str, float]:
    """`TASTE_METRICS` within each user's candidates, averaged over users; ``n_users`` and
    ``n_pairs`` say what was averaged."""
    frame = pd.DataFrame(
        {
            "user": np.asarray(users),
            "y": np.asarray(labels, dtype=bool),
            "s": np.asarray(scores, dtype=np.float64),
            "d": np.asarray(decisions, dtype=bool),
        }
    )
    g = frame.groupby("user", sort=True)
    frame["rank"] = g["s"].rank(method="average")
    frame["tp"] = frame["y"] & frame["d"]
    frame["hit"] = frame["y"] == frame["d"]
    frame["pos_rank"] = np.where(frame["y"], frame["rank"], 0.0)
    sums = frame.groupby("user", sort=True)[["y", "d", "tp", "hit", "pos_rank"]].sum()
    n = g.size()
    pos, pred, tp = sums["y"].astype(float), sums["d"].astype(float), sums["tp"].astype(float)
    neg = n - pos
    precision = np.where(pred > 0, tp / pred.where(pred > 0, 1.0), 0.0)
    recall = np.where(pos > 0, tp / pos.where(pos > 0, 1.0), 0.0)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    has_both = (pos > 0) & (neg > 0)
    auc = (sums["pos_rank"] - pos * (pos + 1) / 2.0) / (pos * neg).where(has_both, 1.0)
    return {
        "accuracy": float((sums["hit"] / n).mean()),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "f1": float(np.mean(f1)),
        "auc": float(auc[has_both].mean()) if has_both.any() else float("nan"),
        "n_users": int(n.size),
        "n_pairs": len(frame),
    }


def top_share_decisions(
    users: np.ndarray, scores: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """0/1 decisions of a score without its own choice rule: per user, "watch" the candidates
    ranked in the top m, m = that user's number of positives (the rule is told the share of
    positives); ties are broken by a seeded random order."""
    users = np.asarray(users)
    tiebreak = rng.permutation(users.size)
    order = np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64), users))
    sorted_users = users[order]
    first = np.searchsorted(sorted_users, sorted_users, side="left")
    rank = np.arange(users.size) - first
    frame = pd.DataFrame({"user": users, "y": np.asarray(labels, dtype=bool)})
    m = frame.groupby("user")["y"].transform("sum").to_numpy()
    out = np.zeros(users.size, dtype=bool)
    out[order] = rank < m[order]
    return out


def rating_distribution(stars: np.ndarray) -> np.ndarray:
    """(5,) shares of 1..5 stars among ``stars`` (rounded to whole stars)."""
    s = np.clip(np.rint(np.asarray(stars, dtype=np.float64)), 1, 5).astype(np.int64)
    counts = np.bincount(s - 1, minlength=5).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """½ Σ |p − q| of two distributions."""
    return float(0.5 * np.abs(np.asarray(p, float) - np.asarray(q, float)).sum())


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions in bits (0 = equal, 1 = disjoint)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / m[keep])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def rating_errors(users: np.ndarray, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Per-user MAE and RMSE averaged over users, and the mean bias over all pairs."""
    err = np.asarray(prediction, float) - np.asarray(truth, float)
    frame = pd.DataFrame({"user": np.asarray(users), "abs": np.abs(err), "sq": err**2})
    per = frame.groupby("user")[["abs", "sq"]].mean()
    return {
        "mae": float(per["abs"].mean()),
        "rmse": float(np.sqrt(per["sq"]).mean()),
        "bias": float(err.mean()),
        "n_users": len(per),
        "n_pairs": int(err.size),
    }


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when a side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def normalised_entropy(mass: np.ndarray) -> np.ndarray:
    """Entropy of each row of non-negative ``mass`` divided by log(columns) (0 for empty rows)."""
    mass = np.asarray(mass, dtype=np.float64)
    total = mass.sum(axis=1, keepdims=True)
    p = mass / np.where(total > 0, total, 1.0)
    h = -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=1)
    return h / np.log(mass.shape[1]) if mass.shape[1] > 1 else np.zeros(mass.shape[0])
