"""Matching engine on real market data (Binance BTCUSDT, 2024-08-08; slices in tests/data/market).

1. 5,210 recorded trades: resting limits placed away from the market fill only on trades at
   or through their price, never before, always at their price, never beyond a trade's volume.
2. 90 s of the recorded websocket capture (depth snapshot + diffs rebuilt into books, and the
   trades between them): market orders fill at the real book's levels, stops fire on the
   first trade through them.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from tests.market_support import binance_trades
from tradepilot.market.feeds.sources import capture_timeline
from tradepilot.market.types import OrderBook, Trade
from tradepilot.trading.engine import (
    Fill,
    MatchingEngine,
    Order,
    OrderRejected,
    Triggered,
)

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "market" / "binance_spot_capture" / \
    "btcusdt_20240808_first90s.gz"
SYMBOL = "BTC/USDT"
QTY = Decimal("0.05")


def limit(order_id: str, side: str, price: str) -> Order:
    return Order(order_id, "acct", SYMBOL, side, "limit", quantity=QTY, price=Decimal(price))  # type: ignore[arg-type]


def test_resting_limits_fill_only_on_trades_at_or_through_their_price() -> None:
    trades = binance_trades()
    low, high = min(t.price for t in trades), max(t.price for t in trades)
    assert (trades[0].price, low, high) == (Decimal("61837.63"), Decimal("61651.01"), Decimal("61860.8"))
    buys = ["61837.62", "61836", "61830", "61800", "61750", "61700", "61660", "61651.01", "61651"]
    sells = ["61837.64", "61845", "61850", "61855", "61860.8", "61860.81"]
    orders = {f"b{p}": limit(f"b{p}", "buy", p) for p in buys} | {f"s{p}": limit(f"s{p}", "sell", p) for p in sells}
    engine = MatchingEngine()
    for o in orders.values():
        engine.place(o, trades[0].ts)

    by_id: dict[str, Trade] = {}
    first_reach: dict[str, int] = {}
    first_fill: dict[str, int] = {}
    for index, t in enumerate(trades):
        by_id[t.id] = t
        for o in orders.values():
            reached = t.price <= o.price if o.is_buy else t.price >= o.price  # type: ignore[operator]
            if reached:
                first_reach.setdefault(o.id, index)
        events = engine.on_trade(t)
        per_side: dict[bool, Decimal] = defaultdict(Decimal)
        for f in (e for e in events if isinstance(e, Fill)):
            o = orders[f.order_id]
            assert f.market_trade_id == t.id and f.liquidity == "maker"
            assert f.price == o.price  # at the limit, never the (better) trade price
            assert t.price <= o.price if o.is_buy else t.price >= o.price  # type: ignore[operator]
            per_side[o.is_buy] += f.quantity
            first_fill.setdefault(o.id, index)
        assert all(v <= t.quantity for v in per_side.values())  # bounded by the trade's volume

    for o in orders.values():
        if o.id not in first_reach:
            assert o.filled_quantity == 0 and o.status == "new", o.id  # never reached, never filled
        else:
            assert first_fill[o.id] >= first_reach[o.id]  # never before the market got there
            assert o.filled_quantity <= QTY
    # the extremes: exactly at the low / high of the session fills; a tick beyond never does
    assert orders["b61651.01"].filled_quantity > 0 and orders["b61651"].filled_quantity == 0
    assert orders["s61860.8"].filled_quantity > 0 and orders["s61860.81"].filled_quantity == 0
    # well inside the range, the volume through the price is far larger than the orders: filled
    for order_id in ("b61837.62", "b61800", "b61700", "s61837.64"):
        assert orders[order_id].status == "filled", order_id


def walk(levels: tuple[tuple[Decimal, Decimal], ...], quantity: Decimal) -> list[tuple[Decimal, Decimal]]:
    out, left = [], quantity
    for price, size in levels:
        take = min(size, left)
        out.append((price, take))
        left -= take
        if not left:
            break
    return out


def test_capture_replay_market_orders_take_the_real_book_and_stops_fire_on_the_first_trade_through() -> None:
    engine = MatchingEngine()
    book: OrderBook | None = None
    last: Trade | None = None
    trades_seen = 0
    placed_stops: dict[str, Order] = {}
    fired: dict[str, tuple[Triggered, OrderBook]] = {}
    stop_fills: dict[str, list[tuple[Decimal, Decimal]]] = defaultdict(list)
    first_through: dict[str, str] = {}
    checked_market = False
    for _, event in capture_timeline([CAPTURE], "binance", SYMBOL):
        if isinstance(event, OrderBook):
            book = event
            engine.on_book(event)
            continue
        for s in placed_stops.values():
            through = event.price <= s.stop_price if s.side == "sell" else event.price >= s.stop_price  # type: ignore[operator]
            if through:
                first_through.setdefault(s.id, event.id)
        for e in engine.on_trade(event):
            if isinstance(e, Triggered):
                assert book is not None
                fired[e.order_id] = (e, book)
            if isinstance(e, Fill) and e.order_id in placed_stops:
                stop_fills[e.order_id].append((e.price, e.quantity))
        last, trades_seen = event, trades_seen + 1
        if book is not None and trades_seen == 200 and not checked_market:
            checked_market = True
            size = sum((q for _, q in book.asks[:3]), Decimal(0))  # three levels deep
            events = engine.place(Order("mb", "a", SYMBOL, "buy", "market", quantity=size), event.ts)  # type: ignore[arg-type]
            got = [(f.price, f.quantity) for f in events if isinstance(f, Fill)]
            assert got == walk(book.asks, size) and len(got) == 3
            events = engine.place(Order("ms", "a", SYMBOL, "sell", "market", quantity=Decimal("0.5")), event.ts)  # type: ignore[arg-type]
            assert [(f.price, f.quantity) for f in events if isinstance(f, Fill)] == walk(book.bids, Decimal("0.5"))
            # post-only: at the best bid it rests, at the best ask it is refused
            ok = engine.place(Order("pb", "b", SYMBOL, "buy", "limit", quantity=Decimal("0.01"),  # type: ignore[arg-type]
                                    price=book.bids[0][0], post_only=True), event.ts)
            refused = engine.place(Order("pa", "b", SYMBOL, "buy", "limit", quantity=Decimal("0.01"),  # type: ignore[arg-type]
                                         price=book.asks[0][0], post_only=True), event.ts)
            assert not any(isinstance(e, OrderRejected) for e in ok)
            assert [e.code for e in refused if isinstance(e, OrderRejected)] == ["post_only_would_take"]
            for offset in ("2", "5", "10", "20"):
                for side, stop in (("sell", last.price - Decimal(offset)), ("buy", last.price + Decimal(offset))):
                    s = Order(f"{side}{offset}", f"c{side}{offset}", SYMBOL, side, "stop",  # type: ignore[arg-type]
                              quantity=Decimal("0.01"),
                              stop_price=stop)
                    engine.place(s, event.ts)
                    placed_stops[s.id] = s
    assert checked_market and trades_seen > 1000
    # the market moved ±10 within the 90 s: stops on both sides fired, the ±20 sell did not
    assert {"buy2", "buy10", "sell2", "sell10"} <= set(fired) and "sell20" not in fired
    assert set(fired) == set(first_through)
    for order_id, (trig, at_book) in fired.items():
        s = placed_stops[order_id]
        assert trig.market_trade_id == first_through[order_id]  # the first trade through, not later
        assert trig.trigger_price == s.stop_price
        # a market order against the book of that moment
        assert stop_fills[order_id] == walk(at_book.bids if s.side == "sell" else at_book.asks, s.quantity)  # type: ignore[arg-type]
        assert s.status == "filled"
