"""Recorded market data the replay feed can play: candles, trades, and Binance depth captures.

Every source turns its file(s) into a timeline of ``(key_ns, event)`` pairs in file order,
where ``key_ns`` is when the event happened (nanoseconds since the epoch; the receive time
for a capture) and drives the replay's pacing.

- **candles** (CSV or Parquet, ``timestamp,open,high,low,close,volume``, ``timestamp`` = bar
  open time): each bar is played as four trades, open → high/low → low/high → close, at the
  bar's open time + 0, ¼, ½ and ¾ of the timeframe, whose quantities add up to the bar's
  volume. A candle builder fed these trades rebuilds exactly the recorded bars.
- **trades** (CSV or Parquet): ``price`` + ``qty``/``quantity``/``amount`` + a time column
  (``trade_ms`` / ``timestamp`` / ``datetime``), optional ``trade_id``/``id`` and
  ``taker_side``/``side``; the ``binance_spot_capture/*.csv`` layout is one of these.
- **capture** (``<receive ns> <JSON>`` lines, gzip or plain; see :mod:`.capture`): the depth
  snapshot and diffs are rebuilt into books by :class:`~.depth.DepthSync` (Binance's rules),
  one :class:`OrderBook` (top ``depth`` levels, ``seq`` = the update id) per applied diff;
  its ``@trade`` messages become trades.
"""

from __future__ import annotations

import csv
import glob
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from tradepilot.core.money import EXACT
from tradepilot.market.feeds.capture import (
    ms_to_datetime,
    open_text,
    read_capture,
    split_market_id,
    trade_from_binance,
)
from tradepilot.market.feeds.depth import DepthSync, DiffResult, SnapshotResult
from tradepilot.market.types import TIMEFRAMES, Bar, Instrument, MarketEvent, OrderBook, Trade

logger = logging.getLogger("tradepilot.market.replay")

SourceKind = Literal["candles", "trades", "capture"]
Timed = tuple[int, MarketEvent]
NS = 1_000_000_000
_TIMEFRAME_IN_NAME = re.compile(r"[-_.](1m|5m|15m|1h|4h|1d)(?=[-_.]|$)")


@dataclass(frozen=True)
class ReplaySource:
    """One recording: a file, or (captures) several files played one after the other."""

    paths: tuple[Path, ...]
    kind: SourceKind
    symbol: str  # unified: BTC/USDT
    timeframe: str | None = None  # candles only

    def timeline(self, venue: str, *, depth: int = 20) -> Iterator[Timed]:
        if self.kind == "candles":
            assert self.timeframe is not None
            for bar in read_bars(self.paths[0], self.symbol, self.timeframe):
                yield from bar_to_trades(venue, bar)
        elif self.kind == "trades":
            yield from read_trades(self.paths[0], venue, self.symbol)
        else:
            yield from capture_timeline(self.paths, venue, self.symbol, depth=depth)

    def instrument(self, venue: str, *, sample: int = 2000) -> Instrument:
        """Tick and step sizes inferred from the finest prices and quantities in the first records."""
        prices: list[Decimal] = []
        quantities: list[Decimal] = []
        if self.kind == "candles":
            assert self.timeframe is not None
            for bar in islice(read_bars(self.paths[0], self.symbol, self.timeframe), sample):
                prices += (bar.open, bar.high, bar.low, bar.close)
                quantities.append(bar.volume)
        for _, event in islice(self.timeline(venue, depth=5), sample if self.kind != "candles" else 0):
            if isinstance(event, Trade):
                prices.append(event.price)
                quantities.append(event.quantity)
            else:
                for price, qty in event.bids + event.asks:
                    prices.append(price)
                    quantities.append(qty)
        base, _, quote = self.symbol.partition("/")
        return Instrument(venue=venue, symbol=self.symbol, base=base, quote=quote or "USD",
                          tick_size=_finest(prices), step_size=_finest(quantities), min_notional=Decimal(0))


def _finest(values: Sequence[Decimal]) -> Decimal:
    exponents = [v.normalize().as_tuple().exponent for v in values if v]
    ints = [e for e in exponents if isinstance(e, int)]
    return Decimal(1).scaleb(min(min(ints), 0)) if ints else Decimal(1)


def discover(entry: str | Path, *, symbol: str | None = None, kind: SourceKind | None = None,
             timeframe: str | None = None) -> list[ReplaySource]:
    """A path or glob → sources. Capture files matched together form one capture (name order)."""
    text = str(entry)
    paths = sorted(Path(p) for p in glob.glob(text)) if glob.has_magic(text) else [Path(text)]
    if not paths or not all(p.is_file() for p in paths):
        raise FileNotFoundError(f"no replay file matches {text}")
    kinds = {p: kind or detect_kind(p) for p in paths}
    sources: list[ReplaySource] = []
    captures = [p for p in paths if kinds[p] == "capture"]
    if captures:
        sources.append(ReplaySource(tuple(captures), "capture", symbol or _capture_symbol(captures[0])))
    for p in paths:
        if kinds[p] == "candles":
            tf = timeframe or _timeframe_of(p)
            sources.append(ReplaySource((p,), "candles", symbol or _symbol_from_name(p), tf))
        elif kinds[p] == "trades":
            sources.append(ReplaySource((p,), "trades", symbol or _symbol_from_name(p)))
    return sources


def detect_kind(path: Path) -> SourceKind:
    columns = {c.lower() for c in _columns(path)}
    if {"open", "high", "low", "close"} <= columns:
        return "candles"
    if "price" in columns:
        return "trades"
    with open_text(path) as handle:
        first = handle.readline()
    if re.match(r"^\d+ \{", first):
        return "capture"
    raise ValueError(f"{path}: not a candle file, a trade file or a Binance capture")


