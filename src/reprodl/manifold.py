"""2-D maps of a representation: t-SNE, PCA, and one Gaussian ellipse per class (E4, E5).

    view = project(features, labels, "tsne", perplexity=30, seed=0)  # (N, D) -> Projection
    view.points  # (N, 2); view.hit, view.hit_per_class: neighboring_hit; view.ellipses

t-SNE is openTSNE's (multi-threaded, Barnes-Hut for small sets, FFT-accelerated for large
ones), initialised with PCA and seeded, so the same inputs give the same map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .metrics import neighboring_hit

METHODS = ("tsne", "pca")


@dataclass(frozen=True)
class ClassEllipse:
    """A class's 2-D Gaussian drawn as an ellipse: sqrt(2) standard deviations along each axis."""

    label: int
    center: np.ndarray  # (2,)
    semi_axes: tuple[float, float]  # (major, minor), in embedding units
    angle: float  # of the major axis, degrees counter-clockwise from the x axis


@dataclass
class Projection:
    method: str
    points: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,)
    hit: float  # neighboring_hit over all points
    hit_per_class: dict[int, float]
    ellipses: list[ClassEllipse] = field(default_factory=list)


REG_COVAR = 1e-6  # sklearn GaussianMixture's default: keeps a class of identical points drawable


def check_perplexity(perplexity: float, n_points: int) -> None:
    """openTSNE silently lowers a perplexity above N - 1 (the other points): refuse it instead."""
    if not perplexity > 0 or perplexity > n_points - 1:
        raise ValueError(f"perplexity must be > 0 and at most the number of points - 1 ({n_points - 1}), got {perplexity!r}")


def tsne(x: np.ndarray, perplexity: float = 30.0, seed: int = 0, n_jobs: int = 1) -> np.ndarray:
    """(N, D) -> (N, 2) t-SNE map, PCA-initialised (openTSNE; deterministic for a seed and n_jobs=1)."""
    from openTSNE import TSNE

    x = np.ascontiguousarray(x, dtype=np.float64)
    check_perplexity(perplexity, len(x))
    embedding = TSNE(n_components=2, perplexity=perplexity, initialization="pca", n_jobs=n_jobs, random_state=seed, verbose=False).fit(x)
    return np.asarray(embedding)


def pca_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2): the first two principal components."""
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(np.asarray(x, dtype=np.float64))


def best_ellipses(points: np.ndarray, labels: np.ndarray) -> list[ClassEllipse]:
    """One full-covariance Gaussian per class (a one-component Gaussian mixture) as an ellipse.

    The maximum-likelihood fit of one Gaussian is closed-form: the class mean and the biased
    (1/n) covariance, plus sklearn GaussianMixture's reg_covar (1e-6) on the diagonal, which is
    what its EM converges to (tests/test_manifold.py checks the two agree) in microseconds
    instead of its k-means initialisation and EM loop (E4 and E5 fit ten per map, 50 maps).
    The ellipse's axes lie along the covariance's eigenvectors; its semi-axes are sqrt(2)
    times the standard deviations along them.
    """
    ellipses = []
    for label in np.unique(labels):
        class_points = np.asarray(points[labels == label], dtype=np.float64)  # (n_c, 2)
        center = class_points.mean(axis=0)
        centred = class_points - center
        covariance = centred.T @ centred / len(class_points) + REG_COVAR * np.eye(2)  # (2, 2)
        variances, axes = np.linalg.eigh(covariance)  # ascending; columns are the axes
        major = axes[:, 1]
        ellipses.append(
            ClassEllipse(
                label=int(label),
                center=center,
                semi_axes=(math.sqrt(2 * variances[1]), math.sqrt(2 * variances[0])),
                angle=math.degrees(math.atan2(major[1], major[0])),
            )
        )
    return ellipses


def project(
    x: np.ndarray, labels: np.ndarray, method: str, *, perplexity: float = 30.0, seed: int = 0, n_jobs: int = 1, k: int = 6
) -> Projection:
    """A 2-D map of x (t-SNE or PCA) with its neighboring_hit and per-class ellipses."""
    if method == "tsne":
        points = tsne(x, perplexity, seed, n_jobs)
    elif method == "pca":
        points = pca_2d(x, seed)
    else:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    labels = np.asarray(labels)
    hit, per_class = neighboring_hit(points, labels, k)
    return Projection(method, points, labels, hit, per_class, best_ellipses(points, labels))


def subsample(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of `size` of n rows (all rows when size is None or >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
