"""Runs one peer backtester on the bars in an .npz and prints its timing as JSON.

Executed by ``benchmarks/backtest_speed.py`` with the peers' own virtualenv
(``benchmarks/.venv/peers``), never with the project's: ``python _backtest_peers.py PEER FILE``.
Same conventions as TradePilot's side: SMA crossover (fast 10, slow 30), 0.1 % fee per side,
all-in long-only, signals on the close, fills at the next bar's open.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import pandas as pd

FEE = 0.001
CASH = 1e12  # whole-unit sizing (backtesting.py, backtrader) needs cash far above the price


def frame(data: np.lib.npyio.NpzFile) -> pd.DataFrame:
    index = pd.to_datetime(data["time"], unit="ms")
    return pd.DataFrame({"Open": data["open"], "High": data["high"], "Low": data["low"], "Close": data["close"],
                         "Volume": data["volume"]}, index=index)


def run_vectorbt(df: pd.DataFrame, fast: int, slow: int) -> dict:
    import vectorbt as vbt

    def once() -> int:
        f, s = vbt.MA.run(df.Close, fast), vbt.MA.run(df.Close, slow)
        entries, exits = f.ma_crossed_above(s), f.ma_crossed_below(s)
        pf = vbt.Portfolio.from_signals(df.Close, entries.vbt.fshift(1, fill_value=False),
                                        exits.vbt.fshift(1, fill_value=False), price=df.Open, fees=FEE,
                                        init_cash=10_000.0)
        return int(pf.trades.count())

    once()  # numba compiles on the first call: not timed
    t = time.perf_counter()
    trades = once()
    return {"seconds": time.perf_counter() - t, "trades": trades}


def run_vectorbt_sweep(df: pd.DataFrame) -> dict:
    import vectorbt as vbt

    fasts = [f for f in range(5, 50, 5) for _ in range(20, 200, 20)]
    slows = [s for _ in range(5, 50, 5) for s in range(20, 200, 20)]

    def once() -> int:
        f = vbt.MA.run(df.Close, fasts, short_name="fast")
        s = vbt.MA.run(df.Close, slows, short_name="slow")
        fv, sv = f.ma.to_numpy(), s.ma.to_numpy()
        with np.errstate(invalid="ignore"):
            up = np.zeros(fv.shape, bool)
            down = np.zeros(fv.shape, bool)
            up[1:] = (fv[:-1] < sv[:-1]) & (fv[1:] > sv[1:])
            down[1:] = (fv[:-1] > sv[:-1]) & (fv[1:] < sv[1:])
        entries = np.zeros(fv.shape, bool)
        exits = np.zeros(fv.shape, bool)
        entries[1:], exits[1:] = up[:-1], down[:-1]
        pf = vbt.Portfolio.from_signals(df.Close, entries, exits, price=df.Open, fees=FEE, init_cash=10_000.0)
        return int(pf.trades.count().sum())

    once()
    t = time.perf_counter()
    trades = once()
    return {"seconds": time.perf_counter() - t, "trades": trades, "combinations": len(fasts)}


def run_backtesting_py(df: pd.DataFrame, fast: int, slow: int) -> dict:
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    class SmaCross(Strategy):
        def init(self) -> None:
            self.f, self.s = self.I(SMA, self.data.Close, fast), self.I(SMA, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.f, self.s):
                if not self.position:
                    self.buy()
            elif crossover(self.s, self.f) and self.position:
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(df, SmaCross, cash=CASH, commission=FEE, trade_on_close=False, finalize_trades=False)
        t = time.perf_counter()
        stats = bt.run()
    return {"seconds": time.perf_counter() - t, "trades": int(stats["# Trades"])}


def run_backtrader(df: pd.DataFrame, fast: int, slow: int) -> dict:
    import backtrader as bt

    class SmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.indicators.CrossOver(bt.indicators.SMA(self.data.close, period=fast),
                                                 bt.indicators.SMA(self.data.close, period=slow))

        def next(self) -> None:
            if self.cross[0] > 0 and not self.position:
                self.buy()
            elif self.cross[0] < 0 and self.position:
                self.close()

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=df.rename(columns=str.lower)))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.addsizer(bt.sizers.AllInSizer, percents=99)  # sized on the close; 1 % room for the next open
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    t = time.perf_counter()
    strategy = cerebro.run()[0]
    seconds = time.perf_counter() - t
    closed = strategy.analyzers.trades.get_analysis().get("total", {}).get("closed", 0)
    return {"seconds": seconds, "trades": int(closed)}


def main() -> None:
    peer, path = sys.argv[1], sys.argv[2]
    df = frame(np.load(path))
    runs = {"vectorbt": lambda: run_vectorbt(df, 10, 30), "vectorbt_sweep": lambda: run_vectorbt_sweep(df),
            "backtesting.py": lambda: run_backtesting_py(df, 10, 30), "backtrader": lambda: run_backtrader(df, 10, 30)}
    print(json.dumps(runs[peer]()))


if __name__ == "__main__":
    main()