def _columns(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    if path.suffix in (".csv", ".gz") and not path.name.endswith(".parquet.gz"):
        with open_text(path) as handle:
            header = handle.readline()
        if header[:1].isdigit():
            return []
        return [c.strip() for c in header.split(",")]
    return []


def _symbol_from_name(path: Path) -> str:
    """``BTC_USD-1h.csv`` → BTC/USD; ``BTCUSDT-trades-….csv`` → BTC/USDT."""
    stem = path.name.split(".")[0]
    head = re.split(r"-", stem, maxsplit=1)[0]
    return split_market_id(head)


def _capture_symbol(path: Path) -> str:
    for record in read_capture([path]):
        if record.market_id:
            return split_market_id(record.market_id)
    return split_market_id(path.name.split("_")[0])


def _timeframe_of(path: Path) -> str:
    match = _TIMEFRAME_IN_NAME.search(path.name)
    if match:
        return match.group(1)
    rows = list(islice(_rows(path), 2))
    if len(rows) == 2:
        step = int((_parse_time(rows[1]["timestamp"]) - _parse_time(rows[0]["timestamp"])).total_seconds())
        for name, seconds in TIMEFRAMES.items():
            if seconds == step:
                return name
    raise ValueError(f"{path}: cannot tell the timeframe; name it (…-1h.csv) or configure it")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
        return
    with open_text(path) as handle:
        yield from csv.DictReader(handle)


def _dec(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value).strip())


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        return ms_to_datetime(number if number < 10**14 else number // 1_000_000)
    return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")).astimezone(timezone.utc)


def _ns(ts: datetime) -> int:
    return int(ts.timestamp()) * NS + ts.microsecond * 1000


def read_bars(path: Path, symbol: str, timeframe: str) -> Iterator[Bar]:
    for row in _rows(path):
        yield Bar(symbol=symbol, timeframe=timeframe, open_time=_parse_time(row["timestamp"]),
                  open=_dec(row["open"]), high=_dec(row["high"]), low=_dec(row["low"]),
                  close=_dec(row["close"]), volume=_dec(row["volume"]))


def bar_to_trades(venue: str, bar: Bar) -> Iterator[Timed]:
    """Four trades that rebuild ``bar`` exactly (prices, volume, and the bar they fall in)."""
    up_first = (bar.high - bar.open) <= (bar.open - bar.low)  # visit the nearer extreme first
    prices = (bar.open, bar.high, bar.low, bar.close) if up_first else (bar.open, bar.low, bar.high, bar.close)
    share = EXACT.divide(bar.volume, Decimal(4))
    quantities = (share, share, share, EXACT.subtract(bar.volume, EXACT.multiply(share, Decimal(3))))
    quarter = timedelta(seconds=TIMEFRAMES[bar.timeframe] / 4)
    base_ms = int(bar.open_time.timestamp() * 1000)
    previous = bar.open
    for i, (price, qty) in enumerate(zip(prices, quantities, strict=True)):
        ts = bar.open_time + quarter * i
        side: Literal["buy", "sell"] = "buy" if price >= previous else "sell"
        previous = price
        yield _ns(ts), Trade(venue=venue, symbol=bar.symbol, id=f"{base_ms}-{i}", price=price,
                             quantity=qty, side=side, ts=ts)


def read_trades(path: Path, venue: str, symbol: str) -> Iterator[Timed]:
    for n, row in enumerate(_rows(path)):
        when = next((row[c] for c in ("trade_ms", "timestamp", "datetime", "time", "ts") if row.get(c) not in (None, "")), None)
        if when is None:
            raise ValueError(f"{path}: a trade without a time column (trade_ms/timestamp/datetime)")
        ts = _parse_time(when)
        qty = next(row[c] for c in ("qty", "quantity", "amount", "size") if c in row)
        side = str(row.get("taker_side") or row.get("side") or "buy").lower()
        trade = Trade(venue=venue, symbol=symbol, id=str(row.get("trade_id") or row.get("id") or n),
                      price=_dec(row["price"]), quantity=_dec(qty), side="sell" if side == "sell" else "buy", ts=ts)
        key = int(row["local_ns"]) if row.get("local_ns") not in (None, "") else _ns(ts)
        yield key, trade


def capture_timeline(paths: Sequence[Path], venue: str, symbol: str, *, depth: int = 20) -> Iterator[Timed]:
    sync = DepthSync()
    for record in read_capture(paths):
        if record.kind == "trade":
            assert isinstance(record.data, dict)
            yield record.recv_ns, trade_from_binance(venue, symbol, record.data)
            continue
        if record.kind == "snapshot":
            result = sync.on_snapshot(record.data)  # type: ignore[arg-type]
            if result is not SnapshotResult.SYNCED:
                logger.warning("replay %s: snapshot %s", symbol, result.value)
                continue
            ts = datetime.fromtimestamp(record.recv_ns / NS, tz=timezone.utc)
        else:
            outcome = sync.on_diff(record.data)  # type: ignore[arg-type]
            if outcome is DiffResult.GAP:
                logger.warning("replay %s: depth gap before update %s; waiting for a snapshot",
                               symbol, record.data.first_id)  # type: ignore[union-attr]
            if outcome is not DiffResult.APPLIED:
                continue
            ts = ms_to_datetime(record.data.event_ms) if record.data.event_ms else \
                datetime.fromtimestamp(record.recv_ns / NS, tz=timezone.utc)  # type: ignore[union-attr]
        bids, asks = sync.book.top(depth)
        assert sync.last_update_id is not None
        yield record.recv_ns, OrderBook(venue=venue, symbol=symbol, seq=sync.last_update_id,
                                        bids=bids, asks=asks, ts=ts)
