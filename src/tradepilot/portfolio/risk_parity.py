"""Risk parity: every asset contributes the same share of the portfolio's variance.

The risk contribution of asset ``i`` is ``RC_i = w_i (Σw)_i / wᵀΣw`` (they sum to 1). Equal
risk contribution (ERC, Maillard, Roncalli & Teïletche 2010) is the unique long-only solution
of the convex problem ``min ½ yᵀΣy − Σ b_i ln y_i`` (``b_i = 1/n``), rescaled ``w = y / Σy``;
it is solved here by Newton's method, which converges in a handful of steps.

Bounds: when the ERC portfolio lies within them it is the answer. Otherwise the bounds forbid
equal contributions, and the answer is the portfolio within the bounds whose contributions
are closest to equal (least squares of ``RC_i − 1/n``, SLSQP from the ERC weights fitted in).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from tradepilot.portfolio.bounds import FloatArray, WeightBounds, fit_to_bounds, within
from tradepilot.portfolio.errors import OptimizationFailed

_NEWTON_STEPS = 100
_NEWTON_TOLERANCE = 1e-14


def risk_contributions(weights: FloatArray, cov: FloatArray) -> FloatArray:
    """Each asset's share of the portfolio variance (sums to 1)."""
    marginal = cov @ weights
    return weights * marginal / float(weights @ marginal)


def equal_risk_contribution(cov: FloatArray) -> FloatArray:
    """The unconstrained long-only ERC weights."""
    n = len(cov)
    budget = np.full(n, 1.0 / n)
    y = 1.0 / np.sqrt(np.diag(cov))  # inverse volatility: the answer when assets are uncorrelated
    y *= np.sqrt(1.0 / float(y @ cov @ y))  # at the optimum yᵀΣy = Σb = 1
    for _ in range(_NEWTON_STEPS):
        gradient = cov @ y - budget / y
        hessian = cov + np.diag(budget / y**2)
        step = np.linalg.solve(hessian, gradient)
        t = 1.0
        while np.any(y - t * step <= 0):  # stay where the logarithm is defined
            t /= 2.0
        y = y - t * step
        if float(np.max(np.abs(gradient))) < _NEWTON_TOLERANCE:
            break
    return y / y.sum()


def risk_parity(cov: FloatArray, bounds: WeightBounds) -> FloatArray:
    erc = equal_risk_contribution(cov)
    if within(erc, bounds, tolerance=0.0):
        return erc
    n = len(cov)
    target = 1.0 / n

    def spread(w: FloatArray) -> float:
        return float(((risk_contributions(w, cov) - target) ** 2).sum())

    result = minimize(spread, fit_to_bounds(erc, bounds), method="SLSQP",
                      bounds=list(zip(bounds.lower, bounds.upper, strict=True)),
                      constraints=[{"type": "eq", "fun": lambda w: float(w.sum()) - 1.0,
                                    "jac": lambda w: np.ones_like(w)}],
                      options={"ftol": 1e-16, "maxiter": 2000})
    if not result.success:
        raise OptimizationFailed(f"Risk parity within bounds: {result.message}")
    return fit_to_bounds(np.clip(result.x, bounds.lower, bounds.upper), bounds)
