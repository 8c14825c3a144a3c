"""Portfolio analytics: all of an account's figures, TradePilot next to quantstats.

One account, seeded: 5 years of daily equity (1,826 points; daily returns with crypto-like
volatility, three deposits and three withdrawals along the way) and 100,000 closed trades'
realised P&L. Both sides get the same arrays (written to a temporary ``.npz``) and compute
the same analytics from them:

* TradePilot, in this process: ``portfolio.metrics.performance_report`` (returns, CAGR,
  volatility, Sharpe, Sortino, Calmar, Omega, tail ratio, VaR/CVaR at 95/99 %, drawdowns with
  the top five periods, rolling 30-day Sharpe and volatility, MWR, trade statistics), plus
  ``monthly_returns`` and every ``drawdown_periods``;
* quantstats, in a subprocess with its own virtualenv (it is never a project dependency):
  ``benchmarks/_analytics_quantstats.py`` builds the flow-adjusted returns with pandas and
  calls the matching ``qs.stats`` functions.

Each side runs one untimed warm-up, then ``--rounds`` timed rounds, each repeating the whole
computation for at least ``--min-round-seconds`` (a single 5 ms call is at the mercy of any
other process); the median time per computation is reported,
and the ratio against the target (TradePilot at least 10x faster). The two sides' figures
are then compared: the largest relative difference per metric is printed, with the
conventions that differ (see the README's section).

    python benchmarks/analytics.py            # 1,826 days, 100,000 fills, 7 rounds
    python benchmarks/analytics.py --smoke    # 365 days, 5,000 fills, 2 rounds (CI)

quantstats' virtualenv (``benchmarks/.venv/quantstats``, git-ignored) is created on the
first full run, or by hand:

    python3.11 -m venv benchmarks/.venv/quantstats
    benchmarks/.venv/quantstats/bin/pip install 'quantstats>=0.0.86'

With ``--smoke`` a missing virtualenv is not created: the peer is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tradepilot.portfolio import metrics

TARGET = 10.0
PERIODS = 365
ROLLING = 30
LEVELS = (0.95, 0.99)
HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "_analytics_quantstats.py"
DEFAULT_VENV = HERE / ".venv" / "quantstats"
QUANTSTATS = "quantstats>=0.0.86"  # its CAGR counts periods (as ours), not calendar days
DEFINED_DIFFERENTLY = {
    "trades.win_rate": "TradePilot: wins / all trades; quantstats: wins / non-zero trades",
}
"""Figures the two libraries define differently on purpose: shown, not counted as errors."""
FLOW_DAYS = {0.11: 5_000.0, 0.25: -4_000.0, 0.38: 10_000.0, 0.6: -6_000.0, 0.72: 3_000.0,
             0.88: -2_000.0}  # fmt: skip  # fraction of the span -> deposit (+) / withdrawal (-)


# --- the account ------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    days: np.ndarray  # datetime64[D], one per equity point
    equity: np.ndarray
    flows: np.ndarray
    pnls: np.ndarray


def make_account(days: int, fills: int, seed: int) -> Account:
    """Daily equity from fat-tailed returns (~3.5 % a day, as BTC), flows at fixed points of
    the span, and closed trades' P&L in USD (Student-t, slightly positive expectancy)."""
    rng = np.random.default_rng(seed)
    returns = 0.0012 + 0.035 * rng.standard_t(4, size=days - 1) / math.sqrt(2.0)
    flows = np.zeros(days)
    for fraction, amount in FLOW_DAYS.items():
        flows[max(1, int(fraction * (days - 1)))] += amount
    equity = np.empty(days)
    equity[0] = 10_000.0
    for t in range(1, days):  # E_t = E_(t-1) (1 + r_t) + F_t: the flow arrives at the close
        equity[t] = max(equity[t - 1] * (1.0 + returns[t - 1]) + flows[t], 1.0)
    pnls = np.round(25.0 * rng.standard_t(3, size=fills) + 0.5, 2)
    dates = np.datetime64("2019-01-01") + np.arange(days).astype("timedelta64[D]")
    return Account(dates, equity, flows, pnls)


# --- TradePilot's side ------------------------------------------------------------------


