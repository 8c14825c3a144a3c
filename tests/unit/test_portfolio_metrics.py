"""portfolio.metrics against an independent implementation (empyrical-reloaded, scipy) on a
real price series, and against hand-computed small cases where no library computes a figure
the same way.

The real series: Bitstamp BTC/USD and ETH/USD daily closes, 2017-11-09 .. 2018-11-09
(tests/data/market/bitstamp_multi_1d/, see its README). The equity curve is a buy-and-hold
of BTC worth 10,000 USD at the first close, with a 5,000 USD deposit on 2018-02-06 that buys
more BTC at that day's close.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import empyrical as ep
import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from tradepilot.portfolio import metrics as m

DATA = Path(__file__).resolve().parents[1] / "data" / "market" / "bitstamp_multi_1d"
REL = 1e-9
PPY = 365
RF = 0.04  # annual risk-free rate
MAR = 0.05  # annual minimum acceptable return
DEPOSIT_DAY = "2018-02-06"
DEPOSIT = 5_000.0


def _closes(name: str) -> tuple[list[datetime], np.ndarray]:
    with open(DATA / name, newline="") as fh:
        rows = list(csv.DictReader(fh))
    dates = [datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in rows]
    return dates, np.array([float(r["close"]) for r in rows])


DATES, BTC = _closes("BTC_USD-1d-2017-11-09_2018-11-09.csv")
ETH_DATES, ETH = _closes("ETH_USD-1d-2017-11-09_2018-11-09.csv")
K = [d.date().isoformat() for d in DATES].index(DEPOSIT_DAY)


def _buy_and_hold_with_deposit() -> tuple[np.ndarray, np.ndarray]:
    units = np.full(BTC.size, 10_000.0 / BTC[0])
    units[K:] += DEPOSIT / BTC[K]
    flows = np.zeros(BTC.size)
    flows[K] = DEPOSIT
    return units * BTC, flows


EQUITY, FLOWS = _buy_and_hold_with_deposit()
R = m.simple_returns(EQUITY, FLOWS)
BENCH = ETH[1:] / ETH[:-1] - 1.0  # ETH daily returns, dated DATES[1:]
RF_P = (1 + RF) ** (1 / PPY) - 1
MAR_P = (1 + MAR) ** (1 / PPY) - 1


def close(actual: float, expected: float, rel: float = REL) -> bool:
    return actual == pytest.approx(expected, rel=rel, abs=1e-300)


# ------------------------------------------------------------------ the data and the deposit


def test_the_slice_is_a_year_of_consecutive_days_on_the_same_dates() -> None:
    assert DATES == ETH_DATES and len(DATES) == 366
    assert all(b - a == timedelta(days=1) for a, b in zip(DATES, DATES[1:], strict=False))
    assert 0 < K < len(DATES) - 1


def test_a_deposit_is_not_a_return_time_weighted_return_is_the_price_return() -> None:
    price_returns = ep.simple_returns(BTC)
    np.testing.assert_allclose(R, price_returns, rtol=REL, atol=0)
    assert close(m.time_weighted_return(EQUITY, FLOWS), BTC[-1] / BTC[0] - 1)
    # ignoring the flow would have booked the deposit as a gain of ~+50 % that day
    naive = m.simple_returns(EQUITY)
    assert naive[K - 1] > R[K - 1] + 0.4
    # a withdrawal (negative flow) is not a loss either
    equity_w, flows_w = BTC / BTC[0] * 10_000, np.zeros_like(FLOWS)
    flows_w[K] = -0.5 * equity_w[K]  # half the BTC sold at the close and withdrawn
    equity_w[K:] *= 0.5
    np.testing.assert_allclose(m.simple_returns(equity_w, flows_w), price_returns, rtol=REL)


def test_money_weighted_return_differs_and_solves_the_cash_flow_equation() -> None:
    mwr = m.money_weighted_return(EQUITY, FLOWS, DATES)
    twr_annual = m.annualized_return(R, PPY)
    years = np.array([(d - DATES[0]).days / 365 for d in DATES])
    # cash flows of the investor: 10,000 in, 5,000 in on the deposit day, the equity out
    times = np.array([0.0, years[K], years[-1]])
    cash = np.array([-EQUITY[0], -DEPOSIT, EQUITY[-1]])

    def npv(rate: float) -> float:
        return float(np.sum(cash * (1 + rate) ** -times))

    # independent solve: Newton/secant on the NPV in the rate itself
    reference = optimize.newton(npv, x0=twr_annual, tol=1e-14, maxiter=200)
    assert close(mwr, reference)
    assert abs(npv(mwr)) < 1e-7
    # BTC fell after the deposit more than over the year as a whole: the extra money
    # arrived before the losses, so the money-weighted return is the worse one
    assert BTC[-1] / BTC[K] - 1 < BTC[-1] / BTC[0] - 1
    assert mwr < twr_annual - 0.01
    # over the whole span rather than per year: the span is 365 days, so the same figure
    assert close(m.money_weighted_return(EQUITY, FLOWS, DATES, annualize=False), mwr)


def test_without_flows_the_money_weighted_return_is_the_cagr() -> None:
    equity = BTC / BTC[0] * 10_000
    r = m.simple_returns(equity)
    assert close(m.money_weighted_return(equity, None, DATES), m.annualized_return(r, PPY))
    assert close(m.money_weighted_return(equity), m.annualized_return(r, PPY))


# ------------------------------------------------------------------ hand-checked returns


def test_time_and_money_weighted_returns_hand_checked() -> None:
    d = [datetime(2021, 1, 1), datetime(2022, 1, 1), datetime(2023, 1, 1)]  # 365 days apart
    # 1,000 grows 10 % in year 1, then 1,000 is deposited: 1,100 + 1,000 = 2,100;
    # year 2 ends at 2,300.
    equity, flows = [1000, 2100, 2300], [0, 1000, 0]
    # TWR: r1 = (2100 - 1000) / 1000 - 1 = 0.10; r2 = 2300 / 2100 - 1; TWR = 1.1 * 2300/2100 - 1
    np.testing.assert_allclose(m.simple_returns(equity, flows), [0.1, 2300 / 2100 - 1], rtol=REL)
    assert close(m.time_weighted_return(equity, flows), 1.1 * 2300 / 2100 - 1)
    # MWR: -1000 - 1000 v + 2300 v^2 = 0 with v = 1 / (1 + R):
    # v = (1000 + sqrt(1000^2 + 4 * 2300 * 1000)) / (2 * 2300)
    v = (1000 + math.sqrt(1000**2 + 4 * 2300 * 1000)) / (2 * 2300)
    assert close(m.money_weighted_return(equity, flows, d), 1 / v - 1)
    # the same with Decimal money and no dates, one period a year
    dec = [Decimal("1000"), Decimal("2100.00"), Decimal("2300")]
    assert close(m.money_weighted_return(dec, [Decimal(0), Decimal(1000), Decimal(0)],
                                         periods_per_year=1), 1 / v - 1)  # fmt: skip
    # over the whole two years: (1 + R) ** 2 - 1
    assert close(m.money_weighted_return(equity, flows, d, annualize=False), v**-2 - 1)


def test_a_withdrawal_hand_checked() -> None:
    # 1,000 earns 10 % (1,100), 600 is withdrawn (500 left), which earns 10 % again (550)
    equity, flows = [1000, 500, 550], [0, -600, 0]
    # r1 = (500 + 600) / 1000 - 1 = 0.1, r2 = 550 / 500 - 1 = 0.1, TWR = 1.1^2 - 1 = 0.21
    np.testing.assert_allclose(m.simple_returns(equity, flows), [0.1, 0.1], rtol=REL)
    assert close(m.time_weighted_return(equity, flows), 0.21)
    # MWR: -1000 + 600 v + 550 v^2 = 0 -> v = (-600 + sqrt(600^2 + 4*550*1000)) / 1100
    #      = (-600 + 1600) / 1100 = 1 / 1.1 -> R = 10 % a period
    assert close(m.money_weighted_return(equity, flows, periods_per_year=1), 0.1)


def test_an_account_funded_later_and_the_undefined_cases() -> None:
    # empty until the deposit on day 2: those periods have no return, the deposit is none
    equity, flows = [0, 0, 100, 101], [0, 0, 100, 0]
    r = m.simple_returns(equity, flows)
    assert np.isnan(r[:2]).all() and close(r[2], 0.01)
    assert close(m.time_weighted_return(equity, flows), 0.01)
    # -100 on day 2, +101 on day 3: one day at 1 % -> 1.01^365 - 1 a year
    assert close(m.money_weighted_return(equity, flows), 1.01**365 - 1)
    assert close(m.annualized_return(r), 1.01**365 - 1)
    assert m.money_weighted_return([1000, 0]) == -1.0  # everything lost
    assert m.annualized_return([-1.0]) == -1.0
    assert math.isnan(m.money_weighted_return([0, 50]))  # money out of nothing: no rate
    assert math.isnan(m.money_weighted_return([100]))
    assert m.money_weighted_return([100, 100, 100]) == 0.0


def test_cagr_and_cumulative_against_empyrical() -> None:
    assert close(m.cumulative_return(R), ep.cum_returns_final(R))
    assert close(m.annualized_return(R, PPY), ep.annual_return(R, annualization=PPY))
    assert close(m.annualized_return(R, 252), ep.cagr(R, annualization=252))
    np.testing.assert_allclose(m.wealth_index(R)[1:] - 1, ep.cum_returns(R), rtol=REL)


# ------------------------------------------------------------------ risk against empyrical


def test_conventions_rate_conversion() -> None:
    assert close(m.periodic_rate(RF, PPY), RF_P)
    assert close((1 + m.periodic_rate(0.1, 12)) ** 12, 1.1)
    assert m.periodic_rate(0.0) == 0.0 and math.isnan(m.periodic_rate(-1.0))


def test_volatility_sharpe_sortino_downside_against_empyrical() -> None:
    assert close(m.volatility(R, PPY), ep.annual_volatility(R, annualization=PPY))
    assert close(m.volatility(R, 252), ep.annual_volatility(R, annualization=252))
    assert close(m.sharpe_ratio(R, RF, PPY), ep.sharpe_ratio(R, RF_P, annualization=PPY))
    assert close(m.sharpe_ratio(R), ep.sharpe_ratio(R, annualization=PPY))
    assert close(m.downside_deviation(R, MAR, PPY), ep.downside_risk(R, MAR_P, annualization=PPY))
    assert close(m.sortino_ratio(R, MAR, PPY), ep.sortino_ratio(R, MAR_P, annualization=PPY))
    assert close(m.sortino_ratio(R), ep.sortino_ratio(R, annualization=PPY))


def test_calmar_omega_tail_against_empyrical() -> None:
    assert close(m.calmar_ratio(R, PPY), ep.calmar_ratio(R, annualization=PPY))
    assert close(m.omega_ratio(R), ep.omega_ratio(R, annualization=PPY))
    assert close(
        m.omega_ratio(R, 0.10, PPY), ep.omega_ratio(R, required_return=0.10, annualization=PPY)
    )
    assert close(m.tail_ratio(R), ep.tail_ratio(R))


def test_drawdown_against_empyrical() -> None:
    dd = m.drawdown_series(R)
    assert dd.size == EQUITY.size and dd[0] == 0.0
    np.testing.assert_allclose(dd[1:], ep.stats.drawdown_series(R), rtol=REL, atol=1e-15)
    assert close(m.max_drawdown(R), ep.max_drawdown(R))


def test_var_cvar_historical_against_empyrical() -> None:
    for level in (0.95, 0.99):
        cutoff = 1 - level
        assert close(m.value_at_risk(R, level), -ep.value_at_risk(R, cutoff))
        assert close(
            m.conditional_value_at_risk(R, level), -ep.conditional_value_at_risk(R, cutoff)
        )
        assert m.conditional_value_at_risk(R, level) >= m.value_at_risk(R, level) > 0


def test_var_cvar_parametric_against_scipy() -> None:
    mu, sd = float(np.mean(R)), float(np.std(R, ddof=1))
    for level in (0.95, 0.99):
        quantile = stats.norm.ppf(1 - level, loc=mu, scale=sd)
        assert close(m.value_at_risk(R, level, "parametric"), -quantile)
        # expected shortfall by numerical integration of x over the normal's lower tail
        tail_mean = stats.norm.expect(
            lambda x: x, loc=mu, scale=sd, ub=quantile, conditional=True,
            epsabs=0, epsrel=1e-13, limit=200,
        )  # fmt: skip
        assert close(m.conditional_value_at_risk(R, level, "parametric"), -tail_mean)
    with pytest.raises(ValueError):
        m.value_at_risk(R, 95)


def test_beta_alpha_correlation_against_empyrical() -> None:
    assert close(m.beta(R, BENCH), ep.beta(R, BENCH))
    assert close(m.alpha(R, BENCH, RF, PPY), ep.alpha(R, BENCH, RF_P, annualization=PPY))
    assert close(m.correlation(R, BENCH), np.corrcoef(R, BENCH)[0, 1])
    assert 0.5 < m.correlation(R, BENCH) < 1


def test_benchmark_with_nans_and_aligned_by_date() -> None:
    bench = BENCH.copy()
    bench[[0, 5, 100, 200]] = np.nan
    assert close(m.beta(R, bench), ep.beta(R, bench))
    assert close(m.alpha(R, bench, RF, PPY), ep.alpha(R, bench, RF_P, annualization=PPY))
    ok = ~np.isnan(bench)
    assert close(m.correlation(R, bench), np.corrcoef(R[ok], bench[ok])[0, 1])
    # by date: the benchmark reversed, missing 30 days, with one NaN; empyrical aligns
    # pandas Series on their index
    idx = pd.DatetimeIndex(DATES[1:])
    r_s = pd.Series(R, index=idx)
    b_s = pd.Series(bench, index=idx).drop(idx[40:70]).iloc[::-1]
    got_beta = m.beta(R, b_s.to_numpy(), DATES[1:], b_s.index.to_numpy())
    got_alpha = m.alpha(R, b_s.to_numpy(), RF, PPY, DATES[1:], list(b_s.index))
    assert close(got_beta, ep.beta(r_s, b_s))
    assert close(got_alpha, ep.alpha(r_s, b_s, RF_P, annualization=PPY))
    assert close(m.correlation(R, b_s.to_numpy(), DATES[1:], list(b_s.index)), r_s.corr(b_s))
    # timezone-aware and naive UTC dates are the same dates
    naive = [d.replace(tzinfo=None) for d in DATES[1:]]
    assert close(m.beta(R, BENCH, naive, DATES[1:]), ep.beta(R, BENCH))


def test_rolling_against_empyrical() -> None:
    w = 30
    vol = m.rolling_volatility(R, w, PPY)
    sharpe = m.rolling_sharpe(R, w, RF, PPY)
    assert vol.size == sharpe.size == R.size
    assert np.isnan(vol[: w - 1]).all() and np.isnan(sharpe[: w - 1]).all()
    np.testing.assert_allclose(
        vol[w - 1 :], ep.roll_annual_volatility(R, w, annualization=PPY), rtol=REL
    )
    np.testing.assert_allclose(
        sharpe[w - 1 :], ep.roll_sharpe_ratio(R, w, risk_free=RF_P, annualization=PPY), rtol=REL
    )
    # a flat window has no Sharpe ratio (zero volatility), not a huge one
    flat = np.concatenate([R[:40], np.zeros(10), R[40:80]])
    assert np.isnan(m.rolling_sharpe(flat, 10)[49]) and m.rolling_volatility(flat, 10)[49] == 0
    assert np.isnan(m.rolling_sharpe(R[:5], 30)).all()


# ------------------------------------------------------------------ drawdown periods


def _reference_drawdowns(wealth: list[float]) -> list[tuple[int, int, int | None, float]]:
    """Plain-Python walk: (peak, trough, recovery or None, depth) of each under-water run."""
    out: list[tuple[int, int, int | None, float]] = []
    peak_i, peak = 0, wealth[0]
    trough_i: int | None = None
    for i, w in enumerate(wealth):
        if w >= peak:
            if trough_i is not None:
                out.append((peak_i, trough_i, i, wealth[trough_i] / peak - 1))
                trough_i = None
            peak_i, peak = i, w
        elif trough_i is None or w < wealth[trough_i]:
            trough_i = i
    if trough_i is not None:
        out.append((peak_i, trough_i, None, wealth[trough_i] / peak - 1))
    return sorted(out, key=lambda p: p[3])


def test_drawdown_periods_hand_checked() -> None:
    # W = 1, 1.1, 0.55, 0.66, 1.32, 1.188: under water from the peak 1.1 (index 1) to the
    # trough 0.55 (index 2, -50 %), back above 1.1 at index 4 (3 periods, recovery 2);
    # then from the peak 1.32 (index 4) down 10 % to the end, not recovered
    returns = [0.1, -0.5, 0.2, 1.0, -0.1]
    days = [datetime(2024, 1, 1) + timedelta(days=i) for i in range(6)]
    deep, shallow = m.drawdown_periods(returns, days)
    assert (deep.start_index, deep.trough_index, deep.end_index) == (1, 2, 4)
    assert (deep.start, deep.trough, deep.end) == (days[1], days[2], days[4])
    assert close(deep.depth, -0.5) and deep.length == 3 and deep.recovery_length == 2
    assert deep.recovered and not shallow.recovered
    assert (shallow.start_index, shallow.trough_index, shallow.end) == (4, 5, None)
    assert close(shallow.depth, -0.1) and shallow.length == 1 and shallow.recovery_length is None
    assert m.max_drawdown_period(returns) == m.drawdown_periods(returns, top_n=1)[0]
    assert m.max_drawdown_period(returns).start == 1  # no dates: indices


def test_drawdown_periods_on_the_real_curve() -> None:
    periods = m.drawdown_periods(R, DATES)
    reference = _reference_drawdowns(list(BTC / BTC[0]))  # buy and hold: W_t = P_t / P_0
    assert len(periods) == len(reference) > 5
    for got, (peak, trough, end, depth) in zip(periods, reference, strict=True):
        assert (got.start_index, got.trough_index, got.end_index) == (peak, trough, end)
        assert close(got.depth, depth, rel=1e-9)
    mdd = m.max_drawdown_period(R, DATES)
    assert mdd is not None and close(mdd.depth, m.max_drawdown(R))
    # the December 2017 top, never regained within the slice
    top = int(np.argmax(BTC))
    assert mdd.start_index == top and mdd.start == DATES[top].replace(tzinfo=None)
    assert mdd.start.year == 2017 and mdd.start.month == 12
    assert mdd.end is None and mdd.recovery_length is None
    assert BTC[mdd.trough_index] == BTC[mdd.start_index :].min()
    assert mdd.length == len(DATES) - 1 - mdd.start_index
    assert [p.depth for p in m.drawdown_periods(R, top_n=5)] == [p.depth for p in periods[:5]]


# ------------------------------------------------------------------ trades and exposure


def test_trade_statistics_hand_checked() -> None:
    stats_ = m.trade_statistics([Decimal("100"), Decimal("-50"), Decimal("0"), 30, -20.0])
    # wins 100, 30; losses -50, -20; one breakeven; 5 trades
    assert (stats_.count, stats_.wins, stats_.losses, stats_.breakeven) == (5, 2, 2, 1)
    assert close(stats_.win_rate, 2 / 5) and close(stats_.loss_rate, 2 / 5)
    assert stats_.gross_profit == 130 and stats_.gross_loss == -70 and stats_.total == 60
    assert close(stats_.profit_factor, 130 / 70)  # 1.857142...
    assert close(stats_.expectancy, 60 / 5)  # 12 = 0.4 * 65 + 0.4 * (-35)
    assert stats_.average_win == 65 and stats_.average_loss == -35
    assert close(stats_.payoff_ratio, 65 / 35)
    assert (stats_.best, stats_.worst) == (100, -50)
    assert close(
        stats_.expectancy,
        stats_.win_rate * stats_.average_win + stats_.loss_rate * stats_.average_loss,
    )
    no_losses = m.trade_statistics([1, 2])
    assert math.isnan(no_losses.profit_factor) and math.isnan(no_losses.payoff_ratio)
    none = m.trade_statistics([])
    assert none.count == 0 and math.isnan(none.win_rate) and math.isnan(none.expectancy)


def test_exposure_and_concentration_hand_checked() -> None:
    positions = [[100, -50], [0, 0], [200, 0]]
    gross, net = m.exposure(positions, [1000, 1000, 800])
    # gross = (100 + 50) / 1000, 0, 200 / 800; net = (100 - 50) / 1000, 0, 200 / 800
    np.testing.assert_allclose(gross, [0.15, 0.0, 0.25], rtol=REL)
    np.testing.assert_allclose(net, [0.05, 0.0, 0.25], rtol=REL)
    assert close(m.time_in_market(positions), 2 / 3)
    assert close(m.time_in_market([0, 5, 5, 0]), 0.5)
    # weights 0.5, 0.3, 0.2: 0.25 + 0.09 + 0.04 = 0.38, effective 1 / 0.38 = 2.63...
    assert close(m.herfindahl([50, 30, 20]), 0.38)
    assert close(m.effective_holdings([Decimal(50), Decimal(30), Decimal(20)]), 1 / 0.38)
    assert close(m.herfindahl([25] * 4), 0.25) and close(m.effective_holdings([7] * 4), 4)
    assert close(m.herfindahl([50, -50]), 0.5)  # a short holding concentrates as much
    assert math.isnan(m.herfindahl([])) and math.isnan(m.effective_holdings([0, 0]))
    gross0, _ = m.exposure([[10]], [0])
    assert np.isnan(gross0).all()


# ------------------------------------------------------------------ edge cases


SINGLE_FIGURES = [
    m.cumulative_return, m.annualized_return, m.volatility, m.downside_deviation,
    m.sharpe_ratio, m.sortino_ratio, m.calmar_ratio, m.omega_ratio, m.tail_ratio,
    m.max_drawdown, m.value_at_risk, m.conditional_value_at_risk,
    lambda r: m.value_at_risk(r, 0.99, "parametric"),
    lambda r: m.conditional_value_at_risk(r, 0.99, "parametric"),
]  # fmt: skip


@pytest.mark.parametrize("equity", [[], [1000.0]])
def test_empty_and_one_point_give_nan_not_errors(equity: list[float]) -> None:
    r = m.simple_returns(equity)
    assert r.size == 0
    for fn in SINGLE_FIGURES:
        assert math.isnan(fn(r)), fn
    assert math.isnan(m.time_weighted_return(equity))
    assert math.isnan(m.money_weighted_return(equity))
    assert m.drawdown_periods(r) == [] and m.max_drawdown_period(r) is None
    assert math.isnan(m.beta(r, r)) and math.isnan(m.alpha(r, r))
    report = m.performance_report(equity, benchmark=r, trade_pnls=[])
    assert report.periods == 0 and math.isnan(report.sharpe) and math.isnan(report.max_drawdown)
    json.dumps(report.as_dict(), allow_nan=False)


def test_two_points_have_a_return_but_no_volatility() -> None:
    r = m.simple_returns([100, 110])
    assert close(m.time_weighted_return([100, 110]), 0.1)
    assert math.isnan(m.volatility(r)) and math.isnan(m.sharpe_ratio(r))
    assert close(m.value_at_risk(r), -0.1)  # the only return is a gain: a negative loss


def test_constant_equity_has_zero_volatility_and_no_sharpe() -> None:
    r = m.simple_returns([100.0] * 50)
    assert m.volatility(r) == 0.0 and m.downside_deviation(r) == 0.0
    for fn in (m.sharpe_ratio, m.sortino_ratio, m.calmar_ratio, m.omega_ratio, m.tail_ratio):
        assert math.isnan(fn(r)), fn
    assert m.max_drawdown(r) == 0.0 and m.drawdown_periods(r) == []
    assert m.value_at_risk(r) == 0.0 and m.value_at_risk(r, 0.99, "parametric") == 0.0
    assert m.beta(r, R[:49]) == 0.0  # it does not move with the benchmark
    assert math.isnan(m.beta(R[:49], r)) and math.isnan(m.correlation(R[:49], r))
    # a constant non-zero return: zero volatility too (not 1e-18 from round-off)
    steady = np.full(20, 0.001)
    assert m.volatility(steady) == 0.0 and math.isnan(m.sharpe_ratio(steady))


def test_all_positive_returns_have_no_drawdown() -> None:
    r = np.abs(R) + 1e-4
    assert m.max_drawdown(r) == 0.0 and m.max_drawdown_period(r) is None
    assert (m.drawdown_series(r) == 0).all()
    assert math.isnan(m.calmar_ratio(r)) and math.isnan(m.omega_ratio(r))
    assert math.isnan(m.sortino_ratio(r)) and m.downside_deviation(r) == 0.0
    assert m.value_at_risk(r) < 0  # even the tail is a gain
    assert close(m.sharpe_ratio(r), ep.sharpe_ratio(r, annualization=PPY))


def test_missing_returns_are_dropped() -> None:
    holed = R.copy()
    holed[[3, 50]] = np.nan
    kept = np.delete(R, [3, 50])
    assert close(m.sharpe_ratio(holed), m.sharpe_ratio(kept))
    assert close(m.value_at_risk(holed, 0.99), m.value_at_risk(kept, 0.99))
    assert close(m.cumulative_return(holed), m.cumulative_return(kept))
    assert close(m.max_drawdown(holed), m.max_drawdown(kept))
    equity = list(EQUITY)
    equity[10] = None  # a missing equity point removes the two returns around it
    r = m.simple_returns(equity, FLOWS)
    assert np.isnan(r[9]) and np.isnan(r[10]) and np.isfinite(np.delete(r, [9, 10])).all()


# ------------------------------------------------------------------ the report


def test_performance_report_matches_the_single_functions() -> None:
    positions = np.column_stack([EQUITY * 0.9, EQUITY * 0.1])
    pnls = np.diff(EQUITY)[::7]
    rep = m.performance_report(
        EQUITY, FLOWS, DATES, benchmark=BENCH, trade_pnls=pnls, position_values=positions,
        risk_free=RF, mar=MAR, omega_threshold=0.1, var_method="parametric", rolling_window=20,
    )  # fmt: skip
    assert (rep.annualization, rep.risk_free, rep.var_method) == (365, RF, "parametric")
    assert close(rep.risk_free_per_period, RF_P) and rep.var_levels == (0.95, 0.99)
    assert rep.periods == R.size and rep.start == datetime(2017, 11, 9)
    assert close(rep.time_weighted_return, BTC[-1] / BTC[0] - 1)
    assert close(rep.annualized_return, ep.annual_return(R, annualization=PPY))
    assert close(rep.money_weighted_return, m.money_weighted_return(EQUITY, FLOWS, DATES))
    assert close(rep.sharpe, ep.sharpe_ratio(R, RF_P, annualization=PPY))
    assert close(rep.sortino, ep.sortino_ratio(R, MAR_P, annualization=PPY))
    assert close(rep.volatility, m.volatility(R)) and close(rep.calmar, m.calmar_ratio(R))
    assert close(rep.omega, m.omega_ratio(R, 0.1)) and close(rep.tail_ratio, m.tail_ratio(R))
    assert close(rep.downside_deviation, m.downside_deviation(R, MAR))
    assert close(rep.var[0.99], m.value_at_risk(R, 0.99, "parametric"))
    assert close(rep.cvar[0.95], m.conditional_value_at_risk(R, 0.95, "parametric"))
    assert close(rep.max_drawdown, ep.max_drawdown(R))
    assert rep.max_drawdown_period == m.max_drawdown_period(R, DATES)
    assert rep.top_drawdowns == m.drawdown_periods(R, DATES, top_n=5)
    assert rep.longest_drawdown >= rep.max_drawdown_period.length
    assert close(rep.current_drawdown, m.drawdown_series(R)[-1])
    assert close(rep.beta, ep.beta(R, BENCH))
    assert close(rep.alpha, ep.alpha(R, BENCH, RF_P, annualization=PPY))
    assert close(rep.correlation, m.correlation(R, BENCH))
    np.testing.assert_array_equal(rep.rolling_sharpe, m.rolling_sharpe(R, 20, RF))
    np.testing.assert_array_equal(rep.rolling_volatility, m.rolling_volatility(R, 20))
    assert rep.trades == m.trade_statistics(pnls)
    assert rep.exposure is not None
    assert close(rep.exposure.gross, 1.0) and close(rep.exposure.herfindahl, 0.82)
    assert rep.exposure.time_in_market == 1.0 and close(rep.exposure.largest_weight, 0.9)
    assert (rep.best_period, rep.worst_period) == (R.max(), R.min())
    # JSON-ready, conventions included, dates as RFC 3339
    doc = json.loads(json.dumps(rep.as_dict(), allow_nan=False))
    assert doc["annualization"] == 365 and doc["var_method"] == "parametric"
    top = DATES[int(np.argmax(BTC))]
    assert doc["max_drawdown_period"]["start"] == top.isoformat().replace("+00:00", "Z")
    assert doc["max_drawdown_period"]["end"] is None
    assert doc["rolling_sharpe"][0] is None and len(doc["drawdown"]) == EQUITY.size
    assert rep.conventions()["flow_timing"] == "end_of_period"


def test_report_aligns_the_benchmark_by_date_and_takes_decimals() -> None:
    idx_keep = np.r_[0:100, 130 : R.size]
    rep = m.performance_report(
        [Decimal(str(round(x, 8))) for x in EQUITY], [Decimal(str(x)) for x in FLOWS], DATES,
        benchmark=BENCH[idx_keep], benchmark_dates=[DATES[1:][i] for i in idx_keep],
    )  # fmt: skip
    assert close(rep.beta, ep.beta(R[idx_keep], BENCH[idx_keep]), rel=1e-6)
    assert close(rep.time_weighted_return, BTC[-1] / BTC[0] - 1, rel=1e-6)
