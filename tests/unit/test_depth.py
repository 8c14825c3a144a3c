"""Binance snapshot + diff book rebuilding (market/feeds/depth.py) and the recorded capture."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tradepilot.market.feeds.capture import read_capture
from tradepilot.market.feeds.depth import (
    DepthDiff,
    DepthSnapshot,
    DepthSync,
    DiffResult,
    LocalBook,
    SnapshotResult,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "market" / "binance_spot_capture"
SLICE = DATA / "btcusdt_20240808_first90s.gz"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "market" / "binance_spot_capture"


def d(value: str) -> Decimal:
    return Decimal(value)


def snap(last_id: int, bids=(("100", "1"), ("99", "2")), asks=(("101", "1"), ("102", "3"))) -> DepthSnapshot:
    return DepthSnapshot(last_id, tuple((d(p), d(q)) for p, q in bids), tuple((d(p), d(q)) for p, q in asks))


def diff(first: int, final: int, bids=(), asks=()) -> DepthDiff:
    return DepthDiff(first, final, tuple((d(p), d(q)) for p, q in bids), tuple((d(p), d(q)) for p, q in asks))


def test_buffers_until_snapshot_then_drops_stale_and_applies_the_straddling_diff() -> None:
    sync = DepthSync()
    assert sync.on_diff(diff(90, 95, bids=[("98", "5")])) is DiffResult.BUFFERED  # u <= 100: dropped later
    assert sync.on_diff(diff(96, 104, bids=[("100", "7")])) is DiffResult.BUFFERED  # U <= 101 <= u: first
    assert sync.on_diff(diff(105, 106, asks=[("101", "0")])) is DiffResult.BUFFERED
    assert sync.on_snapshot(snap(100)) is SnapshotResult.SYNCED
    assert sync.last_update_id == 106
    bids, asks = sync.book.top(5)
    assert bids == ((d("100"), d("7")), (d("99"), d("2")))  # the stale diff's 98 never applied
    assert asks == ((d("102"), d("3")),)  # quantity 0 removed the level


def test_stale_diffs_after_sync_are_dropped_and_gaps_discard_the_book() -> None:
    sync = DepthSync()
    sync.on_snapshot(snap(100))
    assert sync.on_diff(diff(95, 100)) is DiffResult.STALE
    assert sync.on_diff(diff(101, 103, bids=[("100.5", "1")])) is DiffResult.APPLIED
    assert sync.book.best_bid == d("100.5")
    # next U must be previous u + 1 = 104; 105 means 104 was lost
    assert sync.on_diff(diff(105, 107)) is DiffResult.GAP
    assert not sync.synced and sync.resyncs == 1 and len(sync.book) == 0
    assert sync.buffered == 1  # the gap's diff waits for the next snapshot
    assert sync.on_diff(diff(108, 110, asks=[("103", "1")])) is DiffResult.BUFFERED
    assert sync.on_snapshot(snap(107)) is SnapshotResult.SYNCED  # 105..107 is stale now, 108 applies
    assert sync.last_update_id == 110 and sync.book.top(5)[1][-1] == (d("103"), d("1"))


def test_a_later_first_diff_than_the_snapshot_allows_is_a_gap() -> None:
    sync = DepthSync()
    sync.on_snapshot(snap(100))
    assert sync.on_diff(diff(103, 104)) is DiffResult.GAP  # 101..102 missing


def test_snapshot_older_than_the_buffer_is_refused() -> None:
    sync = DepthSync()
    sync.on_diff(diff(200, 210))
    assert sync.on_snapshot(snap(150)) is SnapshotResult.TOO_OLD
    assert not sync.synced and sync.buffered == 1
    assert sync.on_snapshot(snap(205)) is SnapshotResult.SYNCED
    assert sync.last_update_id == 210


def test_a_gap_inside_the_buffer_asks_for_another_snapshot() -> None:
    sync = DepthSync()
    sync.on_diff(diff(101, 102))
    sync.on_diff(diff(104, 105))  # 103 lost while buffering
    assert sync.on_snapshot(snap(100)) is SnapshotResult.GAP
    assert not sync.synced and sync.buffered == 1


def test_local_book_orders_levels_and_detects_crossing() -> None:
    book = LocalBook()
    book.load([(d("10"), d("1")), (d("12"), d("1")), (d("11"), d("1"))], [(d("14"), d("1")), (d("13"), d("2"))])
    bids, asks = book.top(2)
    assert [p for p, _ in bids] == [d("12"), d("11")] and [p for p, _ in asks] == [d("13"), d("14")]
    assert not book.crossed
    book.update([(d("13.5"), d("1"))], [])
    assert book.crossed


def _rebuild(paths: list[Path]) -> tuple[int, int, DepthSync]:
    sync = DepthSync()
    states = crossed = 0
    for record in read_capture(paths):
        if record.kind == "snapshot":
            assert sync.on_snapshot(record.data) is SnapshotResult.SYNCED  # type: ignore[arg-type]
        elif record.kind == "depth":
            result = sync.on_diff(record.data)  # type: ignore[arg-type]
            assert result is not DiffResult.GAP
            if result is not DiffResult.APPLIED:
                continue
        else:
            continue
        states += 1
        crossed += sync.book.crossed
        bids, asks = sync.book.top(1)
        assert bids and asks and bids[0][0] < asks[0][0]
    return states, crossed, sync


def test_capture_slice_rebuilds_into_uncrossed_books() -> None:
    states, crossed, sync = _rebuild([SLICE])
    # 897 diffs: 2 older than the snapshot are dropped, 1 is applied with it → 1 + 894 states
    assert (states, crossed) == (895, 0)
    assert sync.resyncs == 0


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the repository")
def test_full_capture_rebuilds_into_about_6500_uncrossed_books() -> None:
    states, crossed, sync = _rebuild(sorted(SHARED.glob("btcusdt_*.gz")))
    assert crossed == 0 and sync.resyncs == 0
    assert 6400 <= states <= 6600  # the README's "~6,500 uncrossed book states"
