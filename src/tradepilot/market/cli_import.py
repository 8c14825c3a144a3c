"""``tradepilot data import FILE --symbol BTC/USDT --timeframe 1h``: candles from a file into the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tradepilot.config import load_settings
from tradepilot.market.cli_data import data_command
from tradepilot.market.types import TIMEFRAMES


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="CSV (timestamp,open,high,low,close,volume), .csv.gz or Parquet")
    p.add_argument("--symbol", required=True, help="unified symbol, e.g. BTC/USDT")
    p.add_argument("--timeframe", required=True, choices=list(TIMEFRAMES))
    p.add_argument("--venue", default=None, help="store under this venue (default: the configured feed's)")
    p.add_argument("--no-derive", action="store_true", help="do not rebuild the higher timeframes")


@data_command("import", "import candles from a file into the candle store", _import_arguments)
def _import(args: argparse.Namespace) -> int:
    from tradepilot.market.importer import ImportFileError, import_file
    from tradepilot.market.service import normalize_symbol
    from tradepilot.market.setup import configured_venue
    from tradepilot.market.store import CandleStore

    settings = load_settings()
    store = CandleStore.for_settings(settings, args.venue or configured_venue(settings))
    symbol = normalize_symbol(args.symbol)
    try:
        result = import_file(store, args.file, symbol=symbol, timeframe=args.timeframe, derive=not args.no_derive)
    except FileNotFoundError:
        print(f"no such file: {args.file}", file=sys.stderr)
        return 1
    except ImportFileError as exc:
        print(f"cannot import {args.file}: {exc}", file=sys.stderr)
        return 1
    span = f"{result.first:%Y-%m-%dT%H:%MZ} .. {result.last:%Y-%m-%dT%H:%MZ}" if result.first and result.last else "-"
    derived = ", ".join(f"{tf} {n}" for tf, n in result.derived.items())
    print(f"{store.venue} {symbol} {args.timeframe}: {result.bars} bars imported ({span})"
          + (f"; derived {derived}" if derived else ""))
    return 0
