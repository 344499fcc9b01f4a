"""Evaluation measures shared by experiments."""

from __future__ import annotations

import numpy as np


def neighboring_hit(points: np.ndarray, labels: np.ndarray, k: int = 6) -> tuple[float, dict[int, float]]:
    """How well classes separate in an embedding: (overall, {label: per-class}).

    For each point, the fraction of its k nearest neighbours (Euclidean, the point itself
    excluded) that share its label; averaged over all points, and over each class's points.
    The point is excluded by index, not by distance, so an exact duplicate still counts as
    a neighbour. Among neighbours tied at the k-th distance, sklearn's order decides.
    """
    from sklearn.neighbors import NearestNeighbors

    points, labels = np.asarray(points), np.asarray(labels)
    if len(points) <= k:
        raise ValueError(f"neighboring_hit needs more than k = {k} points, got {len(points)}")
    # kneighbors() without X returns each fitted point's neighbours, the point itself left out.
    neighbours = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(return_distance=False)  # (N, k)
    hits = (labels[neighbours] == labels[:, None]).mean(1)  # (N,)
    per_class = {int(c): float(hits[labels == c].mean()) for c in np.unique(labels)}
    return float(hits.mean()), per_class


# --------------------------------------------------------------------------- average precision (E7)


def _ranked_hits(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """1/0 per image in order of decreasing score (ties: stable, by input order)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.asarray(positive, dtype=bool)[order]


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Non-interpolated AP of one class: the mean of the precision at the rank of each positive.

    The same as sklearn.metrics.average_precision_score, ties included: images with equal
    scores are one threshold, so each positive of a tie takes the precision at the tie's last
    rank, whatever the input order (without ties: the precision at its own rank). NaN when
    there is no positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    hits = np.asarray(positive, dtype=bool)[order]
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)  # (N,)
    ranked = -scores[order]  # ascending
    tie_end = np.searchsorted(ranked, ranked, side="right") - 1  # (N,) last rank of each one's tie; itself without ties
    return float(precision[tie_end][hits].mean())


# The devkit's recall levels (VOCevalcls.m: `for t=0:0.1:1`). MATLAB builds a colon range from
# both ends, a + k*d for the first half and b - (n-k)*d for the second, so its 0.6 and 0.7 are
# the plain doubles, where numpy's linspace/arange give 0.6000000000000001 and
# 0.7000000000000001: a recall of exactly 0.6 (6 of 10 positives) or 0.7 (14 of 20) would then
# miss its level.
VOC07_RECALL_LEVELS = tuple(k * 0.1 if k <= 5 else 1.0 - (10 - k) * 0.1 for k in range(11))


def average_precision_voc07(scores: np.ndarray, positive: np.ndarray) -> float:
    """The VOC2007 devkit's 11-point interpolated AP of one class.

    At each recall level t of VOC07_RECALL_LEVELS (0, 0.1, ..., 1 as MATLAB computes them):
    the highest precision reached at a recall >= t (0 if none); AP is the mean of these 11
    values. NaN when there is no positive.
    """
    hits = _ranked_hits(scores, positive)
    if not hits.any():
        return float("nan")
    true_pos = np.cumsum(hits)
    recall = true_pos / hits.sum()
    precision = true_pos / np.arange(1, len(hits) + 1)
    return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in VOC07_RECALL_LEVELS]))


def per_class_ap(
    scores: np.ndarray, present: np.ndarray, difficult: np.ndarray | None = None, method: str = "voc07"
) -> np.ndarray:
    """AP of every class of a multi-label set, (N, K) scores and multi-hot labels -> (K,).

    VOC2007 handling of "difficult": an image whose class k is present only as difficult
    objects (difficult[i, k] = 1) is left out of class k's ranking, neither a positive nor a
    negative. method: "voc07" (11-point interpolated) or "sklearn" (non-interpolated).
    """
    ap_of = {"voc07": average_precision_voc07, "sklearn": average_precision}
    if method not in ap_of:
        raise ValueError(f"unknown AP method {method!r}; allowed: {', '.join(ap_of)}")
    scores, present = np.asarray(scores), np.asarray(present).astype(bool)
    keep = np.ones_like(present) if difficult is None else ~np.asarray(difficult).astype(bool)
    return np.array([ap_of[method](scores[keep[:, k], k], present[keep[:, k], k]) for k in range(present.shape[1])])


def mean_ap(scores: np.ndarray, present: np.ndarray, difficult: np.ndarray | None = None, method: str = "voc07") -> float:
    """Mean of the per-class APs over the classes that have a positive."""
    return float(np.nanmean(per_class_ap(scores, present, difficult, method)))
