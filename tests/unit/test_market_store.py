"""The candle store: exact round trips, upserts, ranges and limits, fencing, gaps, resampling."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from tests.market_support import COINBASE_BTC_1M, candle_rows
from tradepilot.market.frame import BarDataError, BarFrame, to_ms
from tradepilot.market.resample import gaps, resample
from tradepilot.market.store import CandleStore, StaleWriter
from tradepilot.market.types import Bar

T0 = datetime(2024, 1, 31, 22, 0, tzinfo=timezone.utc)  # two hours before a month boundary


def bar(i: int, *, price: str = "100.25", volume: str = "1.5", tf: str = "1m", start: datetime = T0) -> Bar:
    p = Decimal(price) + i
    return Bar("BTC/USDT", tf, start + timedelta(minutes=i), p, p + Decimal("0.5"), p - Decimal("0.25"), p,
               Decimal(volume))


def test_bars_come_back_exactly_across_partitions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CandleStore(tmp_path, "sim")
    bars = [bar(i) for i in range(240)]  # crosses 2024-02-01 00:00: two monthly files
    assert store.write("BTC/USDT", "1m", bars) == 240
    assert [p.path.name for p in store.partitions("BTC/USDT", "1m")] == ["2024-01.parquet", "2024-02.parquet"]
    assert store.read_bars("BTC/USDT", "1m") == bars
    # the files are plain Parquet with exact decimals: any reader sees the same values
    table = pq.read_table(store.partitions("BTC/USDT", "1m")[1].path)
    assert table.column("close").to_pylist()[0] == Decimal("220.25")
    assert str(table.schema.field("close").type) == "decimal128(18, 2)"


def test_ranges_and_limits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CandleStore(tmp_path, "sim")
    bars = [bar(i) for i in range(240)]
    store.write("BTC/USDT", "1m", bars)
    start, end = T0 + timedelta(minutes=100), T0 + timedelta(minutes=150)
    assert store.read_bars("BTC/USDT", "1m", start, end) == bars[100:150]  # [start, end)
    assert store.read_bars("BTC/USDT", "1m", start, end, limit=7) == bars[100:107]  # first 7 from start
    assert store.read_bars("BTC/USDT", "1m", None, end, limit=7) == bars[143:150]  # latest 7 before end
    assert store.read_bars("BTC/USDT", "1m", limit=3) == bars[-3:]
    assert store.last_bar("BTC/USDT", "1m") == bars[-1]
    assert store.first_bar("BTC/USDT", "1m") == bars[0]
    assert store.read_bars("ETH/USDT", "1m") == [] and store.last_bar("ETH/USDT", "1m") is None


def test_upsert_replaces_by_open_time_and_widens_scales(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CandleStore(tmp_path, "sim")
    store.write("BTC/USDT", "1m", [bar(i) for i in range(10)])
    finer = Bar("BTC/USDT", "1m", T0 + timedelta(minutes=3), Decimal("1.0001"), Decimal("2.123456789"),
                Decimal("0.5"), Decimal("1.5"), Decimal("0.00000001"))
    store.write("BTC/USDT", "1m", [finer])
    got = store.read_bars("BTC/USDT", "1m")
    assert len(got) == 10 and got[3] == finer
    assert got[2] == bar(2) and got[4] == bar(4)  # neighbours untouched, re-scaled exactly


def test_inconsistent_or_misaligned_bars_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CandleStore(tmp_path, "sim")
    bad = Bar("BTC/USDT", "1m", T0, Decimal(10), Decimal(9), Decimal(8), Decimal(10), Decimal(1))  # high < close
    with pytest.raises(BarDataError):
        store.write("BTC/USDT", "1m", [bad])
    with pytest.raises(ValueError, match="multiples of 1h"):
        store.write("BTC/USDT", "1h", [bar(1, tf="1h")])
    with pytest.raises(BarDataError):
        BarFrame.from_bars([Bar("X/Y", "1m", T0, Decimal("1e-19"), Decimal(1), Decimal("1e-19"), Decimal(1),
                                Decimal(1))])


def test_a_writer_with_an_older_fencing_token_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CandleStore(tmp_path, "sim")
    store.write("BTC/USDT", "1m", [bar(0)], fence=4)
    store.write("BTC/USDT", "1m", [bar(1)], fence=5)  # a newer owner
    with pytest.raises(StaleWriter):
        store.write("BTC/USDT", "1m", [bar(2)], fence=4)  # the old owner, after losing its lease
    store.write("BTC/USDT", "1m", [bar(2)])  # administrative writes (imports) carry no token
    assert len(store.read_bars("BTC/USDT", "1m")) == 3


def test_gaps_are_the_missing_periods(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CandleStore(tmp_path, "sim")
    store.write("BTC/USDT", "1m", [bar(i) for i in (0, 1, 2, 5, 6, 9)])
    m = lambda i: T0 + timedelta(minutes=i)  # noqa: E731
    assert store.gaps("BTC/USDT", "1m") == [(m(3), m(5)), (m(7), m(9))]
    assert store.gaps("BTC/USDT", "1m", m(-2), m(12)) == [(m(-2), m(0)), (m(3), m(5)), (m(7), m(9)), (m(10), m(12))]
    # the real Coinbase file has holes; gap detection finds exactly the missing minutes
    rows = candle_rows(COINBASE_BTC_1M)
    times = [to_ms(r.time) for r in rows]
    expected = [(a + 60_000, b) for a, b in zip(times, times[1:], strict=False) if b - a > 60_000]
    assert expected and gaps(times, "1m") == expected


def test_resampling_matches_a_plain_aggregation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    bars, price = [], Decimal("100")
    for i in range(600):
        if rng.random() < 0.1:
            continue  # holes, so periods are built from whatever bars exist
        o = price
        c = o + Decimal(rng.randint(-50, 50)) / 100
        bars.append(Bar("BTC/USDT", "1m", T0 + timedelta(minutes=i), o, max(o, c) + Decimal("0.07"),
                        min(o, c) - Decimal("0.03"), c, Decimal(rng.randint(0, 10**6)) / 10**4))
        price = c
    frame = BarFrame.from_bars(bars)
    for tf, minutes in (("5m", 5), ("1h", 60), ("4h", 240), ("1d", 1440)):
        groups: dict[datetime, list[Bar]] = {}
        for b in bars:
            ms = to_ms(b.open_time) // (minutes * 60_000) * (minutes * 60_000)
            groups.setdefault(datetime.fromtimestamp(ms / 1000, tz=timezone.utc), []).append(b)
        expected = [Bar("BTC/USDT", tf, t, g[0].open, max(x.high for x in g), min(x.low for x in g), g[-1].close,
                        sum((x.volume for x in g), Decimal(0))) for t, g in groups.items()]
        assert resample(frame, tf).to_bars("BTC/USDT", tf) == expected
    store = CandleStore(tmp_path, "sim")
    store.write("BTC/USDT", "1m", bars[:300])
    store.derive("BTC/USDT", "1m", bars[0].open_time, bars[299].open_time + timedelta(minutes=1))
    store.write("BTC/USDT", "1m", bars[300:])  # the rest arrives later, mid-hour
    store.derive("BTC/USDT", "1m", bars[300].open_time, bars[-1].open_time + timedelta(minutes=1))
    assert store.read_bars("BTC/USDT", "1h") == resample(frame, "1h").to_bars("BTC/USDT", "1h")
