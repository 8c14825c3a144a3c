"""portfolio.optimize: bounded weights summing to 1, checked against PyPortfolioOpt (an
independent cvxpy-based implementation), closed forms and a hand-worked HRP case, on real
Bitstamp daily closes of BTC, ETH and LTC (tests/data/market/bitstamp_multi_1d/)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pypfopt import EfficientFrontier, HRPOpt, expected_returns, risk_models

from tradepilot.portfolio.bounds import WeightBounds, fit_to_bounds
from tradepilot.portfolio.errors import (
    InfeasibleBounds,
    InsufficientHistory,
    MissingPrices,
    NoPositiveExcessReturn,
    TargetReturnUnreachable,
)
from tradepilot.portfolio.hrp import quasi_diagonal_order
from tradepilot.portfolio.optimize import (
    MIN_OBSERVATIONS,
    Method,
    Moments,
    estimate_moments,
    optimize,
    optimize_moments,
)
from tradepilot.portfolio.risk_parity import risk_contributions

DATA = Path(__file__).parents[1] / "data" / "market" / "bitstamp_multi_1d"
SYMBOLS = ["BTC/USD", "ETH/USD", "LTC/USD"]


def _closes(asset: str) -> list[float]:
    with (DATA / f"{asset}_USD-1d-2017-11-09_2018-11-09.csv").open() as fh:
        return [float(row["close"]) for row in csv.DictReader(fh)]


CLOSES = np.column_stack([_closes(s.split("/")[0]) for s in SYMBOLS])
FRAME = pd.DataFrame(CLOSES, columns=SYMBOLS)


def reference(bounds: tuple[float, float] = (0.0, 1.0)) -> EfficientFrontier:
    mu = expected_returns.mean_historical_return(FRAME, compounding=False, frequency=365)
    cov = risk_models.sample_cov(FRAME, frequency=365)
    return EfficientFrontier(mu, cov, weight_bounds=bounds)


def weights(result) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([result.weights[s] for s in SYMBOLS])


def assert_valid(w: np.ndarray, lower: float = 0.0, upper: float = 1.0) -> None:
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(w >= lower - 1e-12) and np.all(w <= upper + 1e-12)


def test_the_moments_follow_the_stated_convention() -> None:
    moments = estimate_moments(CLOSES, SYMBOLS)
    returns = FRAME.pct_change().dropna()
    assert moments.observations == 365 and moments.periods_per_year == 365
    np.testing.assert_allclose(moments.mu, returns.mean().to_numpy() * 365, rtol=1e-12)
    np.testing.assert_allclose(moments.cov, returns.cov().to_numpy() * 365, rtol=1e-12)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.1, 0.6)])
@pytest.mark.parametrize("method", list(Method))
def test_every_method_gives_bounded_weights_summing_to_one(method: Method, bounds: tuple[float, float]) -> None:
    result = optimize(CLOSES, SYMBOLS, method, default_bounds=bounds,
                      target_return=0.4 if method == Method.EFFICIENT_RETURN else None)
    w = weights(result)
    assert_valid(w, *bounds)
    assert result.method == method and result.observations == 365 and result.symbols == SYMBOLS
    assert result.expected_return == pytest.approx(float(w @ estimate_moments(CLOSES, SYMBOLS).mu), rel=1e-12)
    assert result.sharpe_ratio == pytest.approx(result.expected_return / result.volatility, rel=1e-12)
    assert result.conventions()["annualization"] == 365


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.1, 0.6)])
def test_min_volatility_matches_pyportfolioopt(bounds: tuple[float, float]) -> None:
    expected = reference(bounds).min_volatility()
    ours = optimize(CLOSES, SYMBOLS, "min_volatility", default_bounds=bounds)
    np.testing.assert_allclose(weights(ours), [expected[s] for s in SYMBOLS], atol=1e-6)


@pytest.mark.parametrize(("bounds", "risk_free"), [((0.0, 1.0), 0.0), ((0.0, 1.0), 0.05), ((0.1, 0.6), 0.02)])
def test_max_sharpe_matches_pyportfolioopt(bounds: tuple[float, float], risk_free: float) -> None:
    ef = reference(bounds)
    expected = ef.max_sharpe(risk_free_rate=risk_free)
    ours = optimize(CLOSES, SYMBOLS, "max_sharpe", default_bounds=bounds, risk_free_rate=risk_free)
    np.testing.assert_allclose(weights(ours), [expected[s] for s in SYMBOLS], atol=1e-5)
    ret, vol, sharpe = ef.portfolio_performance(risk_free_rate=risk_free)
    assert ours.expected_return == pytest.approx(ret, rel=1e-5)
    assert ours.volatility == pytest.approx(vol, rel=1e-5)
    assert ours.sharpe_ratio == pytest.approx(sharpe, rel=1e-6)


@pytest.mark.parametrize("target", [0.3, 0.45, 0.55])
def test_efficient_return_matches_pyportfolioopt(target: float) -> None:
    expected = reference().efficient_return(target)
    ours = optimize(CLOSES, SYMBOLS, "efficient_return", target_return=target)
    np.testing.assert_allclose(weights(ours), [expected[s] for s in SYMBOLS], atol=1e-5)
    assert ours.expected_return >= target - 1e-8 and ours.target_return == target


def test_hrp_matches_pyportfolioopt_on_real_prices() -> None:
    expected = HRPOpt(FRAME.pct_change().dropna()).optimize()
    ours = optimize(CLOSES, SYMBOLS, "hrp")
    np.testing.assert_allclose(weights(ours), [expected[s] for s in SYMBOLS], atol=1e-12)


def test_hrp_on_a_hand_worked_case() -> None:
    # volatilities 0.2, 0.3, 0.1; correlations ρ12 = 0.3, ρ13 = ρ23 = 0.1
    cov = np.array([[0.04, 0.018, 0.002], [0.018, 0.09, 0.003], [0.002, 0.003, 0.01]])
    # distances sqrt((1 − ρ)/2): d12 = √0.35 < d13 = d23 = √0.45, so 1 and 2 merge first and
    # asset 3 joins them last; the dendrogram's leaves: 3, 1, 2
    assert list(quasi_diagonal_order(cov)) == [2, 0, 1]
    # bisection 1: [3] | [1, 2]. The inverse-variance portfolio of {1, 2}: (1/0.04, 1/0.09) ∝ (9, 4)/13
    v_12 = (9 / 13) ** 2 * 0.04 + (4 / 13) ** 2 * 0.09 + 2 * (9 / 13) * (4 / 13) * 0.018  # = 5.976 / 169
    v_3 = 0.01
    alpha = 1 - v_3 / (v_3 + v_12)  # the share of asset 3
    # bisection 2: [1] | [2]: 1 − 0.04 / 0.13 = 9/13 of the rest to asset 1
    expected = [(1 - alpha) * 9 / 13, (1 - alpha) * 4 / 13, alpha]
    result = optimize_moments(Moments(mu=np.zeros(3), cov=cov, observations=100, periods_per_year=365),
                              ["A", "B", "C"], "hrp")
    np.testing.assert_allclose([result.weights[s] for s in "ABC"], expected, rtol=1e-14)
    assert alpha == pytest.approx(5.976 / (5.976 + 1.69), rel=1e-14)


def test_min_volatility_equals_the_analytic_minimum_variance_portfolio() -> None:
    # with bounds that do not bind, w = Σ⁻¹1 / 1ᵀΣ⁻¹1
    cov = np.array([[0.09, 0.02, 0.01], [0.02, 0.06, 0.015], [0.01, 0.015, 0.05]])
    analytic = np.linalg.solve(cov, np.ones(3))
    analytic /= analytic.sum()
    assert np.all(analytic > 0)
    result = optimize_moments(Moments(mu=np.array([0.1, 0.2, 0.3]), cov=cov, observations=100,
                                      periods_per_year=365), ["A", "B", "C"], "min_volatility")
    np.testing.assert_allclose([result.weights[s] for s in "ABC"], analytic, atol=1e-9)


def test_risk_parity_equalises_risk_contributions() -> None:
    result = optimize(CLOSES, SYMBOLS, "risk_parity")
    cov = estimate_moments(CLOSES, SYMBOLS).cov
    np.testing.assert_allclose(risk_contributions(weights(result), cov), [1 / 3] * 3, atol=1e-12)
    # two assets: equal contributions at w ∝ 1/σ, whatever the correlation
    cov2 = np.array([[0.04, 0.012], [0.012, 0.09]])
    two = optimize_moments(Moments(mu=np.zeros(2), cov=cov2, observations=100, periods_per_year=365),
                           ["A", "B"], "risk_parity")
    assert two.weights["A"] == pytest.approx(0.3 / 0.5, rel=1e-12)


def test_risk_parity_within_binding_bounds_stays_bounded() -> None:
    result = optimize(CLOSES, SYMBOLS, "risk_parity", bounds={"BTC/USD": (0.5, 1.0)})
    w = weights(result)
    assert_valid(w)
    assert w[0] >= 0.5 - 1e-12


def test_per_symbol_bounds_are_respected() -> None:
    result = optimize(CLOSES, SYMBOLS, "max_sharpe", bounds={"LTC/USD": (0.0, 0.2), "ETH/USD": (0.15, 1.0)})
    w = weights(result)
    assert_valid(w)
    assert w[2] <= 0.2 + 1e-12 and w[1] >= 0.15 - 1e-12


def test_fit_to_bounds_keeps_the_proportions_of_unclipped_weights() -> None:
    fitted = fit_to_bounds(np.array([0.7, 0.2, 0.1]), WeightBounds(np.zeros(3), np.array([0.5, 1.0, 1.0])))
    np.testing.assert_allclose(fitted, [0.5, 1 / 3, 1 / 6], atol=1e-15)


def test_domain_errors() -> None:
    with pytest.raises(InsufficientHistory) as short:
        optimize(CLOSES[:10], SYMBOLS, "hrp")
    assert short.value.code == "insufficient_history" and short.value.extra["required"] == MIN_OBSERVATIONS
    with pytest.raises(InfeasibleBounds):
        optimize(CLOSES, SYMBOLS, "min_volatility", default_bounds=(0.4, 1.0))  # Σ min = 1.2
    with pytest.raises(InfeasibleBounds):
        optimize(CLOSES, SYMBOLS, "min_volatility", default_bounds=(0.0, 0.3))  # Σ max = 0.9
    with pytest.raises(InfeasibleBounds):
        optimize(CLOSES, SYMBOLS, "min_volatility", bounds={"DOGE/USD": (0.0, 0.5)})
    with pytest.raises(TargetReturnUnreachable) as far:
        optimize(CLOSES, SYMBOLS, "efficient_return", target_return=5.0)
    assert far.value.extra["max_return"] == pytest.approx(estimate_moments(CLOSES, SYMBOLS).mu.max())
    gappy = CLOSES.copy()
    gappy[5, 1] = np.nan
    with pytest.raises(MissingPrices) as missing:
        optimize(gappy, SYMBOLS, "hrp")
    assert missing.value.extra["symbols"] == ["ETH/USD"]
    with pytest.raises(NoPositiveExcessReturn):
        optimize(CLOSES, SYMBOLS, "max_sharpe", risk_free_rate=5.0)
