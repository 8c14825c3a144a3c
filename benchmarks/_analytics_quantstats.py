"""The quantstats side of ``benchmarks/analytics.py``, run with quantstats' own virtualenv.

It imports numpy, pandas and quantstats only (never tradepilot), reads the series the main
script wrote, computes the same analytics as TradePilot's side in ``--rounds`` rounds (each repeating it
for at least ``--min-round-seconds``, after one untimed warm-up), and prints one JSON object: each round's seconds and the last round's
figures, for the agreement check.

    benchmarks/.venv/quantstats/bin/python benchmarks/_analytics_quantstats.py DATA.npz --rounds 7
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import quantstats as qs

PERIODS = 365  # quantstats defaults to 252 trading days; crypto trades every day
ROLLING = 30
LEVELS = (0.95, 0.99)


def compute(days: np.ndarray, equity: np.ndarray, flows: np.ndarray, pnls: np.ndarray) -> dict[str, Any]:
    """Every figure TradePilot's report has that quantstats computes, from the same arrays.

    The flow-adjusted returns are built with pandas (quantstats takes returns, not equity and
    flows): ``r_t = (E_t - F_t) / E_(t-1) - 1``, dated by the day that ends each period.
    """
    index = pd.DatetimeIndex(days.astype("datetime64[ns]"))
    eq = pd.Series(equity, index=index)
    r = ((eq - pd.Series(flows, index=index)) / eq.shift(1) - 1.0).iloc[1:]
    stats = qs.stats
    figures: dict[str, float] = {
        "time_weighted_return": stats.comp(r),
        "annualized_return": stats.cagr(r, periods=PERIODS),
        "volatility": stats.volatility(r, periods=PERIODS),
        "sharpe": stats.sharpe(r, rf=0.0, periods=PERIODS),
        "sortino": stats.sortino(r, rf=0.0, periods=PERIODS),
        "calmar": stats.calmar(r, periods=PERIODS),
        "omega": stats.omega(r, rf=0.0, required_return=0.0, periods=PERIODS),
        "tail_ratio": stats.tail_ratio(r),
        "max_drawdown": stats.max_drawdown(r),
        "best_period": stats.best(r),
        "worst_period": stats.worst(r),
    }
    for level in LEVELS:  # quantstats: normal VaR/CVaR as returns (a loss is negative)
        figures[f"var_{level:g}"] = -stats.value_at_risk(r, confidence=level)
        figures[f"cvar_{level:g}"] = -stats.conditional_value_at_risk(r, confidence=level)
    drawdown = stats.to_drawdown_series(r)
    figures["current_drawdown"] = drawdown.iloc[-1]
    details = stats.drawdown_details(drawdown)
    top = details.sort_values("max drawdown").head(5)["max drawdown"].to_numpy() / 100.0
    monthly = stats.monthly_returns(r, eoy=False, compounded=True)
    rolling_sharpe = stats.rolling_sharpe(r, rolling_period=ROLLING, periods_per_year=PERIODS)
    rolling_vol = stats.rolling_volatility(r, rolling_period=ROLLING, periods_per_year=PERIODS)

    trades = pd.Series(pnls, index=pd.date_range("2019-01-01", periods=pnls.size, freq="min"))
    for name, fn in (("win_rate", stats.win_rate), ("profit_factor", stats.profit_factor),
                     ("average_win", stats.avg_win), ("average_loss", stats.avg_loss),
                     ("payoff_ratio", stats.payoff_ratio)):  # fmt: skip
        figures[f"trades.{name}"] = fn(trades)
    figures["trades.best"] = stats.best(trades)
    figures["trades.worst"] = stats.worst(trades)
    return {
        "figures": {k: float(v) for k, v in figures.items()},
        "top_drawdowns": top.tolist(),
        "monthly": {
            f"{year}-{month:02d}": float(monthly.iloc[i, month - 1])
            for i, year in enumerate(monthly.index)
            for month in range(1, 13)
        },
        "rolling_sharpe": rolling_sharpe.to_numpy(dtype=float).tolist(),
        "rolling_volatility": rolling_vol.to_numpy(dtype=float).tolist(),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _clear_caches() -> None:
    """quantstats memoises prepared returns by content; a report is computed once per request,
    so every timed round starts cold, as the first request would."""
    cache = getattr(qs.utils, "_PREPARE_RETURNS_CACHE", None)
    if isinstance(cache, dict):
        cache.clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-round-seconds", type=float, default=0.25)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with np.load(args.data) as data:
        arrays = (data["days"], data["equity"], data["flows"], data["pnls"])
    start = time.perf_counter()
    result = compute(*arrays)  # warm-up: lazy imports, first-call costs
    per_call = time.perf_counter() - start
    repeats = max(1, math.ceil(args.min_round_seconds / max(per_call, 1e-9)))
    seconds = []
    for _ in range(args.rounds):
        elapsed = 0.0
        for _ in range(repeats):  # the caches are cleared outside the clock
            _clear_caches()
            start = time.perf_counter()
            result = compute(*arrays)
            elapsed += time.perf_counter() - start
        seconds.append(elapsed / repeats)
    print(json.dumps(_json_safe({"version": qs.__version__, "seconds": seconds, **result})))


if __name__ == "__main__":
    main()
