"""Built-in strategies: TA-Lib wiring, crossovers, typed parameters, the catalog, event strategies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from tradepilot.strategies import indicators as ta
from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import StrategyParamsError
from tradepilot.strategies.catalog import UnknownStrategy, build_strategy, catalog

DATA = Path(__file__).resolve().parents[1] / "data" / "market" / "coinbase_btc_usd_1h" / "BTC_USD-1h-first720.csv"


@pytest.fixture(scope="module")
def btc() -> Bars:
    df = pd.read_csv(DATA, parse_dates=["timestamp"])
    return Bars.from_arrays("BTC/USD", df.timestamp.dt.as_unit("ms").astype("int64").to_numpy(), df.open, df.high,
                            df.low, df.close, df.volume)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(len(a), bool)
    for t in range(1, len(a)):
        out[t] = a[t - 1] < b[t - 1] and a[t] > b[t]
    return out


def test_crossovers_are_strict_and_never_on_nan() -> None:
    a = np.array([np.nan, 1.0, 2.0, 2.0, 3.0, 1.0])
    b = np.array([1.5, 1.5, 1.5, 2.0, 2.5, 1.5])
    assert ta.crossed_above(a, b).tolist() == [False, False, True, False, False, False]
    assert ta.crossed_below(a, b).tolist() == [False, False, False, False, False, True]
    assert ta.crossed_above(a, 1.5).tolist() == [False, False, True, False, False, False]


@pytest.mark.parametrize(("name", "params", "entries", "exits"), [
    ("sma_cross", {"fast": 7, "slow": 25},
     lambda c: _cross(talib.SMA(c, 7), talib.SMA(c, 25)), lambda c: _cross(talib.SMA(c, 25), talib.SMA(c, 7))),
    ("ema_cross", {"fast": 5, "slow": 20},
     lambda c: _cross(talib.EMA(c, 5), talib.EMA(c, 20)), lambda c: _cross(talib.EMA(c, 20), talib.EMA(c, 5))),
    ("macd", {}, lambda c: _cross(*talib.MACD(c)[:2]), lambda c: _cross(*talib.MACD(c)[1::-1])),
    ("rsi_reversion", {"period": 10, "oversold": 35, "overbought": 65},
     lambda c: _cross(talib.RSI(c, 10), np.full(len(c), 35.0)), lambda c: _cross(np.full(len(c), 65.0), talib.RSI(c, 10))),
    ("bollinger_breakout", {"period": 15, "deviations": 1.5},
     lambda c: _cross(c, talib.BBANDS(c, 15, 1.5, 1.5)[0]), lambda c: _cross(talib.BBANDS(c, 15, 1.5, 1.5)[1], c)),
])
def test_builtin_signals_are_the_talib_indicators_rules(btc: Bars, name: str, params: dict, entries, exits) -> None:  # type: ignore[no-untyped-def]
    signals = build_strategy(name, params).signals(btc)  # type: ignore[attr-defined]
    assert signals.entries.any() and signals.exits.any()
    np.testing.assert_array_equal(signals.entries, entries(btc.close))
    np.testing.assert_array_equal(signals.exits, exits(btc.close))


@pytest.mark.parametrize(("name", "params", "loc"), [
    ("sma_cross", {"fast": 30, "slow": 10}, []),
    ("sma_cross", {"fast": 0}, ["fast"]),
    ("sma_cross", {"slow": "x"}, ["slow"]),
    ("sma_cross", {"fast": 5, "slow": 10, "stop_loss": 1.5}, ["stop_loss"]),
    ("sma_cross", {"fats": 5}, ["fats"]),
    ("rsi_reversion", {"oversold": 80, "overbought": 20}, []),
    ("grid", {"lower": 100}, ["upper"]),
    ("dca", {"interval_bars": 0}, ["interval_bars"]),
])
def test_parameters_are_validated_with_the_path_to_the_bad_field(name: str, params: dict, loc: list) -> None:  # type: ignore[type-arg]
    with pytest.raises(StrategyParamsError) as caught:
        build_strategy(name, params)
    assert caught.value.errors[0]["loc"] == loc


def test_catalog_lists_builtins_with_json_schemas() -> None:
    entries = {e["name"]: e for e in catalog()}
    assert {"sma_cross", "ema_cross", "rsi_reversion", "bollinger_breakout", "macd", "grid", "dca",
            "rules"} <= set(entries)
    sma = entries["sma_cross"]["params_schema"]
    assert sma["properties"]["fast"]["default"] == 10 and sma["additionalProperties"] is False
    assert entries["grid"]["kind"] == "events" and entries["sma_cross"]["kind"] == "signals"
    assert "Condition" in entries["rules"]["params_schema"]["$defs"]
    with pytest.raises(UnknownStrategy, match="one of"):
        build_strategy("nope")


def test_dca_buys_a_fixed_amount_every_interval(btc: Bars) -> None:
    r = run_backtest(build_strategy("dca", {"interval_bars": 24, "amount": 100}), btc,
                     BacktestConfig(initial_cash=10_000))
    buys = r.fills.rows()
    assert len(buys) == 30  # 720 hourly bars, one buy a day (the last day's order fills too: bar 696 → 697)
    assert all(b.side == "buy" and b.price * b.quantity + b.fee == pytest.approx(100.0) for b in buys)
    assert [b.index for b in buys[:3]] == [1, 25, 49]  # decided on the close, filled at the next open


def test_grid_sells_one_level_above_each_filled_buy(btc: Bars) -> None:
    r = run_backtest(build_strategy("grid", {"lower": 2200, "upper": 2800, "levels": 7}), btc,
                     BacktestConfig(initial_cash=10_000, maker_fee=0.0))
    fills = r.fills.rows()
    sells = [f for f in fills if f.side == "sell"]
    assert sells, "the month ranges over the grid: some buys are sold one level higher"
    assert all(f.maker for f in fills if f.index > 1)
    assert {round(f.price) for f in sells} <= {2300, 2400, 2500, 2600, 2700, 2800}
    buys = [(round(f.price), round(f.quantity, 9)) for f in fills if f.side == "buy"]
    assert all((round(s.price) - 100, round(s.quantity, 9)) in buys for s in sells)  # the buy one level below
