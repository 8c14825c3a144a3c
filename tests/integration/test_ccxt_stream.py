"""ccxt.pro's binance over WebSocket against the fake Binance replaying the recorded capture.

The books ccxt.pro builds (REST snapshot + diff stream) must equal the replay feed's rebuild
of the same capture (market/feeds/depth.py) at the same update ids — also across a dropped
connection and a lost diff.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakes.binance import CAPTURE, FakeBinance
from tests.support import off_loop
from tradepilot.market.feeds.ccxt_feed import ExchangeFeed, ExchangeFeedConfig
from tradepilot.market.feeds.ccxt_venues import create_exchange, to_decimal
from tradepilot.market.feeds.replay import ReplayFeed
from tradepilot.market.types import OrderBook, Trade

pytestmark = pytest.mark.slow

DEPTH = 50


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """The replay feed's books by update id, and its trades by id."""
    async def play() -> dict[str, Any]:
        feed = ReplayFeed.from_paths([CAPTURE], speed=0, depth=DEPTH)
        books, trades = {}, {}
        async for event in feed.events():
            if isinstance(event, OrderBook):
                books[event.seq] = event
            else:
                trades[event.id] = event
        return {"books": books, "trades": trades}

    return off_loop(asyncio.run, play())


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    server = await FakeBinance(speed=200).start()
    server.player.wait_for = {"btcusdt@depth", "btcusdt@trade"}  # the market moves once both are watched
    yield server
    await server.stop()


def diff_ids(fake: FakeBinance) -> list[int]:
    return [b["data"]["u"] for _, b in fake.player.records if b.get("data", {}).get("e") == "depthUpdate"]


async def run_feed(fake: FakeBinance, books: int, feed: ExchangeFeed | None = None,
                   ) -> tuple[ExchangeFeed, list[OrderBook], list[Trade]]:
    feed = feed or ExchangeFeed(ExchangeFeedConfig(rest_url=fake.rest_url, ws_url=fake.ws_url, depth=DEPTH,
                                                   backoff_initial_seconds=0.01, backoff_max_seconds=0.05))
    got_books: list[OrderBook] = []
    got_trades: list[Trade] = []
    events = feed.events().__aiter__()
    try:
        while len(got_books) < books:
            event = await asyncio.wait_for(events.__anext__(), timeout=30)
            (got_books if isinstance(event, OrderBook) else got_trades).append(event)  # type: ignore[arg-type]
    finally:
        await feed.stop()
        await events.aclose()  # type: ignore[attr-defined]
    return feed, got_books, got_trades


def assert_books_match(books: list[OrderBook], reference: dict[str, Any], snapshots: int) -> None:
    assert all(a.seq < b.seq for a, b in zip(books, books[1:]))
    for book in books:
        expected = reference["books"][book.seq]  # a KeyError: ccxt's book is at an id the replay never was
        assert (book.bids, book.asks) == (expected.bids, expected.asks), f"book differs at update {book.seq}"
    # a book straight from a REST snapshot has no exchange time (it is stamped on arrival); the others do
    assert sum(b.ts != reference["books"][b.seq].ts for b in books) <= snapshots


def _same_trade(ours: Trade, replayed: Trade) -> bool:
    return (ours.id, ours.price, ours.quantity, ours.side, ours.ts) == (
        replayed.id, replayed.price, replayed.quantity, replayed.side, replayed.ts)


async def test_ccxt_pro_watch_order_book_builds_the_replay_books(fake: FakeBinance, reference: dict[str, Any]) -> None:
    fake.player.wait_for = set()  # only the book is watched here
    exchange = create_exchange("binance", rest_url=fake.rest_url, ws_url=fake.ws_url)
    seen = 0
    try:
        while seen < 150:
            book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), timeout=30)
            expected = reference["books"][book["nonce"]]
            bids = tuple((to_decimal(p), to_decimal(q)) for p, q in book["bids"][:DEPTH])
            asks = tuple((to_decimal(p), to_decimal(q)) for p, q in book["asks"][:DEPTH])
            assert (bids, asks) == (expected.bids, expected.asks), f"differs at update {book['nonce']}"
            seen += 1
    finally:
        await exchange.close()
    assert [name for name, _ in fake.requests].count("depth") == 1  # one snapshot, then diffs only


