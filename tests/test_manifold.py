"""neighboring_hit, t-SNE / PCA maps and the per-class ellipses, on hand-made points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reprodl import manifold
from reprodl.metrics import neighboring_hit


def test_neighboring_hit_on_a_hand_made_configuration():
    # p0 and p1 coincide but differ in label: each must see the other (distance 0), not itself.
    # p2 has two neighbours tied at distance 1 (p0, p1): both are within its k = 2.
    points = np.array([[0.0, 0], [0, 0], [1, 0], [10, 0], [11, 0], [12, 0]])
    labels = np.array([0, 1, 0, 1, 1, 1])
    overall, per_class = neighboring_hit(points, labels, k=2)
    # hits: p0 {p1, p2} 1/2, p1 {p0, p2} 0, p2 {p0, p1} 1/2, p3, p4, p5: 1 each.
    assert overall == pytest.approx(4 / 6)
    assert per_class == pytest.approx({0: 0.5, 1: 0.75})


def test_neighboring_hit_with_the_default_k_of_6():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(0, 1, (10, 2)), rng.normal(100, 1, (10, 2))])
    labels = np.repeat([3, 7], 10)
    assert neighboring_hit(blobs, labels) == (1.0, {3: 1.0, 7: 1.0})
    # Labels alternating inside each blob: a point's 6 neighbours are among its blob's 9 others,
    # 4 of them with its label and 5 without, so each point hits between 1 and 4 of 6.
    hits, _ = neighboring_hit(blobs, np.tile([0, 1], 10))
    assert 1 / 6 <= hits <= 4 / 6


def test_neighboring_hit_needs_more_points_than_neighbours():
    with pytest.raises(ValueError, match="more than k = 6"):
        neighboring_hit(np.zeros((6, 2)), np.zeros(6, dtype=int))


def test_best_ellipses_recover_a_known_gaussian():
    rng = np.random.default_rng(0)
    angle = math.radians(30)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = rng.normal(size=(20000, 2)) * [2.0, 1.0] @ rotation.T + [5.0, -3.0]  # std 2 along 30 degrees, 1 across
    (ellipse,) = manifold.best_ellipses(points, np.zeros(len(points), dtype=int))
    assert ellipse.label == 0
    np.testing.assert_allclose(ellipse.center, [5.0, -3.0], atol=0.05)
    np.testing.assert_allclose(ellipse.semi_axes, [math.sqrt(2) * 2, math.sqrt(2) * 1], rtol=0.02)
    assert ellipse.angle % 180 == pytest.approx(30, abs=1.5)


def test_best_ellipses_equal_a_one_component_gaussian_mixture_per_class():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(1)
    points = rng.normal(size=(90, 2)) * rng.uniform(0.5, 3, size=(90, 2)) + np.repeat(rng.normal(0, 5, (3, 2)), 30, axis=0)
    labels = np.repeat([4, 1, 7], 30)
    points[labels == 7] = points[labels == 7][0]  # one class of identical points: only reg_covar keeps it drawable
    ellipses = manifold.best_ellipses(points, labels)
    assert [e.label for e in ellipses] == [1, 4, 7]
    for ellipse in ellipses:
        gaussian = GaussianMixture(n_components=1, covariance_type="full", random_state=0).fit(points[labels == ellipse.label])
        variances = np.linalg.eigvalsh(gaussian.covariances_[0])
        np.testing.assert_allclose(ellipse.center, gaussian.means_[0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ellipse.semi_axes, np.sqrt(2 * variances[::-1]), rtol=1e-6)
    assert ellipses[2].semi_axes == pytest.approx((math.sqrt(2e-6), math.sqrt(2e-6)))


def test_tsne_is_seeded_and_refuses_a_bad_perplexity():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 5)), rng.normal(8, 1, (30, 5))])  # (60, 5)
    labels = np.repeat([0, 1], 30)
    first = manifold.project(x, labels, "tsne", perplexity=10, seed=3)
    again = manifold.project(x, labels, "tsne", perplexity=10, seed=3)
    assert first.points.shape == (60, 2)
    np.testing.assert_array_equal(first.points, again.points)
    assert first.hit == 1.0 and len(first.ellipses) == 2
    for bad in (0, -1, 59.5, 60):
        with pytest.raises(ValueError, match="perplexity"):
            manifold.tsne(x, perplexity=bad)


def test_pca_projection_and_subsample():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (20, 3)), rng.normal(10, 1, (20, 3))])
    view = manifold.project(x, np.repeat([0, 1], 20), "pca")
    assert view.method == "pca" and view.points.shape == (40, 2) and view.hit == 1.0
    with pytest.raises(ValueError, match="unknown method"):
        manifold.project(x, np.repeat([0, 1], 20), "umap")
    picked = manifold.subsample(100, 30, seed=0)
    assert len(picked) == 30 and len(set(picked)) == 30 and np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(picked, manifold.subsample(100, 30, seed=0))
    np.testing.assert_array_equal(manifold.subsample(10, 30, seed=0), np.arange(10))
