"""Average precision (E7): both definitions against hand-computed values, and VOC07's "difficult"."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from reprodl import metrics

SCORES = np.array([0.9, 0.8, 0.7, 0.6])
POSITIVE = np.array([1, 0, 1, 0])


def test_non_interpolated_ap_by_hand():
    # Positives at ranks 1 and 3: precisions 1/1 and 2/3.
    assert metrics.average_precision(SCORES, POSITIVE) == pytest.approx((1 + 2 / 3) / 2)


def test_voc07_eleven_point_ap_by_hand():
    # Recall 0.5 at precision 1 (rank 1), recall 1 at precision 2/3 (rank 3): the 6 levels
    # 0.0..0.5 take 1, the 5 levels 0.6..1.0 take 2/3.
    assert metrics.average_precision_voc07(SCORES, POSITIVE) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_perfect_ranking_is_one_and_no_positive_is_nan():
    assert metrics.average_precision_voc07(SCORES, [1, 1, 0, 0]) == 1.0
    assert metrics.average_precision(SCORES, [1, 1, 0, 0]) == 1.0
    assert math.isnan(metrics.average_precision(SCORES, [0, 0, 0, 0]))


def test_non_interpolated_equals_sklearn_without_ties():
    rng = np.random.default_rng(0)
    scores, positive = rng.random((200, 3)), rng.random((200, 3)) < 0.3
    ours = metrics.per_class_ap(scores, positive, method="sklearn")
    theirs = [average_precision_score(positive[:, k], scores[:, k]) for k in range(3)]
    assert np.allclose(ours, theirs)


def test_difficult_images_are_neither_positive_nor_negative():
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    present = np.array([[1], [1], [0], [1]])
    difficult = np.array([[1], [0], [0], [0]])  # image 0 holds the class only as difficult objects
    # Ignored: positive, negative, positive -> (1 + 2/3) / 2; counted: ranks 1, 2, 4 -> (1 + 1 + 3/4) / 3.
    assert metrics.per_class_ap(scores, present, difficult, "sklearn")[0] == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.per_class_ap(scores, present, None, "sklearn")[0] == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert metrics.mean_ap(np.hstack([scores, scores]), np.hstack([present, present]), np.hstack([difficult, difficult])) == pytest.approx(
        metrics.average_precision_voc07(scores[1:, 0], present[1:, 0])
    )


def test_unknown_ap_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown AP method 'voc12'"):
        metrics.per_class_ap(SCORES[:, None], POSITIVE[:, None], method="voc12")


def test_voc07_recall_levels_are_the_devkits_doubles():
    """MATLAB's 0:0.1:1 holds the plain doubles 0.6 and 0.7 (numpy's linspace does not)."""
    assert metrics.VOC07_RECALL_LEVELS[6] == 0.6 and metrics.VOC07_RECALL_LEVELS[7] == 0.7
    assert metrics.VOC07_RECALL_LEVELS[3] == 0.1 * 3  # first half: a + k*d, 0.30000000000000004
    assert len(metrics.VOC07_RECALL_LEVELS) == 11 and metrics.VOC07_RECALL_LEVELS[-1] == 1.0


@pytest.mark.parametrize("n_pos, reached", [(10, 6), (20, 14)])
def test_voc07_ap_counts_a_recall_of_exactly_06_or_07(n_pos, reached):
    """`reached` positives first (precision 1, recall exactly 0.6 or 0.7), then 10 negatives, then the rest.

    The devkit's level 0.6 (or 0.7) is met at rank `reached` with precision 1; with numpy's
    0.6000000000000001 it would only be met after the negatives.
    """
    hits = np.array([1] * reached + [0] * 10 + [1] * (n_pos - reached))
    scores = -np.arange(len(hits), dtype=float)  # ranked as listed
    tail = max(np.cumsum(hits)[i] / (i + 1) for i in range(reached, len(hits)) if hits[i])  # best precision after the gap
    levels_met_at_full_precision = 7 if n_pos == 10 else 8  # t = 0, ..., 0.6 or 0, ..., 0.7
    expected = (levels_met_at_full_precision + (11 - levels_met_at_full_precision) * tail) / 11
    assert metrics.average_precision_voc07(scores, hits) == pytest.approx(expected, abs=1e-12)


def test_non_interpolated_equals_sklearn_with_tied_scores():
    """Tied scores are one threshold: every image of the tie counts at the tie's end (sklearn's
    precision-recall curve), whatever their input order."""
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.2, 0.2])
    positive = np.array([0, 1, 0, 1, 1, 0])
    # Thresholds 0.9, 0.5, 0.2: recall 0, 2/3, 1 at precision 0, 2/4, 3/6 -> 2/3 * 1/2 + 1/3 * 1/2.
    assert metrics.average_precision(scores, positive) == pytest.approx(0.5)
    assert metrics.average_precision(scores, positive) == pytest.approx(average_precision_score(positive, scores))
    reordered = [0, 3, 1, 2, 5, 4]  # the positives first within each tie: an order-dependent AP would change
    assert metrics.average_precision(scores[reordered], positive[reordered]) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 5, (300, 4)).astype(float)  # five score levels: ties everywhere
    present = rng.random((300, 4)) < 0.4
    ours = metrics.per_class_ap(coarse, present, method="sklearn")
    assert np.allclose(ours, [average_precision_score(present[:, k], coarse[:, k]) for k in range(4)])
    difficult = rng.random((300, 4)) < 0.1
    ours = metrics.per_class_ap(coarse, present, difficult, method="sklearn")
    theirs = [average_precision_score(present[~difficult[:, k], k], coarse[~difficult[:, k], k]) for k in range(4)]
    assert np.allclose(ours, theirs)


def test_non_interpolated_ap_without_ties_is_unchanged_bit_for_bit():
    """The tie handling leaves tie-free scores' AP as the plain mean of the precisions at the positives."""
    rng = np.random.default_rng(2)
    scores, positive = rng.random(500), rng.random(500) < 0.3
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    precision = np.cumsum(hits) / np.arange(1, 501)
    assert metrics.average_precision(scores, positive) == float(precision[hits].mean())


