"""ccxt.pro's binance over WebSocket against the fake Binance replaying the recorded capture.

The books ccxt.pro builds (REST snapshot + diff stream) must equal the replay feed's rebuild
of the same capture (market/feeds/depth.py) at the same update ids — also across a dropped
connection and a lost diff.

Timing: ccxt's REST calls wait for its client-side rate limiter, which charges Binance's
request weights (``exchangeInfo`` 0.2 s, a 1,000-level ``depth`` snapshot 0.5 s, ``trades``
0.1 s), so the first snapshot, a resync's snapshot and a trade backfill arrive up to ~0.7 s
after the stream has started. The fake market meanwhile keeps moving. So a fault that is
about the live book (a dropped connection, a lost diff) is injected only once the feed
delivers books, and every test reads the feed until what it is about has happened (a fresh
snapshot, a resync, the trade after a hole) — never just a fixed number of events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
    # 20x the recorded pace: the 90 s capture lasts ~5 s, and the ~0.7 s a rate-limited REST call
    # can wait is ~14 s of market (~250 trades), well inside the 1,000 trades /trades returns
    server = await FakeBinance(speed=20).start()
    server.player.wait_for = {"btcusdt@depth", "btcusdt@trade"}  # the market moves once both are watched
    yield server
    await server.stop()


def depth_requests(fake: FakeBinance) -> int:
    return [name for name, _ in fake.requests].count("depth")


def next_diff_id(fake: FakeBinance) -> int:
    """The final update id of the next diff the fake has not played yet."""
    return next(b["data"]["u"] for _, b in fake.player.records[fake.player.position:]
                if b.get("data", {}).get("e") == "depthUpdate")


def new_feed(fake: FakeBinance) -> ExchangeFeed:
    return ExchangeFeed(ExchangeFeedConfig(rest_url=fake.rest_url, ws_url=fake.ws_url, depth=DEPTH,
                                           backoff_initial_seconds=0.01, backoff_max_seconds=0.05))


class FeedRun:
    """A feed being read: the books and trades it delivered so far."""

    def __init__(self, fake: FakeBinance, feed: ExchangeFeed | None = None) -> None:
        self.fake = fake
        self.feed = feed or new_feed(fake)
        self.books: list[OrderBook] = []
        self.trades: list[Trade] = []
        self._events = self.feed.events().__aiter__()

    async def until(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        """Read events until ``condition()`` holds (checked after each one)."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    event = await self._events.__anext__()
                    (self.books if isinstance(event, OrderBook) else self.trades).append(event)  # type: ignore[arg-type]
        except TimeoutError:
            raise AssertionError(
                f"not reached in {timeout} s: {len(self.books)} books, {len(self.trades)} trades, "
                f"{self.feed.stats}, requests {[name for name, _ in self.fake.requests]}") from None

    async def close(self) -> None:
        await self.feed.stop()
        await self._events.aclose()  # type: ignore[attr-defined]


@asynccontextmanager
async def feed_run(fake: FakeBinance, feed: ExchangeFeed | None = None) -> AsyncIterator[FeedRun]:
    run = FeedRun(fake, feed)
    try:
        yield run
    finally:
        await run.close()


async def run_feed(fake: FakeBinance, books: int, feed: ExchangeFeed | None = None,
                   ) -> tuple[ExchangeFeed, list[OrderBook], list[Trade]]:
    async with feed_run(fake, feed) as run:
        await run.until(lambda: len(run.books) >= books)
    return run.feed, run.books, run.trades


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
    async with feed_run(fake) as run:
        await run.until(lambda: len(run.books) >= 50)  # live on the first snapshot
        mark, trades_before = fake.player.last_update_id, len(run.trades)
        fake.player.drop_after = fake.player.sent + 1  # the server closes every connection after its next message
        # at most one book beyond `mark` predates the drop: the rest are built on the snapshot fetched after it
        await run.until(lambda: depth_requests(fake) >= 2 and sum(b.seq > mark for b in run.books) >= 100
                        and len(run.trades) >= trades_before + 50)
    feed, books, trades = run.feed, run.books, run.trades
    assert feed.stats.reconnects >= 1 and "closed" in (feed.stats.last_error or "")
    assert depth_requests(fake) == 2  # a fresh snapshot after reconnecting
    assert_books_match(books, reference, snapshots=2)
    ids = [int(t.id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing lost or repeated across the reconnect
    assert all(_same_trade(t, reference["trades"][t.id]) for t in trades)


async def test_a_lost_diff_is_detected_and_the_book_resynced(fake: FakeBinance, reference: dict[str, Any]) -> None:
    async with feed_run(fake) as run:
        await run.until(lambda: len(run.books) >= 20)  # live on the first snapshot
        lost = next_diff_id(fake)  # newer than that snapshot, so only the stream can miss it
        fake.player.skip_diff_at = lost
        await run.until(lambda: run.feed.stats.resyncs >= 1 and sum(b.seq > lost for b in run.books) >= 100)
    feed, books = run.feed, run.books
    assert feed.stats.resyncs == 1 and feed.stats.reconnects == 0
    assert depth_requests(fake) == 2
    assert lost not in {b.seq for b in books}
    assert books[-1].seq > lost
    assert_books_match(books, reference, snapshots=2)  # never a book built over the hole


async def test_missed_trades_are_backfilled_in_order(fake: FakeBinance, reference: dict[str, Any]) -> None:
    recorded = [b["data"]["t"] for _, b in fake.player.records if b.get("data", {}).get("e") == "trade"]
    fake.player.skip_trade_ids = {recorded[60], recorded[61], recorded[62]}
    async with feed_run(fake) as run:
        # the trade after the hole is delivered only once the hole has been dealt with
        await run.until(lambda: bool(run.trades) and int(run.trades[-1].id) >= recorded[63])
    feed, trades = run.feed, run.trades
    assert (feed.stats.trade_gaps, feed.stats.trades_backfilled, feed.stats.trades_lost) == (1, 3, 0)
    ids = [int(t.id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert {recorded[60], recorded[61], recorded[62]} <= set(ids)
    assert ("trades", {"symbol": "BTCUSDT", "limit": "1000"}) in fake.requests
    assert all(_same_trade(t, reference["trades"][t.id]) for t in trades)


async def test_a_crossed_book_is_thrown_away_and_resubscribed(fake: FakeBinance, reference: dict[str, Any]) -> None:
    fake.player.crossed_snapshots = 1  # the first snapshot is corrupt: ccxt builds a crossed book on it
    feed, books, _ = await run_feed(fake, books=100)
    assert feed.stats.resyncs >= 1 and "crossed" in (feed.stats.last_error or "")
    assert depth_requests(fake) >= 2
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
