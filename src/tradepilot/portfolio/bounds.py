"""Per-asset weight bounds of the optimiser: validation, a feasible start, and fitting weights in.

Spot accounts cannot go short, so every bound lies in ``[0, 1]`` (long-only by default:
``(0, 1)`` for each asset) and the weights of a portfolio sum to 1. Bounds are feasible when
``lower <= upper`` for each asset and ``Σ lower <= 1 <= Σ upper``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from tradepilot.portfolio.errors import InfeasibleBounds

FloatArray = NDArray[np.float64]
SUM_TOLERANCE = 1e-9  # how far from 1 the weights may sum, and bounds may be missed, by round-off


@dataclass(frozen=True, slots=True)
class WeightBounds:
    """Lower and upper weight of each asset, in the order of the optimiser's symbols."""

    lower: FloatArray
    upper: FloatArray

    @classmethod
    def long_only(cls, n: int) -> WeightBounds:
        return cls(np.zeros(n), np.ones(n))

    @classmethod
    def of(cls, symbols: Sequence[str], per_symbol: Mapping[str, tuple[float, float]] | None = None,
           default: tuple[float, float] = (0.0, 1.0)) -> WeightBounds:
        """Bounds for ``symbols``: ``per_symbol`` where given, else ``default``; validated."""
        per_symbol = per_symbol or {}
        unknown = sorted(set(per_symbol) - set(symbols))
        if unknown:
            raise InfeasibleBounds(f"Bounds given for symbols not optimised: {', '.join(unknown)}.",
                                   extra={"symbols": unknown})
        pairs = [per_symbol.get(s, default) for s in symbols]
        bounds = cls(np.array([p[0] for p in pairs], dtype=float), np.array([p[1] for p in pairs], dtype=float))
        bounds.check(symbols)
        return bounds

    def check(self, symbols: Sequence[str]) -> None:
        """Raise :class:`InfeasibleBounds` unless some long-only portfolio fits the bounds."""
        lo, hi = self.lower, self.upper
        bad = [s for s, a, b in zip(symbols, lo, hi, strict=True)
               if not (np.isfinite(a) and np.isfinite(b) and 0 <= a <= b <= 1)]
        if bad:
            raise InfeasibleBounds(f"Each bound needs 0 <= min <= max <= 1 (long-only); not so for {', '.join(bad)}.",
                                   extra={"symbols": bad})
        if lo.sum() > 1 + SUM_TOLERANCE or hi.sum() < 1 - SUM_TOLERANCE:
            raise InfeasibleBounds(
                f"The minimum weights sum to {lo.sum():.6g} and the maximum weights to {hi.sum():.6g}; "
                "weights summing to 1 need Σ min <= 1 <= Σ max.",
                extra={"sum_min": float(lo.sum()), "sum_max": float(hi.sum())})


def fit_to_bounds(weights: FloatArray, bounds: WeightBounds) -> FloatArray:
    """The weights scaled by one factor ``λ`` and clipped: ``clip(λ·w, lower, upper)`` summing to 1.

    ``Σ clip(λ·w_i, lower_i, upper_i)`` grows continuously and monotonically with ``λ`` (from
    ``Σ lower`` at 0), so one ``λ`` gives a sum of 1 whenever the bounds allow: the weights that
    are not clipped keep their proportions to one another. Used to respect bounds with methods
    that have none of their own (HRP), and as a feasible starting point for the solvers.
    """
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    lo, hi = bounds.lower, bounds.upper
    reachable = float(np.where(w > 0, hi, lo).sum())
    if lo.sum() > 1 + SUM_TOLERANCE or reachable < 1 - SUM_TOLERANCE:
        raise InfeasibleBounds("The bounds leave no room for these weights.",
                               extra={"sum_min": float(lo.sum()), "sum_max": reachable})

    def excess(scale: float) -> float:
        return float(np.clip(scale * w, lo, hi).sum()) - 1.0

    if excess(0.0) >= 0:
        fitted = lo.copy()
    else:
        top = 1.0
        while excess(top) < 0 and top < 1e300:
            top *= 2.0
        fitted = np.clip(brentq(excess, 0.0, top, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500) * w,
                         lo, hi)
    return _absorb_residual(fitted, lo, hi)


def _absorb_residual(w: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Make the sum exactly 1 (to round-off) by moving the residual onto weights with room."""
    residual = 1.0 - float(w.sum())
    room = (hi - w) if residual > 0 else (w - lo)
    if residual != 0 and room.sum() > 0:
        w = w + residual * room / room.sum()
    return np.clip(w, lo, hi)


def within(weights: FloatArray, bounds: WeightBounds, tolerance: float = SUM_TOLERANCE) -> bool:
    return bool(np.all(weights >= bounds.lower - tolerance) and np.all(weights <= bounds.upper + tolerance)
                and abs(weights.sum() - 1.0) <= tolerance)
