"""ccxt's binance (the real library) over REST against the fake Binance in tests/fakes."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes.binance import KLINES, FakeBinance
from tradepilot.market.feeds.ccxt_errors import (
    ExchangeBadSymbol,
    ExchangeRateLimited,
    ExchangeTemporaryError,
    ccxt_boundary,
)
from tradepilot.market.feeds.ccxt_feed import ExchangeFeed, ExchangeFeedConfig
from tradepilot.market.feeds.ccxt_venues import create_exchange, to_decimal
from tradepilot.market.feeds.replay import ReplayFeed
from tradepilot.market.types import OrderBook, Trade

pytestmark = pytest.mark.slow

CAPTURE = KLINES[("BTCUSDT", "1h")].parents[1] / "binance_spot_capture" / "btcusdt_20240808_first90s.gz"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    server = await FakeBinance(speed=0).start()
    yield server
    await server.stop()


@pytest.fixture
async def exchange(fake: FakeBinance) -> AsyncIterator[Any]:
    ex = create_exchange("binance", websocket=False, rest_url=fake.rest_url)
    yield ex
    await ex.close()


async def replay_books(depth: int) -> dict[int, OrderBook]:
    feed = ReplayFeed.from_paths([CAPTURE], speed=0, depth=depth)
    return {e.seq: e async for e in feed.events() if isinstance(e, OrderBook)}


async def test_markets_become_instruments_with_exact_filters(fake: FakeBinance) -> None:
    fake.fail_next("exchangeInfo", 502)  # retried: nothing starts without the venue's filters
    symbols = ("BTC/USDT", "ETH/USDT", "LUNC/USDT", "NOPE/USDT")
    feed = ExchangeFeed(ExchangeFeedConfig(rest_url=fake.rest_url, websocket=False, symbols=symbols,
                                           backoff_initial_seconds=0.01))
    try:
        instruments = {i.symbol: i for i in await feed.instruments()}
        everything = await feed.all_instruments()
    finally:
        await feed.stop()
    assert list(instruments) == ["BTC/USDT", "ETH/USDT", "LUNC/USDT"] and len(everything) == 3
    assert feed.stats.reconnects == 1 and "NOPE/USDT market" in feed.stats.failed
    btc = instruments["BTC/USDT"]
    assert (btc.venue, btc.base, btc.quote) == ("binance", "BTC", "USDT")
    assert (btc.tick_size, btc.step_size, btc.min_notional, btc.status) == (
        Decimal("0.01"), Decimal("0.00001"), Decimal(5), "trading")
    assert instruments["ETH/USDT"].step_size == Decimal("0.0001")
    assert instruments["LUNC/USDT"].status == "halted"
    assert {name for name, _ in fake.requests} == {"exchangeInfo"}  # nothing else (no sapi, no futures)


async def test_fetch_ohlcv_returns_the_served_candles(exchange: Any) -> None:
    since = int(datetime.fromisoformat("2017-07-02T00:00:00+00:00").timestamp() * 1000)
    rows = await exchange.fetch_ohlcv("BTC/USDT", "1h", since, 5)
    with KLINES[("BTCUSDT", "1h")].open() as handle:
        expected = [r for r in csv.DictReader(handle) if r["timestamp"] >= "2017-07-02T00:00:00Z"][:5]
    assert [r[0] for r in rows] == [since + i * 3_600_000 for i in range(5)]
    assert [[to_decimal(x) for x in r[1:6]] for r in rows] == [
        [Decimal(e[c]) for c in ("open", "high", "low", "close", "volume")] for e in expected]


async def test_fetch_order_book_equals_the_replay_rebuild_at_the_same_update_id(fake: FakeBinance, exchange: Any) -> None:
    fake.player.fast_forward(1200)
    book = await exchange.fetch_order_book("BTC/USDT", 50)
    reference = (await replay_books(depth=50))[book["nonce"]]
    assert book["nonce"] == fake.player.last_update_id
    assert [(to_decimal(p), to_decimal(q)) for p, q in book["bids"]] == list(reference.bids)
    assert [(to_decimal(p), to_decimal(q)) for p, q in book["asks"]] == list(reference.asks)


async def test_fetch_trades_returns_the_recorded_trades(fake: FakeBinance, exchange: Any) -> None:
    fake.player.fast_forward(600)
    trades = await exchange.fetch_trades("BTC/USDT", None, 100)
    recorded = fake.player.trades[-100:]
    assert [t["id"] for t in trades] == [str(r["t"]) for r in recorded]
    assert [to_decimal(t["price"]) for t in trades] == [Decimal(r["p"]) for r in recorded]
    assert [t["side"] for t in trades] == ["sell" if r["m"] else "buy" for r in recorded]


async def test_http_errors_arrive_translated(fake: FakeBinance, exchange: Any) -> None:
    await exchange.load_markets()
    fake.fail_next("klines", 429, {"code": -1003, "msg": "Too many requests"})
    with pytest.raises(ExchangeRateLimited), ccxt_boundary("binance"):
        await exchange.fetch_ohlcv("BTC/USDT", "1h", None, 5)
    fake.fail_next("depth", 503, {"code": -1001, "msg": "Service unavailable"})
    with pytest.raises(ExchangeTemporaryError), ccxt_boundary("binance"):
        await exchange.fetch_order_book("BTC/USDT")
    with pytest.raises(ExchangeBadSymbol), ccxt_boundary("binance"):  # the venue's own -1121 answer
        await exchange.publicGetDepth({"symbol": "NOPEUSDT"})
    with pytest.raises(ExchangeBadSymbol), ccxt_boundary("binance"):  # not listed: ccxt refuses it
        await exchange.fetch_trades("NOPE/USDT")


async def test_polling_feed_retries_and_follows_the_market(fake: FakeBinance) -> None:
    fake.player.fast_forward(400)
    fake.fail_next("depth", 503)
    feed = ExchangeFeed(ExchangeFeedConfig(rest_url=fake.rest_url, websocket=False, poll_seconds=0.05,
                                           depth=20, backoff_initial_seconds=0.01))
    assert not feed.streaming
    events = feed.events().__aiter__()
    books: list[OrderBook] = []
    trades: list[Trade] = []

    async def until(done: Any) -> None:
        while not done():
            event = await asyncio.wait_for(events.__anext__(), timeout=20)
            (books if isinstance(event, OrderBook) else trades).append(event)  # type: ignore[arg-type]

    def caught_up() -> bool:
        return bool(books and trades) and books[-1].seq == fake.player.last_update_id \
            and int(trades[-1].id) == fake.player.trades[-1]["t"]

    try:
        await until(caught_up)
        assert feed.stats.reconnects == 1 and not feed.stats.failed
        fake.player.fast_forward(300)  # the market moves on between polls
        await until(caught_up)
    finally:
        await feed.stop()
    ids = [int(t.id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # every trade once, in order, none lost
    assert ids[0] == fake.player.trades[0]["t"] and feed.stats.trade_gaps == 0
    assert all(a.seq < b.seq for a, b in zip(books, books[1:]))
    reference = await replay_books(depth=20)
    assert (books[-1].bids, books[-1].asks) == (reference[books[-1].seq].bids, reference[books[-1].seq].asks)
