"""Portfolio optimisation from daily closes: mean-variance, risk parity and HRP (docs/portfolio.md).

One convention, stated once and echoed in every result:

* **Inputs** are daily closes, one row per UTC day, one column per symbol, aligned on the
  days every symbol has (``float64``; money becomes floats only here).
* **Returns** are simple daily returns ``r_t = P_t / P_(t−1) − 1`` (as ``portfolio.metrics``).
* **Expected returns** ``μ = mean(r) · 365`` (arithmetic, annualised: crypto trades every day,
  the same 365 as ``metrics.DEFAULT_PERIODS_PER_YEAR``) and **covariance**
  ``Σ = cov(r, ddof=1) · 365`` — PyPortfolioOpt's ``mean_historical_return(compounding=False,
  frequency=365)`` and ``sample_cov(frequency=365)``.
* **Risk-free rate**: an annual rate, default 0, subtracted from the annual expected return:
  ``Sharpe = (wᵀμ − rf) / sqrt(wᵀΣw)``.
* **Weights** sum to 1 and lie within per-asset bounds (long-only ``[0, 1]`` by default).

The solvers are scipy's (SLSQP; ``scipy.cluster.hierarchy`` for HRP): see
``docs/dependencies.md`` for why not PyPortfolioOpt at run time (it is the tests' reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tradepilot.portfolio import hrp, mean_variance, risk_parity
from tradepilot.portfolio.bounds import FloatArray, WeightBounds
from tradepilot.portfolio.errors import InsufficientHistory, MissingPrices
from tradepilot.portfolio.metrics import DEFAULT_PERIODS_PER_YEAR

MIN_OBSERVATIONS = 30  # daily returns: fewer give a covariance matrix too noisy to optimise on
ESTIMATOR = "sample"  # mean and sample covariance of simple daily returns, annualised


class Method(StrEnum):
    MAX_SHARPE = "max_sharpe"
    MIN_VOLATILITY = "min_volatility"
    EFFICIENT_RETURN = "efficient_return"
    RISK_PARITY = "risk_parity"
    HRP = "hrp"


class RiskTolerance(StrEnum):
    CONSERVATIVE = "conservative"
    MODERATE = "moderate"
    AGGRESSIVE = "aggressive"


RISK_TOLERANCE_METHODS: dict[RiskTolerance, Method] = {
    RiskTolerance.CONSERVATIVE: Method.MIN_VOLATILITY,  # the least risk the assets allow
    RiskTolerance.MODERATE: Method.RISK_PARITY,  # risk spread evenly: no asset dominates
    RiskTolerance.AGGRESSIVE: Method.MAX_SHARPE,  # the best return per unit of risk, concentrated
}


@dataclass(frozen=True, slots=True)
class Moments:
    """Annualised expected returns and covariance, and what they were estimated from."""

    mu: FloatArray
    cov: FloatArray
    observations: int  # daily returns used
    periods_per_year: int


@dataclass(frozen=True, slots=True)
class OptimizationResult:
    method: Method
    symbols: list[str]
    weights: dict[str, float]
    expected_return: float  # annual, wᵀμ
    volatility: float  # annual, sqrt(wᵀΣw)
    sharpe_ratio: float | None  # (wᵀμ − rf) / volatility; None for zero volatility
    risk_free_rate: float
    observations: int
    periods_per_year: int
    target_return: float | None = None

    def conventions(self) -> dict[str, Any]:
        return {"annualization": self.periods_per_year, "returns": "simple", "expected_returns": "mean",
                "covariance": ESTIMATOR, "covariance_ddof": 1, "risk_free_rate": self.risk_free_rate,
                "weights": "long_only_sum_to_one"}


def estimate_moments(closes: ArrayLike, symbols: Sequence[str],
                     periods_per_year: int = DEFAULT_PERIODS_PER_YEAR) -> Moments:
    """``μ`` and ``Σ`` from daily closes (rows: days, columns: ``symbols``)."""
    prices = np.asarray(closes, dtype=float)
    if prices.ndim != 2 or prices.shape[1] != len(symbols):
        raise ValueError("closes must be a (days, symbols) matrix")
    bad = [s for j, s in enumerate(symbols) if not np.all(np.isfinite(prices[:, j]) & (prices[:, j] > 0))]
    if bad:
        raise MissingPrices(f"Missing or non-positive closes for {', '.join(bad)}.", symbols=bad)
    returns = prices[1:] / prices[:-1] - 1.0
    required = max(MIN_OBSERVATIONS, len(symbols) + 1)
    if len(returns) < required:
        raise InsufficientHistory(required=required, available=len(returns), symbols=list(symbols))
    mu = returns.mean(axis=0) * periods_per_year
    cov = np.atleast_2d(np.cov(returns, rowvar=False, ddof=1)) * periods_per_year
    flat = [s for s, v in zip(symbols, np.diag(cov), strict=True) if v <= 0]
    if flat:
        raise MissingPrices(f"The closes of {', '.join(flat)} never change: no risk to estimate.", symbols=flat)
    return Moments(mu=mu, cov=cov, observations=len(returns), periods_per_year=periods_per_year)


def optimize(closes: ArrayLike, symbols: Sequence[str], method: Method | str, *,
             bounds: Mapping[str, tuple[float, float]] | None = None,
             default_bounds: tuple[float, float] = (0.0, 1.0),
             target_return: float | None = None, risk_free_rate: float = 0.0,
             periods_per_year: int = DEFAULT_PERIODS_PER_YEAR) -> OptimizationResult:
    """The portfolio of ``method`` for the daily ``closes`` of ``symbols``."""
    if len(set(symbols)) != len(symbols) or not symbols:
        raise ValueError("symbols must be distinct and not empty")
    moments = estimate_moments(closes, symbols, periods_per_year)
    return optimize_moments(moments, symbols, method, bounds=WeightBounds.of(symbols, bounds, default_bounds),
                            target_return=target_return, risk_free_rate=risk_free_rate)


def optimize_moments(moments: Moments, symbols: Sequence[str], method: Method | str, *,
                     bounds: WeightBounds | None = None, target_return: float | None = None,
                     risk_free_rate: float = 0.0) -> OptimizationResult:
    """The same from already estimated moments (tests use hand-made ones)."""
    method = Method(method)
    bounds = bounds or WeightBounds.long_only(len(symbols))
    bounds.check(symbols)
    mu, cov = moments.mu, moments.cov
    if method == Method.MIN_VOLATILITY:
        weights = mean_variance.min_volatility(cov, bounds)
    elif method == Method.EFFICIENT_RETURN:
        if target_return is None:
            raise ValueError("efficient_return needs target_return")
        weights = mean_variance.efficient_return(mu, cov, bounds, target_return)
    elif method == Method.MAX_SHARPE:
        weights = mean_variance.max_sharpe(mu, cov, bounds, risk_free_rate)
    elif method == Method.RISK_PARITY:
        weights = risk_parity.risk_parity(cov, bounds)
    else:
        weights = hrp.hrp(cov, bounds)
    expected = float(weights @ mu)
    volatility = float(np.sqrt(max(float(weights @ cov @ weights), 0.0)))
    return OptimizationResult(
        method=method, symbols=list(symbols), weights={s: float(w) for s, w in zip(symbols, weights, strict=True)},
        expected_return=expected, volatility=volatility,
        sharpe_ratio=(expected - risk_free_rate) / volatility if volatility > 0 else None,
        risk_free_rate=risk_free_rate, observations=moments.observations,
        periods_per_year=moments.periods_per_year,
        target_return=target_return if method == Method.EFFICIENT_RETURN else None)
