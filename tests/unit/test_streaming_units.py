"""Streaming building blocks: the bounded, conflating send queue; book deltas; channel names."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal

import pytest

from tradepilot.streaming.book import BookCursor, BookFeed, apply_delta, diff_levels
from tradepilot.streaming.client import SendQueue
from tradepilot.streaming.protocol import (
    ChannelKind,
    ErrorCode,
    ProtocolError,
    data_frame,
    dumps,
    market_channel,
    parse_channel,
)


def drain(queue: SendQueue) -> list[tuple[str | None, object]]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_queue_refuses_past_its_limit_but_slots_never_overflow() -> None:
    queue = SendQueue(limit=3)
    assert all(queue.put(f"f{i}") for i in range(3))
    assert not queue.put("f3")  # the caller disconnects the client
    for i in range(100):
        queue.put_latest("ticker:BTC/USDT", f"t{i}")
    assert queue.pending_frames == 3 and len(queue) == 4 and queue.conflated == 99
    assert drain(queue) == [(None, "f0"), (None, "f1"), (None, "f2"), ("ticker:BTC/USDT", "t99")]
    assert queue.put("again")


def test_conflated_value_keeps_its_place_and_the_newest_value() -> None:
    queue = SendQueue(limit=10)
    queue.put_latest("ticker:A", "a1")
    queue.put("trade1")
    queue.put_latest("ticker:B", "b1")
    queue.put_latest("ticker:A", "a2")
    assert drain(queue) == [("ticker:A", "a2"), (None, "trade1"), ("ticker:B", "b1")]
    queue.put_latest("ticker:A", "a3")  # taken, so a new value queues again
    assert drain(queue) == [("ticker:A", "a3")]


async def test_wait_returns_when_something_is_queued() -> None:
    queue = SendQueue(limit=2)
    waiter = asyncio.create_task(queue.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.put_latest("k", 1)
    await asyncio.wait_for(waiter, 1)


def book_payload(bids: dict[str, str], asks: dict[str, str]) -> dict[str, object]:
    return {"venue": "v", "symbol": "BTC/USDT", "bids": [[Decimal(p), q] for p, q in bids.items()],
            "asks": [[p, Decimal(q)] for p, q in asks.items()], "ts": "t"}


def test_diff_then_apply_rebuilds_the_book() -> None:
    rng = random.Random(7)
    old: dict[str, str] = {}
    for _ in range(200):
        new = {str(100 + rng.randrange(60)): str(rng.randrange(1, 9)) for _ in range(rng.randrange(0, 50))}
        assert apply_delta(old, diff_levels(old, new)) == new
        old = new


def test_equal_prices_in_different_notation_are_one_level() -> None:
    feed = BookFeed()
    feed.update(book_payload({"100.0": "1"}, {}))
    cursor = BookCursor(dumps("orderbook:BTC/USDT"))
    snapshot = json.loads(cursor.render(feed) or "")
    assert snapshot["data"]["bids"] == [["100", "1"]]
    feed.update(book_payload({"100.00": "1.0"}, {}))
    assert cursor.render(feed) is None  # nothing visible changed: no delta, no seq used


def test_lagging_cursor_gets_one_delta_to_the_newest_book_and_in_step_cursors_share_it() -> None:
    feed = BookFeed()
    feed.update(book_payload({"100": "1"}, {"101": "1"}))
    fast, slow = BookCursor('"b"'), BookCursor('"b"')
    fast.render(feed), slow.render(feed)
    for qty in ("2", "3", "4"):
        feed.update(book_payload({"100": qty}, {"101": "1"}))
        fast_frame = json.loads(fast.render(feed) or "")
    slow_frame = json.loads(slow.render(feed) or "")  # skipped two books: still one correct delta
    assert slow_frame["type"] == "delta" and slow_frame["seq"] == 2 and slow_frame["data"]["bids"] == [["100", "4"]]
    assert fast_frame["seq"] == 4
    other = BookCursor('"b"')
    other.render(feed)
    feed.update(book_payload({"100": "5"}, {}))
    a, b = fast.render(feed), other.render(feed)
    assert a is not None and b is not None and a.split('"data":')[1] == b.split('"data":')[1]


def test_resync_sends_a_snapshot_with_the_next_seq() -> None:
    feed = BookFeed()
    feed.update(book_payload({"1": "1"}, {}))
    cursor = BookCursor('"b"')
    cursor.render(feed)
    cursor.reset()
    frame = json.loads(cursor.render(feed) or "")
    assert frame["type"] == "snapshot" and frame["seq"] == 2


@pytest.mark.parametrize(("raw", "name"), [
    ("ticker:BTC/USDT", "ticker:BTC/USDT"), ("ticker:btc-usdt", "ticker:BTC/USDT"),
    ("trades:ETH/BTC", "trades:ETH/BTC"), ("orderbook:1000SHIB/USDT", "orderbook:1000SHIB/USDT"),
    ("candles:BTC/USDT:1h", "candles:BTC/USDT:1h"), ("account", "account"),
])
def test_channel_names_are_canonical(raw: str, name: str) -> None:
    assert parse_channel(raw).name == name


@pytest.mark.parametrize("raw", ["", "ticker", "ticker:", "ticker:BTC", "candles:BTC/USDT:2m", "account:x",
                                 "weather:BTC/USDT", "ticker:BTC/USDT/EUR", 42, None, "ticker:" + "A" * 80])
def test_bad_channels_are_unknown_channel(raw: object) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_channel(raw)
    assert info.value.code is ErrorCode.UNKNOWN_CHANNEL


def test_bus_topics_map_to_channels() -> None:
    assert market_channel("market.book.BTC-USDT").name == "orderbook:BTC/USDT"  # type: ignore[union-attr]
    assert market_channel("market.candle.BTC-USDT.5m").kind is ChannelKind.CANDLES  # type: ignore[union-attr]
    assert market_channel("market.trade.BTC-USDT").name == "trades:BTC/USDT"  # type: ignore[union-attr]
    assert market_channel("market.other.BTC-USDT") is None and market_channel("user.x.orders") is None


def test_frames_are_json_with_exact_decimals() -> None:
    frame = data_frame("ticker", dumps("ticker:BTC/USDT"), 3, dumps({"last": Decimal("1E-8"), "bid": Decimal("10.50")}))
    assert json.loads(frame) == {"type": "ticker", "channel": "ticker:BTC/USDT", "seq": 3,
                                 "data": {"last": "0.00000001", "bid": "10.5"}}


async def test_manager_streams_conflate_prices_and_keep_every_trade() -> None:
    from types import SimpleNamespace

    from tradepilot.core.bus import InProcessBus
    from tradepilot.core.events import Event, Topics
    from tradepilot.streaming.manager import BusStream, StreamOverflow

    bus = InProcessBus()
    runtime = SimpleNamespace(bus=bus)
    prices: BusStream[dict] = BusStream(runtime, [Topics.market("ticker", "BTC-USDT")],  # type: ignore[arg-type]
                                        lambda e: (e.topic, e.payload))
    trades: BusStream[dict] = BusStream(runtime, [Topics.market("trade", "BTC-USDT")],  # type: ignore[arg-type]
                                        lambda e: (None, e.payload), limit=3)
    async with prices, trades:
        for n in range(5):
            await bus.publish(Event(topic=Topics.market("ticker", "BTC-USDT"), type="t", payload={"n": n}))
        await bus.drain()
        assert await anext(prices) == {"n": 4}  # a slow reader sees the newest
        for n in range(3):
            await bus.publish(Event(topic=Topics.market("trade", "BTC-USDT"), type="t", payload={"n": n}))
        await bus.drain()
        assert [await anext(trades) for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
        for n in range(4):
            await bus.publish(Event(topic=Topics.market("trade", "BTC-USDT"), type="t", payload={"n": n}))
        await bus.drain()
        with pytest.raises(StreamOverflow):
            await anext(trades)


class FastTransport:
    """A socket with the synchronous fast path; ``writable`` plays flow control."""

    def __init__(self) -> None:
        self.writable = True
        self.now: list[str] = []  # written by send_now
        self.later: list[str] = []  # written by the writer task (send_text)
        self.gate: asyncio.Event | None = None  # set: send_text waits for it

    async def send_text(self, text: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.later.append(text)

    async def close(self, code: int, reason: str) -> None:
        return None

    def abort(self) -> None:
        return None

    def can_send_now(self) -> bool:
        return self.writable

    def send_now(self, text: str) -> bool:
        if not self.writable:
            return False
        self.now.append(text)
        return True


def fast_client(transport: object, sent: list[int] | None = None, queue_size: int = 10):  # type: ignore[no-untyped-def]
    from tradepilot.streaming.client import StreamClient

    client = StreamClient(transport, ip=None, queue_size=queue_size,  # type: ignore[arg-type]
                          on_sent=(sent if sent is not None else []).append, on_closed=lambda c, r: None)
    client.channels["ticker:A/B"] = parse_channel("ticker:A/B")
    client.channels["orderbook:A/B"] = parse_channel("orderbook:A/B")
    return client


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_client_is_written_at_once_and_a_paused_one_conflates_in_order() -> None:
    transport, sent = FastTransport(), []
    client = fast_client(transport, sent)
    client.start()
    assert client.push_latest("ticker:A/B", "a1") and client.send("r1")
    assert transport.now == ["a1", "r1"] and not client.queue and sent == [1]  # push: the caller counts
    transport.writable = False  # the peer stopped reading: flow control paused the socket
    assert not client.push_latest("ticker:A/B", "a2")
    assert not client.push("t1")
    assert not client.push_latest("ticker:A/B", "a3")
    transport.writable = True
    assert not client.push_latest("ticker:A/B", "a4")  # something is queued: behind it, never ahead
    assert transport.now == ["a1", "r1"] and client.queue.conflated == 2
    await settle()  # the writer task drains the queue: the newest ticker in its first place
    assert transport.later == ["a4", "t1"] and sent == [1, 2]
    assert client.push_latest("ticker:A/B", "a5") and transport.now[-1] == "a5"  # idle again: at once
    await client.wait_closed()


async def test_no_frame_overtakes_a_send_in_progress() -> None:
    transport = FastTransport()
    transport.gate = asyncio.Event()
    client = fast_client(transport)
    client.start()
    transport.writable = False
    client.push("t1")
    await settle()  # the writer is inside send_text, waiting
    transport.writable = True
    assert client.sending_since is not None
    assert not client.push("t2") and not client.push_latest("ticker:A/B", "a1")
    transport.gate.set()
    await settle()
    assert transport.later == ["t1", "t2", "a1"] and transport.now == []
    await client.wait_closed()


async def test_a_book_delta_is_rendered_only_when_it_goes_out() -> None:
    transport = FastTransport()
    client = fast_client(transport)
    feed = BookFeed()
    client.books["orderbook:A/B"] = cursor = BookCursor(dumps("orderbook:A/B"))
    feed.update(book_payload({"100": "1"}, {}))
    transport.writable = False
    assert not client.push_latest("orderbook:A/B", feed)
    assert cursor.seq == 0  # queued as the feed, not as a rendered delta
    client.queue.clear()
    transport.writable = True
    assert client.push_latest("orderbook:A/B", feed)
    assert json.loads(transport.now[0])["type"] == "snapshot" and cursor.seq == 1


async def test_a_failing_fast_path_falls_back_to_the_writer_task() -> None:
    class Broken(FastTransport):
        def send_now(self, text: str) -> bool:
            raise AttributeError("the server's internals changed")

    transport = Broken()
    client = fast_client(transport)
    client.start()
    assert not client.push_latest("ticker:A/B", "a1") and not client.push("t1")
    await settle()
    assert transport.later == ["a1", "t1"]  # nothing lost: delivered the slow way
    await client.wait_closed()


async def test_the_queue_bound_still_holds_with_the_fast_path() -> None:
    transport = FastTransport()
    transport.writable = False
    client = fast_client(transport, queue_size=3)
    for n in range(3):
        assert client.send(f"t{n}")
    assert not client.send("t3") and client.closing == ErrorCode.SLOW_CONSUMER.value
    await client.wait_closed()
