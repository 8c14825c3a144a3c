"""Reading a recorded Binance websocket capture (the format of ``shared/data/market/binance_spot_capture``).

Each line is ``<receive time, ns> <JSON>``, the JSON being either a REST depth snapshot
``{"lastUpdateId", "bids", "asks"}`` or a combined-stream message ``{"stream", "data"}``
(``<sym>@depth@100ms``, ``<sym>@trade``, ``<sym>@bookTicker``). Files may be gzip-compressed
and a capture may span several files, read in the order given. One capture holds one symbol
(the snapshot lines name none).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Literal

from tradepilot.market.feeds.depth import DepthDiff, DepthSnapshot
from tradepilot.market.types import Trade

# Quote currencies tried, longest first, to split an exchange id such as BTCUSDT.
KNOWN_QUOTES = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "DAI", "USD", "EUR", "GBP", "JPY", "TRY",
                "BRL", "BTC", "ETH", "BNB")


def split_market_id(market_id: str) -> str:
    """``BTCUSDT`` / ``btcusdt`` / ``BTC-USDT`` / ``BTC_USD`` → ``BTC/USDT``; unknown forms are returned upper-cased."""
    value = market_id.upper()
    for sep in ("/", "-", "_"):
        if sep in value:
            base, _, quote = value.partition(sep)
            return f"{base}/{quote}"
    for quote in KNOWN_QUOTES:
        if value.endswith(quote) and len(value) > len(quote):
            return f"{value[: -len(quote)]}/{quote}"
    return value


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    recv_ns: int
    kind: Literal["snapshot", "depth", "trade"]
    data: DepthSnapshot | DepthDiff | dict
    market_id: str | None  # the exchange's id (BTCUSDT); None on snapshot lines


def open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def read_capture(paths: Iterable[Path]) -> Iterator[CaptureRecord]:
    """Snapshots, depth diffs and trades in the order they were received (book tickers skipped)."""
    for path in paths:
        with open_text(Path(path)) as handle:
            for line in handle:
                record = parse_line(line)
                if record is not None:
                    yield record


def parse_line(line: str) -> CaptureRecord | None:
    stamp, _, body = line.partition(" ")
    if not body or '@bookTicker"' in body:
        return None
    recv_ns = int(stamp)
    message = json.loads(body)
    if "lastUpdateId" in message:
        return CaptureRecord(recv_ns, "snapshot", DepthSnapshot.from_binance(message), None)
    data = message.get("data", message)
    event = data.get("e")
    if event == "depthUpdate":
        return CaptureRecord(recv_ns, "depth", DepthDiff.from_binance(data), data.get("s"))
    if event == "trade":
        return CaptureRecord(recv_ns, "trade", data, data.get("s"))
    return None


def trade_from_binance(venue: str, symbol: str, data: dict) -> Trade:
    """A ``@trade`` event → :class:`Trade`. ``m`` (buyer is maker) means the taker sold."""
    return Trade(
        venue=venue,
        symbol=symbol,
        id=str(data["t"]),
        price=Decimal(data["p"]),
        quantity=Decimal(data["q"]),
        side="sell" if data.get("m") else "buy",
        ts=ms_to_datetime(int(data["T"])),
    )
