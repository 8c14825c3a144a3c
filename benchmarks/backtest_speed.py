"""Backtest speed: the SMA crossover in TradePilot (both paths) next to vectorbt,
backtesting.py and backtrader, and an 81-combination parameter sweep next to vectorbt's.

The same generated bars for everyone: a seeded random walk of 1-minute bars (1,000,000 by
default) with highs, lows and gaps. The strategy: SMA fast 10 / slow 30, 0.1 % fee per side,
all-in long-only, signals on the close and fills at the next bar's open. TradePilot runs in
this process; each peer runs in a subprocess with the peers' own virtualenv
(``benchmarks/.venv/peers``, git-ignored; see ``benchmarks/requirements-peers.txt``), on the
same bars written to a temporary ``.npz``. Printed: seconds, bars/second, trade counts, ratios.

    python benchmarks/backtest_speed.py            # 1,000,000 bars; the sweep on 100,000
    python benchmarks/backtest_speed.py --smoke    # 20,000 bars, sweep on 5,000 (CI)

The peers' virtualenv is created on the first full run, or by hand:

    python3.11 -m venv benchmarks/.venv/peers
    benchmarks/.venv/peers/bin/pip install -r benchmarks/requirements-peers.txt

With ``--smoke`` a missing virtualenv is never created: the peers are skipped with a note.
Targets (issue 8): vectorised path ≥ vectorbt; event-driven path ≥ 10x backtesting.py; the
sweep faster than vectorbt's broadcast sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.backtest.sweep import sweep
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.builtins import SmaCrossover

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "_backtest_peers.py"
PEER_VENV = HERE / ".venv" / "peers"
PEER_PYTHON = PEER_VENV / "bin" / "python"
GRID = {"fast": list(range(5, 50, 5)), "slow": list(range(20, 200, 20))}
CONFIG = BacktestConfig(initial_cash=10_000.0, maker_fee=0.001, taker_fee=0.001)


def generate(n: int, seed: int = 8) -> Bars:
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.0001, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.0004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.0004, n)))
    time_ms = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    return Bars.from_arrays("BTC/USDT", time_ms, open_, high, low, close, rng.uniform(1, 50, n))


def timed(fn, rounds: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    result, times = None, []
    for _ in range(rounds):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def ensure_peers(smoke: bool) -> bool:
    if PEER_PYTHON.exists():
        return True
    if smoke:
        print(f"note: peers skipped — no virtualenv at {PEER_VENV} (create it as the module docstring says)")
        return False
    print(f"creating {PEER_VENV} (once) …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "-r", str(HERE / "requirements-peers.txt")],
                   check=True)
    return True


def run_peer(peer: str, bars: Bars, folder: Path) -> dict | None:  # type: ignore[type-arg]
    path = folder / f"bars-{len(bars)}.npz"
    if not path.exists():
        np.savez(path, time=bars.time, open=bars.open, high=bars.high, low=bars.low, close=bars.close,
                 volume=bars.volume)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), peer, str(path)], capture_output=True, text=True,
                         env=env, timeout=3600)
    if out.returncode != 0:
        print(f"  {peer}: failed\n{out.stderr[-2000:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def line(name: str, seconds: float, bars: int, trades: int) -> None:
    print(f"  {name:<28} {seconds * 1000:>10.1f} ms {bars / seconds:>14,.0f} bars/s {trades:>8,} trades")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small and quick (CI)")
    parser.add_argument("--bars", type=int, default=None, help="bars for the single runs (1,000,000)")
    parser.add_argument("--sweep-bars", type=int, default=None, help="bars for the sweep (100,000)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds, median reported (5; smoke 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the sweep")
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    n = args.bars or (20_000 if args.smoke else 1_000_000)
    m = args.sweep_bars or (5_000 if args.smoke else 100_000)
    rounds = args.rounds or (1 if args.smoke else 5)
    bars, sweep_bars = generate(n), generate(m, seed=9)
    strategy = SmaCrossover({"fast": 10, "slow": 30})
    print(f"SMA crossover 10/30, fee 0.1 % per side, all-in long-only, fills at the next open; {n:,} 1m bars")

    run_backtest(strategy, bars.take(slice(0, 5_000)), CONFIG, path="fast")  # warm caches, not timed
    fast_s, fast_r = timed(lambda: run_backtest(strategy, bars, CONFIG, path="fast"), rounds)
    event_s, event_r = timed(lambda: run_backtest(strategy, bars, CONFIG, path="events"), max(1, rounds // 2))
    fast_trades = int((fast_r.fills.side < 0).sum())  # type: ignore[attr-defined]
    event_trades = int((event_r.fills.side < 0).sum())  # type: ignore[attr-defined]
    assert abs(fast_r.final_equity - event_r.final_equity) <= 1e-9 * max(1.0, abs(fast_r.final_equity))  # type: ignore[attr-defined]
    line("TradePilot vectorised", fast_s, n, fast_trades)
    line("TradePilot event-driven", event_s, n, event_trades)

    combos = len(GRID["fast"]) * len(GRID["slow"])
    seq_s, points = timed(lambda: sweep(SmaCrossover, sweep_bars, GRID, CONFIG), rounds)
    par_s, _ = timed(lambda: sweep(SmaCrossover, sweep_bars, GRID, CONFIG, workers=args.workers), rounds)
    sweep_trades = sum(p.trades for p in points)  # type: ignore[attr-defined]
    print(f"sweep: {combos} combinations (fast 5..45 × slow 20..180) on {m:,} bars "
          f"({len(points)} valid: fast < slow)")  # type: ignore[arg-type]
    line("TradePilot sweep, 1 process", seq_s, m * combos, sweep_trades)
    line(f"TradePilot sweep, {args.workers} processes", par_s, m * combos, sweep_trades)

    peers: dict[str, dict] = {}  # type: ignore[type-arg]
    if not args.no_peers and ensure_peers(args.smoke):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for peer in ("vectorbt", "backtesting.py", "backtrader"):
                result = run_peer(peer, bars, folder)
                if result:
                    peers[peer] = result
                    line(peer, result["seconds"], n, result["trades"])
            result = run_peer("vectorbt_sweep", sweep_bars, folder)
            if result:
                peers["vectorbt_sweep"] = result
                line("vectorbt broadcast sweep", result["seconds"], m * result["combinations"], result["trades"])
    print("ratios (TradePilot speed ÷ peer speed; targets in brackets):")
    if "vectorbt" in peers:
        print(f"  vectorised ÷ vectorbt          {peers['vectorbt']['seconds'] / fast_s:6.2f}x  [≥ 1]")
    if "backtesting.py" in peers:
        print(f"  event-driven ÷ backtesting.py  {peers['backtesting.py']['seconds'] / event_s:6.2f}x  [≥ 10]")
    if "backtrader" in peers:
        print(f"  event-driven ÷ backtrader      {peers['backtrader']['seconds'] / event_s:6.2f}x")
    if "vectorbt_sweep" in peers:
        best = min(seq_s, par_s)
        print(f"  sweep ÷ vectorbt sweep         {peers['vectorbt_sweep']['seconds'] / best:6.2f}x  [> 1] "
              f"(1 process: {peers['vectorbt_sweep']['seconds'] / seq_s:.2f}x)")
    if not peers:
        print("  (no peers ran)")


if __name__ == "__main__":
    main()
