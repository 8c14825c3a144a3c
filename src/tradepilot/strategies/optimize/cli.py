"""``tradepilot optimize``: search a strategy's parameters on stored candles, print the
in-sample / out-of-sample table.

    tradepilot optimize --strategy sma_cross --symbol BTC/USDT --timeframe 1h \\
        --from 2024-01-01 --to 2025-01-01 --param-range fast=5:45:5 --param-range slow=20:180:20 \\
        --sampler tpe --trials 100 --objective sharpe --walk-forward 4

``--param-range NAME=LOW:HIGH[:STEP]`` for numbers, ``NAME=A,B,C`` for choices. With
PostgreSQL configured the study lives in the database: the same ``--study`` name given to
several processes (on several machines) makes them share its trials.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import uuid
from typing import Any

from tradepilot.cli import command
from tradepilot.market.cli_data import parse_time
from tradepilot.market.types import TIMEFRAMES
from tradepilot.strategies.cli import parse_param
from tradepilot.strategies.optimize.evaluate import OBJECTIVES
from tradepilot.strategies.optimize.study import SAMPLERS


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_range(text: str) -> tuple[str, dict[str, Any]]:
    """``fast=5:45:5`` → ("fast", {"low": 5, "high": 45, "step": 5}); ``src=close,open`` → choices."""
    name, sep, raw = text.partition("=")
    if not sep or not name or not raw:
        raise argparse.ArgumentTypeError(f"expected NAME=LOW:HIGH[:STEP] or NAME=A,B,…, got {text!r}")
    if ":" in raw:
        parts = [_value(p) for p in raw.split(":")]
        if len(parts) not in (2, 3):
            raise argparse.ArgumentTypeError(f"expected LOW:HIGH[:STEP], got {raw!r}")
        spec = {"low": parts[0], "high": parts[1]}
        if len(parts) == 3:
            spec["step"] = parts[2]
        return name.strip(), spec
    return name.strip(), {"choices": [_value(p) for p in raw.split(",")]}


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", required=True, help="a name from the catalog, e.g. sma_cross")
    p.add_argument("--symbol", required=True, action="append", help="unified symbol, e.g. BTC/USDT (repeatable)")
    p.add_argument("--timeframe", required=True, choices=list(TIMEFRAMES))
    p.add_argument("--from", dest="start", type=parse_time, default=None, help="first bar's open time (UTC)")
    p.add_argument("--to", dest="end", type=parse_time, default=None, help="stop before this time (UTC)")
    p.add_argument("--param", type=parse_param, action="append", default=[], help="fixed NAME=VALUE (repeatable)")
    p.add_argument("--param-range", type=parse_range, action="append", default=[], required=True,
                   help="NAME=LOW:HIGH[:STEP] or NAME=A,B,C (repeatable)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument("--trials", type=int, default=None, help="trials per window (grid: default all points)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objective", choices=OBJECTIVES, default="sharpe")
    p.add_argument("--min-trades", type=int, default=1)
    p.add_argument("--walk-forward", type=int, default=1, help="windows (1: one in-sample/out-of-sample split)")
    p.add_argument("--in-sample", type=float, default=0.7, help="in-sample share of each window")
    p.add_argument("--workers", type=int, default=0, help="processes (default: optimize_workers, 0 = per core)")
    p.add_argument("--study", default=None, help="study name (share it between processes with PostgreSQL)")
    p.add_argument("--venue", default=None, help="read candles of this venue (default: the configured feed's)")
    p.add_argument("--cash", type=float, default=10_000.0)
    p.add_argument("--maker-fee", type=float, default=None)
    p.add_argument("--taker-fee", type=float, default=None)
    p.add_argument("--slippage", type=float, default=0.0)
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def print_table(report: dict[str, Any]) -> None:
    objective = report["objective"]
    head = (f"{'window':>6}  {'in-sample':<23} {'out-of-sample':<23} {'IS ' + objective:>12} "
            f"{'OOS ' + objective:>12} {'IS ret':>8} {'OOS ret':>8} {'IS tr':>5} {'OOS tr':>6}  best parameters")
    print(head)
    for row in report["windows"]:
        ins, oos = row["in_sample_metrics"] or {}, row["out_of_sample_metrics"] or {}
        best = {k: row["best_params"][k] for k in report["space"]} if row["best_params"] else "no feasible trial"
        print(f"{row['index'] + 1:>6}  {row['in_sample']['start'][:10] + '..' + row['in_sample']['end'][:10]:<23} "
              f"{row['out_of_sample']['start'][:10] + '..' + row['out_of_sample']['end'][:10]:<23} "
              f"{_fmt(ins.get(objective)):>12} {_fmt(oos.get(objective)):>12} {_fmt(ins.get('total_return')):>8} "
              f"{_fmt(oos.get('total_return')):>8} {_fmt(ins.get('trades')):>5} {_fmt(oos.get('trades')):>6}  {best}")
    agg = report["aggregate"]
    print(f"aggregate: IS {objective} mean {_fmt(agg['in_sample_objective_mean'])}, OOS {objective} mean "
          f"{_fmt(agg['out_of_sample_objective_mean'])}, efficiency {_fmt(agg['efficiency'])}, OOS return "
          f"compounded {_fmt(agg['out_of_sample_total_return'])}")
    print(f"best parameters (last window): {json.dumps(report['best_params'])}")


@command("optimize", "optimise a strategy's parameters on stored candles (walk-forward)", _arguments)
def _optimize(args: argparse.Namespace) -> int:
    from tradepilot.config import load_settings
    from tradepilot.core.errors import Unprocessable
    from tradepilot.market.service import normalize_symbol
    from tradepilot.market.setup import configured_venue
    from tradepilot.market.store import CandleStore
    from tradepilot.strategies.backtest import BacktestConfig
    from tradepilot.strategies.bars import Bars
    from tradepilot.strategies.base import StrategyParamsError
    from tradepilot.strategies.catalog import UnknownStrategy, get_strategy
    from tradepilot.strategies.optimize.evaluate import Problem
    from tradepilot.strategies.optimize.pool import worker_count
    from tradepilot.strategies.optimize.run import Optimizer, OptimizeSpec
    from tradepilot.strategies.optimize.space import check_grid, parse_space
    from tradepilot.strategies.optimize.study import close_storage, open_storage
    from tradepilot.strategies.optimize.windows import WindowError

    settings = load_settings()
    try:
        cls = get_strategy(args.strategy)
        base = cls.parse_params(dict(args.param)).model_dump(mode="json")
        space = parse_space(cls, dict(args.param_range))
        n_trials = args.trials or (check_grid(space) if args.sampler == "grid" else 50)
        if args.sampler == "grid":
            n_trials = min(n_trials, check_grid(space))
        config = BacktestConfig.from_settings(settings, initial_cash=args.cash, maker_fee=args.maker_fee,
                                              taker_fee=args.taker_fee, slippage=args.slippage)
    except Unprocessable as exc:
        print(f"{exc}: " + "; ".join(f"{e['field']}: {e['message']}" for e in exc.extra.get("errors", [])),
              file=sys.stderr)
        return 2
    except (UnknownStrategy, StrategyParamsError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    store = CandleStore.for_settings(settings, args.venue or configured_venue(settings))
    series = []
    for raw in args.symbol:
        symbol = normalize_symbol(raw)
        frame = store.read(symbol, args.timeframe, args.start, args.end)
        if len(frame) < 2:
            print(f"{store.venue} {symbol} {args.timeframe}: {len(frame)} bars stored in that range", file=sys.stderr)
            return 1
        series.append(Bars.from_frame(symbol, frame))
    problem = Problem(cls.name, base, series, config, args.objective, args.min_trades, args.timeframe)
    spec = OptimizeSpec(args.sampler, n_trials, args.seed, args.objective, args.min_trades, args.walk_forward,
                        args.in_sample, space)
    storage = open_storage(settings.database_url)
    prefix = args.study or f"tradepilot-cli-{uuid.uuid4()}"

    def progress(fraction: float, message: str) -> None:
        print(f"\r  {fraction:4.0%} {message:<40}", end="", file=sys.stderr, flush=True)

    try:
        optimizer = Optimizer(problem, spec, storage, prefix, workers=1,
                              worker_label=f"{socket.gethostname()}:{os.getpid()}:cli", progress=progress)
        first = optimizer.windows()[0]
        optimizer.workers = args.workers or worker_count(settings.optimize_workers, first.in_sample_bars, n_trials)
        report, _ = optimizer.run()
    except WindowError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        close_storage(storage)
    print(file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0