def tradepilot_analytics(account: Account) -> dict[str, Any]:
    """Everything the analytics endpoints and the report show, from the raw arrays."""
    report = metrics.performance_report(
        account.equity, account.flows, account.days, trade_pnls=account.pnls,
        periods_per_year=PERIODS, var_method="parametric", var_levels=LEVELS,
        rolling_window=ROLLING, top_drawdowns=5,
    )  # fmt: skip
    monthly = metrics.monthly_returns(account.days, account.equity, account.flows)
    returns = metrics.simple_returns(account.equity, account.flows)
    every_drawdown = metrics.drawdown_periods(returns, account.days)
    return {"report": report, "monthly": monthly, "drawdowns": every_drawdown}


def figures(result: dict[str, Any]) -> dict[str, float]:
    """TradePilot's figures under quantstats' names, for the agreement check."""
    report: metrics.PerformanceReport = result["report"]
    trades = report.trades
    assert trades is not None
    out = {name: float(getattr(report, name)) for name in (
        "time_weighted_return", "annualized_return", "volatility", "sharpe", "sortino",
        "calmar", "omega", "tail_ratio", "max_drawdown", "best_period", "worst_period",
        "current_drawdown")}  # fmt: skip
    for level in LEVELS:
        out[f"var_{level:g}"] = report.var[level]
        out[f"cvar_{level:g}"] = report.cvar[level]
    for name in ("win_rate", "profit_factor", "average_win", "average_loss", "payoff_ratio",
                 "best", "worst"):  # fmt: skip
        out[f"trades.{name}"] = float(getattr(trades, name))
    return out


def repeats_for(seconds_per_call: float, min_round_seconds: float) -> int:
    """Calls per timed round so that a round lasts at least ``min_round_seconds``: a round of
    one 5 ms call is at the mercy of any other process on the machine."""
    return max(1, math.ceil(min_round_seconds / max(seconds_per_call, 1e-9)))


def time_rounds(fn: Callable[[], Any], rounds: int, min_round_seconds: float) -> tuple[list[float], Any]:
    """Seconds per call in each of ``rounds`` rounds, after one untimed warm-up (lazy imports,
    first-call costs); the last result."""
    start = time.perf_counter()
    result = fn()
    repeats = repeats_for(time.perf_counter() - start, min_round_seconds)
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            result = fn()
        seconds.append((time.perf_counter() - start) / repeats)
    return seconds, result


# --- quantstats' side -------------------------------------------------------------------