# ---------------------------------------------------------------- found by mutation testing (docs/mutation.md)


@pytest.mark.parametrize("ap", [metrics.average_precision, metrics.average_precision_voc07])
@pytest.mark.parametrize("dtype", [np.uint8, bool])
def test_unsigned_and_bool_scores_rank_like_their_float_values(ap, dtype):
    """Quantised (uint8) or hard 0/1 (bool) scores: negating them for a descending sort must not
    wrap around (uint8) or fail (bool)."""
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 2 if dtype is bool else 256, 60).astype(dtype)
    positive = rng.random(60) < 0.4
    assert ap(scores, positive) == ap(scores.astype(float), positive)


def test_voc07_ap_breaks_ties_by_input_order():
    """Among tied scores, the earlier image ranks first (a stable sort), checked against a ranking
    built with Python's stable sorted() and the 11-point rule written out."""
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 3, 200).astype(float)  # three levels: long ties, past numpy's insertion-sort size
    positive = rng.random(200) < 0.3
    hits = [bool(positive[i]) for i in sorted(range(200), key=lambda i: -scores[i])]
    n_pos, found, curve = sum(hits), 0, []
    for rank, hit in enumerate(hits, start=1):
        found += hit
        curve.append((found / n_pos, found / rank))
    expected = sum(max(p for r, p in curve if r >= t) for t in metrics.VOC07_RECALL_LEVELS) / 11
    assert metrics.average_precision_voc07(scores, positive) == pytest.approx(expected, abs=1e-12)
    assert metrics.average_precision_voc07(scores, positive) != metrics.average_precision_voc07(scores[::-1], positive[::-1])


def test_voc07_ap_counts_any_nonzero_label_as_one_positive():
    """positive may hold object counts: 2 objects of the class are still one positive image."""
    counts = np.array([2, 0, 1, 0])
    assert metrics.average_precision_voc07(SCORES, counts) == metrics.average_precision_voc07(SCORES, counts > 0)
    assert metrics.average_precision(SCORES, counts) == metrics.average_precision(SCORES, counts > 0)


def test_voc07_ap_without_a_positive_is_nan():
    assert math.isnan(metrics.average_precision_voc07(SCORES, [0, 0, 0, 0]))


def test_per_class_and_mean_ap_default_to_voc07_and_pass_the_method_on():
    scores, present = SCORES[:, None], POSITIVE[:, None]
    voc07, sklearn = metrics.average_precision_voc07(SCORES, POSITIVE), metrics.average_precision(SCORES, POSITIVE)
    assert voc07 != sklearn  # the two definitions differ on this ranking
    assert metrics.per_class_ap(scores, present)[0] == voc07
    assert metrics.mean_ap(scores, present) == voc07
    assert metrics.mean_ap(scores, present, method="sklearn") == sklearn


def test_unknown_ap_method_error_lists_the_allowed_methods():
    with pytest.raises(ValueError, match=r"allowed: voc07, sklearn$"):
        metrics.per_class_ap(SCORES[:, None], POSITIVE[:, None], method="voc12")
