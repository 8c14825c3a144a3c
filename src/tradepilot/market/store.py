"""The candle store: OHLCV per venue, symbol and timeframe, as Parquet files under ``data_dir``.

Layout: ``<data_dir>/market/candles/<venue>/<BTC-USDT>/<timeframe>/<partition>.parquet`` with
a partition per month for intraday timeframes below one hour and per year above. Columns:
``open_time`` (timestamp[ms, UTC]) and ``open, high, low, close, volume`` as exact
``DECIMAL(18, s)`` (INT64-backed). Files are replaced atomically (write + rename), so readers
never see half a file and need no lock; writers take one lock file per venue (``flock``), so
the feed owner and a ``tradepilot data import`` never lose each other's bars. Why Parquet and
not the database: see docs/market-data.md.

The methods are synchronous (file I/O and numpy): call them from threads
(``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tradepilot.market.frame import BarFrame, from_ms, timeframe_ms, to_ms
from tradepilot.market.resample import derived_timeframes, floor_ms, gaps, resample
from tradepilot.market.types import TIMEFRAMES, Bar, symbol_to_topic

if TYPE_CHECKING:
    from tradepilot.config import Settings

ROW_GROUP_ROWS = 4096
_PARTITION_RE = re.compile(r"^(\d{4})(?:-(\d{2}))?\.parquet$")


class StaleWriter(Exception):
    """A writer whose fencing token was superseded (it lost the feed's lease) tried to write."""


@dataclass(frozen=True, slots=True)
class Partition:
    start_ms: int
    end_ms: int
    path: Path


def _monthly(timeframe: str) -> bool:
    return TIMEFRAMES[timeframe] < 3600


def partition_bounds(ms: int, timeframe: str) -> tuple[int, int, str]:
    moment = from_ms(ms)
    if _monthly(timeframe):
        start = datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)
        nxt = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc)
        name = f"{moment.year:04d}-{moment.month:02d}.parquet"
    else:
        start = datetime(moment.year, 1, 1, tzinfo=timezone.utc)
        nxt = datetime(moment.year + 1, 1, 1, tzinfo=timezone.utc)
        name = f"{moment.year:04d}.parquet"
    return to_ms(start), to_ms(nxt), name


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        try:
            pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS,
                           store_decimal_as_integer=True)
        except TypeError:  # pyarrow < 17 has no INT64 decimals: FIXED_LEN_BYTE_ARRAY, same values
            pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class CandleStore:
    """Exact OHLCV bars of one venue. Thread-safe; one writer process at a time (lease + lock)."""

    def __init__(self, root: Path, venue: str) -> None:
        self.venue = venue
        self.root = Path(root) / re.sub(r"[^A-Za-z0-9_.-]", "_", venue)
        self._meta: dict[Path, tuple[tuple[int, int, int], pq.FileMetaData, list[tuple[int, int]]]] = {}
        self._meta_lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings, venue: str) -> CandleStore:
        return cls(Path(settings.data_dir) / "market" / "candles", venue)

    # -- layout ---------------------------------------------------------------------------

    def _dir(self, symbol: str, timeframe: str) -> Path:
        timeframe_ms(timeframe)  # validates
        return self.root / symbol_to_topic(symbol) / timeframe

    def partitions(self, symbol: str, timeframe: str) -> list[Partition]:
        directory = self._dir(symbol, timeframe)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            match = _PARTITION_RE.match(name)
            if match:
                year, month = int(match.group(1)), int(match.group(2) or 1)
                start, end, _ = partition_bounds(to_ms(datetime(year, month, 1, tzinfo=timezone.utc)), timeframe)
                out.append(Partition(start, end, directory / name))
        return sorted(out, key=lambda p: p.start_ms)

    def symbols(self) -> list[str]:
        """Symbols with stored bars (dash-form directories turned back into ``BASE/QUOTE``)."""
        try:
            return sorted(d.replace("-", "/", 1) for d in os.listdir(self.root) if not d.startswith("."))
        except FileNotFoundError:
            return []

    # -- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _check_fence(self, fence: int | None) -> None:
        """Refuse a writer whose token is older than the newest token that wrote here."""
        if fence is None:
            return
        path = self.root / ".fence"
        try:
            newest = int(path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            newest = 0
        if fence < newest:
            raise StaleWriter(f"fencing token {fence} is older than {newest}: the lease was taken over")
        if fence > newest:
            path.write_text(str(fence))

    def write(self, symbol: str, timeframe: str, bars: BarFrame | Iterable[Bar], *,
              fence: int | None = None) -> int:
        """Insert or replace bars (same ``open_time`` → the new bar wins). Returns how many.

        ``fence`` is the writer's lease token: a writer that lost the lease to a newer token is
        refused with :class:`StaleWriter` (administrative writers such as imports pass none).
        """
        frame = bars if isinstance(bars, BarFrame) else BarFrame.from_bars(bars)
        if not len(frame):
            return 0
        frame.validate()
        span = timeframe_ms(timeframe)
        if np.any(frame.open_time % span):
            raise ValueError(f"bar times must be multiples of {timeframe}")
        directory = self._dir(symbol, timeframe)
        with self._write_lock():
            self._check_fence(fence)
            directory.mkdir(parents=True, exist_ok=True)
            i = 0
            while i < len(frame):
                start, end, name = partition_bounds(int(frame.open_time[i]), timeframe)
                j = int(np.searchsorted(frame.open_time, end, side="left"))
                path = directory / name
                part = frame.take(slice(i, j))
                if path.exists():
                    part = self._read_file(path, None, None).upsert(part)
                _write_parquet(part.to_arrow(), path)
                self._forget(path)
                i = j
        return len(frame)

    def derive(self, symbol: str, source: str, start: datetime, end: datetime, *,
               targets: Iterable[str] | None = None, fence: int | None = None) -> dict[str, int]:
        """Rebuild the higher timeframes of ``[start, end)`` from stored ``source`` bars.

        Whole target periods are recomputed (from the first period touching ``start``), so a
        period that was partly stored before is completed, not overwritten with a fragment.
        """
        written: dict[str, int] = {}
        for target in targets or derived_timeframes(source):
            lo = floor_ms(to_ms(start), target)
            hi = floor_ms(to_ms(end) - 1, target) + timeframe_ms(target)
            bars = self.read(symbol, source, from_ms(lo), from_ms(hi))
            written[target] = self.write(symbol, target, resample(bars, target), fence=fence)
        return written

    def delete(self, symbol: str, timeframe: str | None = None) -> None:
        with self._write_lock():
            for tf in [timeframe] if timeframe else list(TIMEFRAMES):
                for part in self.partitions(symbol, tf):
                    part.path.unlink(missing_ok=True)
                    self._forget(part.path)

    # -- reading --------------------------------------------------------------------------

    def _forget(self, path: Path) -> None:
        with self._meta_lock:
            self._meta.pop(path, None)

    def _metadata(self, path: Path) -> tuple[pq.FileMetaData, list[tuple[int, int]]]:
        """Footer and per-row-group time ranges, cached until the file changes."""
        st = path.stat()
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._meta_lock:
            cached = self._meta.get(path)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        meta = pq.read_metadata(path)
        index = meta.schema.to_arrow_schema().get_field_index("open_time")
        ranges = []
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(index).statistics
            lo, hi = (stats.min, stats.max) if stats is not None and stats.has_min_max else (None, None)
            ranges.append((_stat_ms(lo, -(2**62)), _stat_ms(hi, 2**62)))
        with self._meta_lock:
            self._meta[path] = (key, meta, ranges)
        return meta, ranges

    def _read_file(self, path: Path, start_ms: int | None, end_ms: int | None) -> BarFrame:
        try:
            meta, ranges = self._metadata(path)
            pf = pq.ParquetFile(path, metadata=meta)
            if start_ms is None and end_ms is None:
                table = pf.read()
            else:
                lo, hi = start_ms if start_ms is not None else -(2**62), end_ms if end_ms is not None else 2**62
                groups = [g for g, (a, b) in enumerate(ranges) if b >= lo and a < hi]
                if not groups:
                    return BarFrame.empty()
                table = pf.read_row_groups(groups)
        except FileNotFoundError:
            self._forget(path)
            return BarFrame.empty()
        return BarFrame.from_arrow(table).between(start_ms, end_ms)

    def read(self, symbol: str, timeframe: str, start: datetime | None = None, end: datetime | None = None,
             limit: int | None = None) -> BarFrame:
        """Bars with ``start <= open_time < end``.

        With ``limit``: the first ``limit`` bars from ``start`` when a start is given, else the
        latest ``limit`` bars before ``end``. Only the partitions and row groups that overlap
        the range are read.
        """
        start_ms = None if start is None else to_ms(start)
        end_ms = None if end is None else to_ms(end)
        parts = [p for p in self.partitions(symbol, timeframe)
                 if (start_ms is None or p.end_ms > start_ms) and (end_ms is None or p.start_ms < end_ms)]
        if limit is not None and limit <= 0:
            return BarFrame.empty()
        from_end = limit is not None and start_ms is None
        if from_end:
            parts.reverse()
        frames: list[BarFrame] = []
        count = 0
        for part in parts:
            frame = self._read_file(part.path, start_ms, end_ms)
            if len(frame):
                frames.append(frame)
                count += len(frame)
            if limit is not None and count >= limit:
                break
        if from_end:
            frames.reverse()
        result = BarFrame.concat(frames)
        if limit is not None and len(result) > limit:
            result = result.take(slice(len(result) - limit, None) if from_end else slice(0, limit))
        return result

    def read_bars(self, symbol: str, timeframe: str, start: datetime | None = None,
                  end: datetime | None = None, limit: int | None = None) -> list[Bar]:
        return self.read(symbol, timeframe, start, end, limit).to_bars(symbol, timeframe)

    def last_bar(self, symbol: str, timeframe: str) -> Bar | None:
        bars = self.read(symbol, timeframe, limit=1).to_bars(symbol, timeframe)
        return bars[0] if bars else None

    def first_bar(self, symbol: str, timeframe: str) -> Bar | None:
        for part in self.partitions(symbol, timeframe):
            frame = self._read_file(part.path, None, None)
            if len(frame):
                return frame.take(slice(0, 1)).to_bars(symbol, timeframe)[0]
        return None

    def gaps(self, symbol: str, timeframe: str, start: datetime | None = None,
             end: datetime | None = None) -> list[tuple[datetime, datetime]]:
        """Missing bars as ``[from, to)`` ranges (see :func:`resample.gaps`)."""
        frame = self.read(symbol, timeframe, start, end)
        found = gaps(frame.open_time, timeframe, start_ms=None if start is None else to_ms(start),
                     end_ms=None if end is None else to_ms(end))
        return [(from_ms(a), from_ms(b)) for a, b in found]


def _stat_ms(value: object, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, datetime):
        return to_ms(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return int(value)  # type: ignore[call-overload]
