"""Real market data for the market tests (slices in tests/data/market, see its README)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from tradepilot.market.types import Trade

DATA = Path(__file__).parent / "data" / "market"
COINBASE_1H = DATA / "coinbase_btc_usd_1h" / "BTC_USD-1h-first720.csv"
COINBASE_BTC_1M = DATA / "coinbase_multi_1m" / "BTCUSD-1m.csv"
COINBASE_ETH_1M = DATA / "coinbase_multi_1m" / "ETHUSD-1m.csv"
BINANCE_BTC_TRADES = DATA / "binance_spot_capture" / "BTCUSDT-trades-2024-08-08T2354-first5210.csv"


@dataclass(frozen=True)
class Row:
    """One candle exactly as the file has it (strings kept, for byte-level comparisons)."""

    timestamp: str
    open: str
    high: str
    low: str
    close: str
    volume: str

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))

    def value(self, name: str) -> Decimal:
        return Decimal(getattr(self, name))


def candle_rows(path: Path) -> list[Row]:
    with path.open(newline="") as fh:
        return [Row(r["timestamp"], r["open"], r["high"], r["low"], r["close"], r["volume"])
                for r in csv.DictReader(fh)]


def binance_trades(path: Path = BINANCE_BTC_TRADES, symbol: str = "BTC/USDT",
                   venue: str = "binance") -> list[Trade]:
    with path.open(newline="") as fh:
        return [Trade(venue=venue, symbol=symbol, id=r["trade_id"], price=Decimal(r["price"]),
                      quantity=Decimal(r["qty"]), side=r["taker_side"],  # type: ignore[arg-type]
                      ts=datetime.fromtimestamp(int(r["trade_ms"]) / 1000, tz=timezone.utc))
                for r in csv.DictReader(fh)]