async def test_exchange_feed_books_and_trades_equal_the_replay(fake: FakeBinance, reference: dict[str, Any]) -> None:
    feed, books, trades = await run_feed(fake, books=200)
    assert feed.streaming and feed.stats.resyncs == 0 and feed.stats.reconnects == 0
    assert_books_match(books, reference, snapshots=1)
    assert len(trades) > 100
    assert all(_same_trade(t, reference["trades"][t.id]) for t in trades)
    ids = [int(t.id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


async def test_reconnects_after_the_server_drops_the_connection(fake: FakeBinance, reference: dict[str, Any]) -> None:
    fake.player.drop_after = 200
    feed, books, trades = await run_feed(fake, books=200)
    assert feed.stats.reconnects >= 1 and "closed" in (feed.stats.last_error or "")
    assert [name for name, _ in fake.requests].count("depth") == 2  # a fresh snapshot after reconnecting
    assert_books_match(books, reference, snapshots=2)
    ids = [int(t.id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing lost or repeated across the reconnect
    assert all(_same_trade(t, reference["trades"][t.id]) for t in trades)


async def test_a_lost_diff_is_detected_and_the_book_resynced(fake: FakeBinance, reference: dict[str, Any]) -> None:
    lost = diff_ids(fake)[120]
    fake.player.skip_diff_at = lost
    feed, books, _ = await run_feed(fake, books=200)
    assert feed.stats.resyncs == 1 and feed.stats.reconnects == 0
    assert [name for name, _ in fake.requests].count("depth") == 2
    assert lost not in {b.seq for b in books}
    assert books[-1].seq > lost
    assert_books_match(books, reference, snapshots=2)  # never a book built over the hole


async def test_missed_trades_are_backfilled_in_order(fake: FakeBinance, reference: dict[str, Any]) -> None:
    recorded = [b["data"]["t"] for _, b in fake.player.records if b.get("data", {}).get("e") == "trade"]
    fake.player.skip_trade_ids = {recorded[60], recorded[61], recorded[62]}
    feed, _, trades = await run_feed(fake, books=200)
    assert (feed.stats.trade_gaps, feed.stats.trades_backfilled, feed.stats.trades_lost) == (1, 3, 0)
    ids = [int(t.id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert {recorded[60], recorded[61], recorded[62]} <= set(ids)
    assert ("trades", {"symbol": "BTCUSDT", "limit": "1000"}) in fake.requests


async def test_a_crossed_book_is_thrown_away_and_resubscribed(fake: FakeBinance, reference: dict[str, Any]) -> None:
    fake.player.crossed_snapshots = 1  # the first snapshot is corrupt: ccxt builds a crossed book on it
    feed, books, _ = await run_feed(fake, books=100)
    assert feed.stats.resyncs >= 1 and "crossed" in (feed.stats.last_error or "")
    assert [name for name, _ in fake.requests].count("depth") >= 2
    assert all(b.bids[0][0] < b.asks[0][0] for b in books)  # none of the crossed ones got out
    assert_books_match(books, reference, snapshots=2)


async def test_a_stopped_feed_starts_a_new_session_where_the_last_one_ended(
        fake: FakeBinance, reference: dict[str, Any]) -> None:
    feed, first_books, first_trades = await run_feed(fake, books=60)
    _, books, trades = await run_feed(fake, books=60, feed=feed)  # e.g. the feed lease won back
    assert books[0].seq > first_books[-1].seq
    assert_books_match(books, reference, snapshots=1)
    ids = [int(t.id) for t in first_trades + trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing twice, nothing lost
