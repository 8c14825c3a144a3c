"""Importing candles from files into the candle store (``tradepilot data import``).

CSV (``timestamp,open,high,low,close,volume``; extra columns are ignored; ``timestamp`` the
bar's open time as ISO-8601 or Unix seconds/milliseconds) or Parquet with the same columns.
Values are read as exact decimals. Bars replace stored bars with the same open time; the
higher timeframes are then rebuilt from the imported ones (``1h`` → ``4h``, ``1d``).
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from tradepilot.market.frame import BarDataError, BarFrame, from_ms, to_ms
from tradepilot.market.store import CandleStore
from tradepilot.market.types import Bar

TIME_COLUMNS = ("timestamp", "open_time", "time", "date", "datetime")


class ImportFileError(ValueError):
    """The file cannot be read as candles; the message says where."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    bars: int
    first: datetime | None
    last: datetime | None
    derived: dict[str, int]


def parse_timestamp(raw: str) -> datetime:
    text = raw.strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        return from_ms(value if abs(value) > 10**11 else value * 1000)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def read_bars(path: Path, symbol: str, timeframe: str) -> list[Bar]:
    """Exact bars from a CSV (optionally .gz) or Parquet file."""
    if path.suffix == ".parquet":
        return _read_parquet(path, symbol, timeframe)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as fh:  # type: ignore[operator]
        return _read_csv(fh, symbol, timeframe)


def _read_csv(fh: io.TextIOBase, symbol: str, timeframe: str) -> list[Bar]:
    reader = csv.DictReader(fh)
    fields = {name.strip().lower(): name for name in reader.fieldnames or []}
    time_col = next((fields[c] for c in TIME_COLUMNS if c in fields), None)
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in fields]
    if time_col is None or missing:
        raise ImportFileError(f"expected columns timestamp,open,high,low,close,volume; missing "
                              f"{', '.join(missing + ([] if time_col else ['timestamp']))}")
    bars = []
    for line, row in enumerate(reader, start=2):
        try:
            bars.append(Bar(symbol=symbol, timeframe=timeframe, open_time=parse_timestamp(row[time_col]),
                            open=Decimal(row[fields["open"]]), high=Decimal(row[fields["high"]]),
                            low=Decimal(row[fields["low"]]), close=Decimal(row[fields["close"]]),
                            volume=Decimal(row[fields["volume"]])))
        except (InvalidOperation, ValueError, TypeError) as exc:
            raise ImportFileError(f"line {line}: {exc or 'not a number'}") from None
    return bars


def _read_parquet(path: Path, symbol: str, timeframe: str) -> list[Bar]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = {n.lower(): n for n in table.column_names}
    time_col = next((names[c] for c in TIME_COLUMNS if c in names), None)
    if time_col is None or any(c not in names for c in ("open", "high", "low", "close", "volume")):
        raise ImportFileError("expected columns timestamp,open,high,low,close,volume")
    cols = {c: table.column(names[c]).to_pylist() for c in ("open", "high", "low", "close", "volume")}
    times = table.column(time_col).to_pylist()
    bars = []
    for i, t in enumerate(times):
        moment = t if isinstance(t, datetime) else parse_timestamp(str(t))
        moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
        values = {c: v if isinstance(v, Decimal) else Decimal(str(v)) for c, v in ((c, cols[c][i]) for c in cols)}
        bars.append(Bar(symbol=symbol, timeframe=timeframe, open_time=moment, **values))
    return bars


def import_file(store: CandleStore, path: Path, *, symbol: str, timeframe: str,
                derive: bool = True) -> ImportResult:
    """Read ``path`` and write its bars (then the derived timeframes). Synchronous: a thread or CLI."""
    bars = read_bars(path, symbol, timeframe)
    if not bars:
        return ImportResult(0, None, None, {})
    times = [to_ms(b.open_time) for b in bars]
    if len(set(times)) != len(times):
        raise ImportFileError("the file has two bars with the same timestamp")
    try:
        frame = BarFrame.from_bars(bars)
        written = store.write(symbol, timeframe, frame)
    except (BarDataError, ValueError) as exc:
        raise ImportFileError(str(exc)) from None
    first, last = from_ms(int(frame.open_time[0])), from_ms(int(frame.open_time[-1]))
    derived = store.derive(symbol, timeframe, first, from_ms(int(frame.open_time[-1]) + 1)) if derive else {}
    return ImportResult(written, first, last, derived)
