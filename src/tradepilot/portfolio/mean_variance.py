"""Markowitz mean-variance portfolios, solved with scipy's SLSQP (convex quadratic programmes).

``mu`` (annual expected returns) and ``cov`` (annual covariance) come from
``optimize.estimate_moments``. Every problem here is convex, so SLSQP's local optimum is the
global one:

* **minimum volatility**: ``min wᵀΣw`` s.t. ``Σw = 1``, bounds;
* **efficient return**: the same with ``wᵀμ >= target`` (a target below the minimum-volatility
  portfolio's return gives that portfolio, as PyPortfolioOpt does);
* **maximum Sharpe**: not convex in ``w``, so solved in the usual change of variables
  (Cornuéjols & Tütüncü): ``y = k·w`` with ``(μ - rf)ᵀy = 1``, ``min yᵀΣy`` s.t. ``Σy = k``,
  ``k·lower <= y <= k·upper``, ``k >= 0``; then ``w = y / k``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import minimize

from tradepilot.portfolio.bounds import FloatArray, WeightBounds, fit_to_bounds
from tradepilot.portfolio.errors import (
    NoPositiveExcessReturn,
    OptimizationFailed,
    TargetReturnUnreachable,
)

_OPTIONS = {"ftol": 1e-15, "maxiter": 2000}
_FEASIBILITY = 1e-8  # a constraint missed by no more than this counts as met (solver round-off)


def max_return(mu: FloatArray, bounds: WeightBounds) -> tuple[float, FloatArray]:
    """The highest expected return any portfolio within the bounds has (a linear programme solved
    greedily: everything at its minimum, the rest to the best assets first) and its weights."""
    w = bounds.lower.copy()
    left = 1.0 - float(w.sum())
    for i in np.argsort(-mu, kind="stable"):
        add = min(left, float(bounds.upper[i] - w[i]))
        w[i] += add
        left -= add
    return float(w @ mu), w


def min_volatility(cov: FloatArray, bounds: WeightBounds) -> FloatArray:
    n = len(cov)
    start = fit_to_bounds(np.full(n, 1.0 / n), bounds)
    return _solve(lambda w: float(w @ cov @ w), lambda w: 2.0 * cov @ w, start, bounds,
                  [_sums_to_one()], "minimum volatility")


def efficient_return(mu: FloatArray, cov: FloatArray, bounds: WeightBounds, target: float) -> FloatArray:
    best, best_weights = max_return(mu, bounds)
    if target > best + _FEASIBILITY:
        raise TargetReturnUnreachable(target=target, maximum=best)
    reaches = {"type": "ineq", "fun": lambda w: float(w @ mu) - target, "jac": lambda w: mu}
    weights = _solve(lambda w: float(w @ cov @ w), lambda w: 2.0 * cov @ w, best_weights, bounds,
                     [_sums_to_one(), reaches], "efficient return")
    if float(weights @ mu) < target - _FEASIBILITY:
        raise OptimizationFailed("The solver could not meet the target return.")
    return weights


def max_sharpe(mu: FloatArray, cov: FloatArray, bounds: WeightBounds, risk_free_rate: float) -> FloatArray:
    excess = mu - risk_free_rate
    n = len(mu)
    _, start_w = max_return(excess, bounds)
    start_excess = float(start_w @ excess)
    if start_excess <= 0:
        raise NoPositiveExcessReturn(
            f"No portfolio within the bounds expects more than the risk-free rate ({risk_free_rate:.6g}); "
            "the maximum Sharpe ratio is undefined. Try min_volatility or risk_parity.",
            extra={"risk_free_rate": risk_free_rate})
    lo, hi = bounds.lower, bounds.upper
    # x = (y_1 .. y_n, k)
    constraints = [
        {"type": "eq", "fun": lambda x: float(x[:n] @ excess) - 1.0, "jac": lambda x: np.append(excess, 0.0)},
        {"type": "eq", "fun": lambda x: float(x[:n].sum() - x[n]), "jac": lambda x: np.append(np.ones(n), -1.0)},
        {"type": "ineq", "fun": lambda x: x[:n] - x[n] * lo, "jac": lambda x: np.hstack([np.eye(n), -lo[:, None]])},
        {"type": "ineq", "fun": lambda x: x[n] * hi - x[:n], "jac": lambda x: np.hstack([-np.eye(n), hi[:, None]])},
    ]
    x0 = np.append(start_w, 1.0) / start_excess
    result = minimize(lambda x: float(x[:n] @ cov @ x[:n]), x0,
                      jac=lambda x: np.append(2.0 * cov @ x[:n], 0.0), method="SLSQP",
                      bounds=[(0.0, None)] * (n + 1), constraints=constraints, options=_OPTIONS)
    if not result.success or result.x[n] <= 0:
        raise OptimizationFailed(f"Maximum Sharpe: {result.message}")
    return _tidy(result.x[:n] / result.x[n], bounds)


def _sums_to_one() -> dict[str, Any]:
    return {"type": "eq", "fun": lambda w: float(w.sum()) - 1.0, "jac": lambda w: np.ones_like(w)}


def _solve(objective: Callable[[FloatArray], float], gradient: Callable[[FloatArray], FloatArray],
           start: FloatArray, bounds: WeightBounds, constraints: list[dict[str, Any]], what: str) -> FloatArray:
    result = minimize(objective, start, jac=gradient, method="SLSQP",
                      bounds=list(zip(bounds.lower, bounds.upper, strict=True)), constraints=constraints,
                      options=_OPTIONS)
    if not result.success:
        raise OptimizationFailed(f"{what.capitalize()}: {result.message}")
    return _tidy(result.x, bounds)


def _tidy(weights: FloatArray, bounds: WeightBounds) -> FloatArray:
    """Remove the solver's round-off: inside the bounds, summing to 1."""
    w = np.clip(weights, bounds.lower, bounds.upper)
    return fit_to_bounds(w, bounds) if abs(w.sum() - 1.0) > 1e-12 else w
