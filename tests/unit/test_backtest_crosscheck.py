"""The SMA crossover on real Bitstamp data, in TradePilot and in backtesting.py (a test-only
dependency): with the same conventions the trades and the final equity agree.

Conventions made equal on both sides: signals on a bar's close, fills at the next bar's open,
0.1 % commission on each side, all-in long-only (buy with all the cash, sell everything),
quantities in whole satoshis (backtesting.py's ``FractionalBacktest`` with a 1e-8 unit;
TradePilot's ``quantity_step=1e-8``), the crossover strict on both sides, the last position
left open and valued at the last close.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.builtins import SmaCrossover

backtesting = pytest.importorskip("backtesting")
from backtesting import Strategy  # noqa: E402
from backtesting.lib import FractionalBacktest, crossover  # noqa: E402
from backtesting.test import SMA  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "market"
FEE = 0.001
CASH = 100_000.0
SATOSHI = 1e-8


def _frame(name: str) -> pd.DataFrame:
    df = pd.read_csv(DATA / name, parse_dates=["timestamp"]).set_index("timestamp")
    return df.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]


class _SmaCross(Strategy):
    fast = 10
    slow = 30

    def init(self) -> None:
        self.sma_fast = self.I(SMA, self.data.Close, self.fast)
        self.sma_slow = self.I(SMA, self.data.Close, self.slow)

    def next(self) -> None:
        if crossover(self.sma_fast, self.sma_slow):
            if not self.position:
                self.buy()
        elif crossover(self.sma_slow, self.sma_fast) and self.position:
            self.position.close()


@pytest.mark.parametrize(("name", "fast", "slow"), [
    ("bitstamp_multi_1d/BTC_USD-1d-2017-11-09_2018-11-09.csv", 10, 30),
    ("bitstamp_multi_1d/ETH_USD-1d-2017-11-09_2018-11-09.csv", 5, 20),
    ("coinbase_btc_usd_1h/BTC_USD-1h-first720.csv", 10, 30),
])
def test_sma_crossover_matches_backtesting_py(name: str, fast: int, slow: int) -> None:
    df = _frame(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(df, _SmaCross, cash=CASH, commission=FEE, fractional_unit=SATOSHI,
                                trade_on_close=False, exclusive_orders=False, finalize_trades=False)
        stats = bt.run(fast=fast, slow=slow)
    theirs = stats["_trades"].sort_values("EntryTime")

    time_ms = df.index.as_unit("ms").asi8
    bars = Bars.from_arrays("BTC/USD", time_ms, df.Open.to_numpy(), df.High.to_numpy(), df.Low.to_numpy(),
                            df.Close.to_numpy(), df.Volume.to_numpy())
    config = BacktestConfig(initial_cash=CASH, maker_fee=FEE, taker_fee=FEE, quantity_step=SATOSHI)
    ours = run_backtest(SmaCrossover({"fast": fast, "slow": slow}), bars, config)
    closed = ours.closed_trades

    assert len(closed) >= 3, "the slice must produce real trades"
    assert len(closed) == len(theirs)
    for mine, row in zip(closed, theirs.itertuples(), strict=True):
        assert pd.Timestamp(mine.entry_time, unit="ms", tz="UTC") == row.EntryTime
        assert pd.Timestamp(mine.exit_time, unit="ms", tz="UTC") == row.ExitTime
        assert mine.entry_price == pytest.approx(row.EntryPrice, rel=1e-12)
        assert mine.exit_price == pytest.approx(row.ExitPrice, rel=1e-12)
        assert mine.quantity == pytest.approx(row.Size, rel=1e-12)  # reported in BTC, whole satoshis
        assert mine.pnl == pytest.approx(row.PnL, rel=1e-6, abs=1e-6)
    assert ours.final_equity == pytest.approx(stats["Equity Final [$]"], rel=1e-9)
    # the equity curves agree bar by bar, not only at the end
    np.testing.assert_allclose(ours.equity, stats["_equity_curve"]["Equity"].to_numpy(), rtol=1e-9)
