"""``tradepilot backtest``: a strategy on stored candles, the report written to a folder.

    tradepilot backtest --strategy sma_cross --symbol BTC/USDT --timeframe 1h \\
        --from 2024-01-01 --to 2024-06-01 --param fast=10 --param slow=30 --out reports/sma

Candles come from the candle store (the configured feed's venue unless ``--venue``); fees
default to the paper exchange's. ``--rules FILE`` backtests a rule document (``--strategy
rules``). Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tradepilot.cli import command
from tradepilot.config import load_settings
from tradepilot.market.cli_data import parse_time
from tradepilot.market.types import TIMEFRAMES


def parse_param(text: str) -> tuple[str, Any]:
    """``fast=10`` → ("fast", 10): the value as JSON when it parses (numbers, true, null), else text."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return name.strip(), raw


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", required=True, help="a name from the catalog, e.g. sma_cross (or rules)")
    p.add_argument("--symbol", required=True, action="append", help="unified symbol, e.g. BTC/USDT (repeatable)")
    p.add_argument("--timeframe", required=True, choices=list(TIMEFRAMES))
    p.add_argument("--from", dest="start", type=parse_time, default=None, help="first bar's open time (UTC)")
    p.add_argument("--to", dest="end", type=parse_time, default=None, help="stop before this time (UTC)")
    p.add_argument("--param", type=parse_param, action="append", default=[], help="NAME=VALUE (repeatable)")
    p.add_argument("--rules", type=Path, default=None, help="a rule document (JSON) for --strategy rules")
    p.add_argument("--out", type=Path, required=True, help="folder for the report")
    p.add_argument("--venue", default=None, help="read candles of this venue (default: the configured feed's)")
    p.add_argument("--cash", type=float, default=10_000.0, help="starting cash (quote currency)")
    p.add_argument("--maker-fee", type=float, default=None)
    p.add_argument("--taker-fee", type=float, default=None)
    p.add_argument("--slippage", type=float, default=0.0, help="fraction, e.g. 0.0005")
    p.add_argument("--volume-cap", type=float, default=None, help="max fraction of a bar's volume per symbol")


class _ProgressBar:
    def __init__(self, width: int = 30) -> None:
        self.width = width

    def __call__(self, fraction: float) -> None:
        filled = int(round(fraction * self.width))
        print(f"\r  [{'#' * filled}{' ' * (self.width - filled)}] {fraction:4.0%}", end="", file=sys.stderr,
              flush=True)
        if fraction >= 1:
            print(file=sys.stderr)


@command("backtest", "backtest a strategy on stored candles and write its report", _arguments)
def _backtest(args: argparse.Namespace) -> int:
    from tradepilot.market.service import normalize_symbol
    from tradepilot.market.setup import configured_venue
    from tradepilot.market.store import CandleStore
    from tradepilot.strategies.backtest import BacktestConfig, run_backtest
    from tradepilot.strategies.backtest.report import write_report
    from tradepilot.strategies.bars import Bars
    from tradepilot.strategies.base import StrategyParamsError
    from tradepilot.strategies.catalog import UnknownStrategy, build_strategy

    settings = load_settings()
    params: dict[str, Any] = dict(args.param)
    if args.rules is not None:
        params = {**json.loads(args.rules.read_text(encoding="utf-8")), **params}
    try:
        strategy = build_strategy(args.strategy, params)
        config = BacktestConfig.from_settings(settings, initial_cash=args.cash, maker_fee=args.maker_fee,
                                              taker_fee=args.taker_fee, slippage=args.slippage,
                                              volume_cap=args.volume_cap)
    except (UnknownStrategy, StrategyParamsError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    store = CandleStore.for_settings(settings, args.venue or configured_venue(settings))
    series = []
    for raw in args.symbol:
        symbol = normalize_symbol(raw)
        frame = store.read(symbol, args.timeframe, args.start, args.end)
        if len(frame) < 2:
            print(f"{store.venue} {symbol} {args.timeframe}: {len(frame)} bars stored in that range; import or "
                  "download candles first (tradepilot data …)", file=sys.stderr)
            return 1
        series.append(Bars.from_frame(symbol, frame))
        print(f"  {symbol} {args.timeframe}: {len(frame)} bars", file=sys.stderr)
    result = run_backtest(strategy, series, config, timeframe=args.timeframe, progress=_ProgressBar())
    print("  writing the report…", file=sys.stderr)
    written = write_report(result, args.out)
    summary = result.summary()
    print(json.dumps({k: summary[k] for k in ("strategy", "symbols", "bars", "final_equity", "total_return",
                                              "sharpe", "max_drawdown", "trades", "buy_and_hold")}, indent=2))
    print(f"report: {args.out / 'report.html'} ({len(written)} files)", file=sys.stderr)
    return 0
