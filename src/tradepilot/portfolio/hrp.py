"""Hierarchical risk parity (López de Prado, 2016), as PyPortfolioOpt's ``HRPOpt`` computes it.

1. **Tree clustering**: the correlation distance ``d_ij = sqrt((1 − ρ_ij) / 2)`` clustered by
   single linkage (``scipy.cluster.hierarchy.linkage``).
2. **Quasi-diagonalisation**: the assets in the order of the dendrogram's leaves, so that
   similar assets sit next to each other.
3. **Recursive bisection**: start with weight 1 for every asset; split each list of assets in
   two halves; each half's variance is that of its inverse-variance portfolio,
   ``V = w̃ᵀ Σ w̃`` with ``w̃_i ∝ 1 / Σ_ii``; the first half's weights are multiplied by
   ``α = 1 − V₁ / (V₁ + V₂)``, the second's by ``1 − α``; repeat until every list is one asset.

No matrix is inverted, so HRP works with nearly singular covariances. It has no bounds of its
own: bounds are met by :func:`bounds.fit_to_bounds` (one scale factor, then clipping), which
keeps the proportions of the weights that are not at a bound.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from tradepilot.portfolio.bounds import FloatArray, WeightBounds, fit_to_bounds


def correlation_from_covariance(cov: FloatArray) -> FloatArray:
    std = np.sqrt(np.diag(cov))
    corr = cov / np.outer(std, std)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def quasi_diagonal_order(cov: FloatArray) -> NDArray[np.intp]:
    """Asset indices in the order of the single-linkage dendrogram's leaves."""
    if len(cov) == 1:
        return np.array([0])
    distance = np.sqrt(np.clip((1.0 - correlation_from_covariance(cov)) / 2.0, 0.0, 1.0))
    return leaves_list(linkage(squareform(distance, checks=False), method="single"))


def cluster_variance(cov: FloatArray, members: NDArray[np.intp]) -> float:
    """The variance of the inverse-variance portfolio of ``members``."""
    sub = cov[np.ix_(members, members)]
    ivp = 1.0 / np.diag(sub)
    ivp /= ivp.sum()
    return float(ivp @ sub @ ivp)


def recursive_bisection(cov: FloatArray, order: NDArray[np.intp]) -> FloatArray:
    weights = np.ones(len(cov))
    clusters = [order]
    while clusters:
        halves = [c[a:b] for c in clusters for a, b in ((0, len(c) // 2), (len(c) // 2, len(c))) if len(c) > 1]
        for first, second in zip(halves[0::2], halves[1::2], strict=True):
            v1, v2 = cluster_variance(cov, first), cluster_variance(cov, second)
            alpha = 1.0 - v1 / (v1 + v2)
            weights[first] *= alpha
            weights[second] *= 1.0 - alpha
        clusters = halves
    return weights


def hrp(cov: FloatArray, bounds: WeightBounds) -> FloatArray:
    raw = recursive_bisection(cov, quasi_diagonal_order(cov))
    return fit_to_bounds(raw, bounds)
