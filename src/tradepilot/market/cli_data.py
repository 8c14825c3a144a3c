"""``tradepilot data …``: market data on the command line.

``data`` is one command whose actions register here with :func:`data_command`, so each owner
adds its own (``download`` below; ``import`` lives with the candle store)::

    tradepilot data download --exchange binance --symbol BTC/USDT --timeframe 1h --since 2024-01-01
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import datetime, timezone

from tradepilot.cli import Command, command
from tradepilot.config import load_settings

DATA_ACTIONS: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None] | None]] = {}


def data_command(name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):  # type: ignore[no-untyped-def]
    """Register ``tradepilot data <name>``."""
    def register(func: Command) -> Command:
        DATA_ACTIONS[name] = (help_text, func, arguments)
        return func

    return register


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_action", required=True, metavar="ACTION")
    for name, (help_text, _, arguments) in DATA_ACTIONS.items():
        sub = actions.add_parser(name, help=help_text, description=help_text)
        if arguments:
            arguments(sub)


@command("data", "market data: download candles from an exchange, import files", _data_arguments)
def _data(args: argparse.Namespace) -> int:
    return DATA_ACTIONS[args.data_action][1](args)


def parse_time(value: str) -> datetime:
    """``2024-01-01``, ``2024-01-01T12:00``, ``…Z`` or ``…+00:00``; naive means UTC."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time: {value!r}") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", required=True, help="ccxt exchange id, e.g. binance")
    p.add_argument("--symbol", required=True, action="append", help="unified symbol, e.g. BTC/USDT (repeatable)")
    p.add_argument("--timeframe", required=True, action="append", help="1m, 5m, 15m, 1h, 4h or 1d (repeatable)")
    p.add_argument("--since", required=True, type=parse_time, help="first bar's open time (UTC)")
    p.add_argument("--until", type=parse_time, default=None, help="stop before this time (default: now)")
    p.add_argument("--venue", default=None, help="store the bars under this venue (default: the exchange id)")
    p.add_argument("--page", type=int, default=1000, help="bars per request (default 1000)")
    p.add_argument("--no-resume", action="store_true", help="start at --since even if bars are stored past it")
    p.add_argument("--rest-url", default=None, help="send the exchange's REST calls to this base URL instead")


@data_command("download", "download candles from an exchange (ccxt) into the candle store", _download_arguments)
def _download(args: argparse.Namespace) -> int:
    from tradepilot.market.download import DownloadProgress, download_candles
    from tradepilot.market.feeds.ccxt_errors import ExchangeError
    from tradepilot.market.feeds.ccxt_venues import create_exchange
    from tradepilot.market.store import CandleStore

    settings = load_settings()
    store = CandleStore.for_settings(settings, args.venue or args.exchange)

    def report(p: DownloadProgress) -> None:
        last = p.last_open_time.strftime("%Y-%m-%dT%H:%MZ") if p.last_open_time else "-"
        print(f"  {p.symbol} {p.timeframe}: {p.bars} bars, up to {last} ({p.fraction:.0%})", file=sys.stderr, flush=True)

    async def run() -> int:
        exchange = create_exchange(args.exchange, websocket=False, rest_url=args.rest_url)
        try:
            for symbol in args.symbol:
                for timeframe in args.timeframe:
                    result = await download_candles(exchange, store, symbol=symbol, timeframe=timeframe,
                                                    since=args.since, until=args.until, page_limit=args.page,
                                                    resume=not args.no_resume, progress=report)
                    span = (f"{result.first_open_time:%Y-%m-%dT%H:%MZ} .. {result.last_open_time:%Y-%m-%dT%H:%MZ}"
                            if result.first_open_time and result.last_open_time else "nothing new")
                    how = f"resumed at {result.start:%Y-%m-%dT%H:%MZ}" if result.resumed else f"from {result.start:%Y-%m-%dT%H:%MZ}"
                    print(f"{result.venue} {symbol} {timeframe}: {result.bars} bars written ({span}; {how})")
        except ExchangeError as exc:
            print(f"download failed: {exc.detail} ({exc.code})", file=sys.stderr)
            return 1
        finally:
            await exchange.close()
        return 0

    return asyncio.run(run())