def ensure_venv(venv: Path, smoke: bool) -> Path | None:
    """quantstats' interpreter; created on a full run when missing, never on a smoke run."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    if smoke:
        print(f"  quantstats: skipped (no virtualenv at {venv}; a smoke run does not create "
              f"it — see this script's docstring)")  # fmt: skip
        return None
    interpreter = shutil.which("python3.11") or sys.executable
    print(f"  creating quantstats' virtualenv at {venv} (once; about a minute) ...", flush=True)
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", QUANTSTATS], check=True)
    return python


def run_peer(python: Path, account: Account, rounds: int, min_round_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "account.npz"
        np.savez(data, days=account.days, equity=account.equity, flows=account.flows,
                 pnls=account.pnls)  # fmt: skip
        command = [str(python), str(PEER_SCRIPT), str(data), "--rounds", str(rounds),
                   "--min-round-seconds", str(min_round_seconds)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"quantstats side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- agreement --------------------------------------------------------------------------


def relative(a: float, b: float | None) -> float:
    if b is None or not math.isfinite(a) or not math.isfinite(b):
        return 0.0 if (b is None or not math.isfinite(b)) and not math.isfinite(a) else math.inf
    return abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0


def series_difference(ours: np.ndarray, theirs: list[float | None]) -> float:
    """Largest relative difference over the points both define (ours is aligned with the
    returns, as quantstats' rolling series)."""
    peer = np.array([math.nan if v is None else v for v in theirs])
    both = np.isfinite(ours) & np.isfinite(peer)
    if ours.size != peer.size or not both.any():
        return math.inf
    return float(np.max(np.abs(ours[both] - peer[both]) / np.maximum(np.abs(peer[both]), 1e-12)))


def agreement(result: dict[str, Any], peer: dict[str, Any]) -> list[tuple[str, float, float | None, float]]:
    ours = figures(result)
    rows = [(name, value, peer["figures"].get(name), relative(value, peer["figures"].get(name)))
            for name, value in ours.items()]  # fmt: skip
    report: metrics.PerformanceReport = result["report"]
    depths = [p.depth for p in report.top_drawdowns]
    rows.append(("top-5 drawdown depths", depths[-1], peer["top_drawdowns"][-1],
                 max(relative(a, b) for a, b in zip(depths, peer["top_drawdowns"], strict=True))))
    table: metrics.MonthlyReturns = result["monthly"]
    worst_month = max(
        relative(float(table.values[i, m]), peer["monthly"].get(f"{year}-{m + 1:02d}"))
        for i, year in enumerate(table.years) for m in range(12)
        if math.isfinite(table.values[i, m])  # quantstats shows months outside the data as 0
    )  # fmt: skip
    rows.append(("monthly returns (every month)", math.nan, None, worst_month))
    rows.append(("rolling Sharpe (30 d)", math.nan, None,
                 series_difference(report.rolling_sharpe, peer["rolling_sharpe"])))
    rows.append(("rolling volatility (30 d)", math.nan, None,
                 series_difference(report.rolling_volatility, peer["rolling_volatility"])))
    return rows


# --- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick (CI)")
    parser.add_argument("--days", type=int, default=None, help="equity points (1,826)")
    parser.add_argument("--fills", type=int, default=None, help="closed trades (100,000)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per side (7)")
    parser.add_argument("--min-round-seconds", type=float, default=None,
                        help="each round repeats the work for at least this long (0.25 s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quantstats-venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    days = args.days or (365 if args.smoke else 1_826)
    fills = args.fills or (5_000 if args.smoke else 100_000)
    rounds = args.rounds or (2 if args.smoke else 7)
    min_round = args.min_round_seconds or (0.01 if args.smoke else 0.25)

    account = make_account(days, fills, args.seed)
    deposits, withdrawals = int((account.flows > 0).sum()), int((account.flows < 0).sum())
    print(f"analytics: {days:,} days of equity ({deposits} deposits, {withdrawals} withdrawals), "
          f"{fills:,} closed trades; per side the median of {rounds} rounds, each repeating the "
          f"work for ≥ {min_round:g} s")  # fmt: skip
    ours_seconds, result = time_rounds(lambda: tradepilot_analytics(account), rounds, min_round)
    ours = statistics.median(ours_seconds)
    print(f"  TradePilot (portfolio.metrics): {ours * 1000:9.2f} ms "
          f"(best {min(ours_seconds) * 1000:.2f} ms)")  # fmt: skip

    python = ensure_venv(args.quantstats_venv, args.smoke)
    if python is None:
        print(f"  target ≥ {TARGET:g}x faster than quantstats: not measured (peer skipped)")
        print("  (smoke run: figures too short to quote)")
        return 0
    peer = run_peer(python, account, rounds, min_round)
    theirs = statistics.median(peer["seconds"])
    print(f"  quantstats {peer['version']:<19} {theirs * 1000:9.2f} ms "
          f"(best {min(peer['seconds']) * 1000:.2f} ms)")  # fmt: skip
    ratio = theirs / ours
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"  target ≥ {TARGET:g}x faster than quantstats: {verdict} ({ratio:.1f}x)")

    print("  agreement (same series; relative difference, |a − b| / |quantstats|):")
    rows = agreement(result, peer)
    for name, value, other, diff in rows:
        shown = "" if math.isnan(value) else f"{value:>14.6g} {math.nan if other is None else other:>14.6g}"
        note = f"  ({DEFINED_DIFFERENTLY[name]})" if name in DEFINED_DIFFERENTLY else ""
        print(f"    {name:<30} {shown:>29}  {diff:.2e}{note}")
    same = [row for row in rows if row[0] not in DEFINED_DIFFERENTLY]
    worst = max(same, key=lambda row: row[3])
    print(f"  largest relative difference, same definitions: {worst[3]:.2e} ({worst[0]})")
    breakeven = int((account.pnls == 0).sum())
    print(f"  ({breakeven:,} of the {fills:,} trades closed at exactly 0: the win rates differ by "
          "that definition only)")  # fmt: skip
    print("  conventions: both annualise with 365 periods a year (quantstats' default is 252: "
          "periods=365 passed); rf = 0 and MAR = 0 here (with a rate, quantstats 0.0.86 "
          "de-annualises rf geometrically as TradePilot does, but subtracts it in Sortino too, "
          "where TradePilot uses the MAR); VaR/CVaR parametric normal on both "
          "(TradePilot's report defaults to historical); quantstats shows months without data "
          "as 0 (TradePilot: empty, not compared)")
    if args.smoke:
        print("  (smoke run: figures too short to quote)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
