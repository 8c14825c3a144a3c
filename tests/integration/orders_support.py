"""Helpers of the order tests: a deterministic market published on the bus (as a feed owner on
another replica would), order placement, waiting for outcomes, and ledger checks."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from tests.helpers import bearer
from tradepilot.core.money import EXACT
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.market import payloads
from tradepilot.market.types import OrderBook, Trade
from tradepilot.runtime import Runtime
from tradepilot.trading import ledger
from tradepilot.trading.models import LedgerPosting
from tradepilot.trading.order_models import Order

SYMBOL = "BTC/USDT"
ORDERS = "/api/trading/orders"
ACCOUNTS = "/api/trading/accounts"
_trade_ids = itertools.count(1)

Levels = list[tuple[str, str]]


def D(value: str) -> Decimal:  # noqa: N802
    return Decimal(value)


async def wait_for(condition: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class Market:
    """Publishes books and trades of one symbol on the runtime's bus and waits until the market
    service has them."""

    def __init__(self, runtime: Runtime, symbol: str = SYMBOL) -> None:
        self.runtime = runtime
        self.symbol = symbol
        self.service = runtime.services["market"]
        self.seq = 0

    async def book(self, bids: Levels, asks: Levels) -> None:
        current = self.service.order_book(self.symbol)
        self.seq = max(self.seq, current.seq if current is not None else 0) + 1
        book = OrderBook(venue=self.service.venue, symbol=self.symbol, seq=self.seq,
                         bids=tuple((D(p), D(q)) for p, q in bids), asks=tuple((D(p), D(q)) for p, q in asks),
                         ts=datetime.now(UTC))
        await self.runtime.bus.publish(payloads.book_event(book))
        seq = self.seq
        await wait_for(lambda: (b := self.service.order_book(self.symbol)) is not None and b.seq >= seq,
                       "the market service to cache the book")

    async def trade(self, price: str, quantity: str, side: str = "sell") -> str:
        trade_id = f"t{next(_trade_ids)}-{uuid.uuid4().hex[:6]}"
        trade = Trade(venue=self.service.venue, symbol=self.symbol, id=trade_id, price=D(price),
                      quantity=D(quantity), side=side, ts=datetime.now(UTC))  # type: ignore[arg-type]
        await self.runtime.bus.publish(payloads.trade_event(trade))
        await wait_for(lambda: any(t.id == trade_id for t in self.service.recent_trades(self.symbol, 50)),
                       "the market service to see the trade")
        return trade_id


async def place(client: httpx.AsyncClient, tokens: dict, **body: Any) -> httpx.Response:
    body.setdefault("symbol", SYMBOL)
    return await client.post(ORDERS, json=body, headers=bearer(tokens))


async def place_ok(client: httpx.AsyncClient, tokens: dict, **body: Any) -> dict[str, Any]:
    resp = await place(client, tokens, **body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def get_order(client: httpx.AsyncClient, tokens: dict, order_id: str) -> dict[str, Any]:
    resp = await client.get(f"{ORDERS}/{order_id}", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def wait_order(client: httpx.AsyncClient, tokens: dict, order_id: str,
                     until: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def check() -> bool:
        found.update(await get_order(client, tokens, order_id))
        return until(found)

    await wait_for(check, what)
    return found


async def wait_working(runtime: Runtime, order_id: str) -> None:
    """Until the matching owner of this process works the order (it learns of it from the bus)."""
    owner = runtime.services["matching"]
    await wait_for(lambda: owner.ready.is_set() and owner.working(order_id), f"the matching owner to work {order_id}")


async def default_account(client: httpx.AsyncClient, tokens: dict) -> str:
    resp = await client.get(ACCOUNTS, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return next(a["id"] for a in resp.json()["items"] if a["is_default"])  # type: ignore[no-any-return]


async def balances(client: httpx.AsyncClient, tokens: dict, account_id: str) -> dict[str, tuple[str, str]]:
    """asset → (free, locked)."""
    resp = await client.get(f"{ACCOUNTS}/{account_id}", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return {b["asset"]: (b["free"], b["locked"]) for b in resp.json()["balances"]}


async def deposit(client: httpx.AsyncClient, tokens: dict, account_id: str, asset: str, amount: str) -> None:
    resp = await client.post(f"{ACCOUNTS}/{account_id}/deposits", json={"asset": asset, "amount": amount},
                             headers=bearer(tokens))
    assert resp.status_code == 201, resp.text


async def positions(client: httpx.AsyncClient, tokens: dict) -> dict[str, dict[str, Any]]:
    resp = await client.get("/api/trading/positions", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return {p["symbol"]: p for p in resp.json()["items"]}


async def assert_ledger_consistent(runtime: Runtime, account_id: str) -> dict[str, ledger.Amounts]:
    """Balances equal the ledger, nothing is negative, every transaction balances per asset."""
    aid = uuid.UUID(account_id)
    async with runtime.db.session() as session:
        rows = {b.asset: ledger.Amounts(b.free, b.locked) for b in await ledger.get_balances(session, aid)}
        recomputed = await ledger.recompute_balances(session, aid)
        postings = list(await session.scalars(select(LedgerPosting).where(LedgerPosting.account_id == aid)))
        orders_reserved = list(await session.execute(select(Order.reserved_asset, Order.reserved)
                                                     .where(Order.account_id == aid)))
    per_txn: dict[tuple[uuid.UUID, str], Decimal] = defaultdict(Decimal)
    for p in postings:
        per_txn[(p.transaction_id, p.asset)] = EXACT.add(per_txn[(p.transaction_id, p.asset)], p.amount)
    assert all(total == 0 for total in per_txn.values()), per_txn
    assert rows == recomputed
    # what is locked is exactly what the orders still reserve
    reserved: dict[str, Decimal] = defaultdict(Decimal)
    for asset, amount in orders_reserved:
        reserved[asset] = EXACT.add(reserved[asset], amount)
    assert {a: v.locked for a, v in rows.items() if v.locked} == {a: v for a, v in reserved.items() if v}
    assert all(a.free >= 0 and a.locked >= 0 for a in rows.values()), rows
    return rows


async def user_events(runtime: Runtime, user_id: str) -> list[OutboxEvent]:
    async with runtime.db.session() as session:
        return list(await session.scalars(select(OutboxEvent).where(OutboxEvent.user_id == uuid.UUID(user_id))
                                          .order_by(OutboxEvent.seq)))


# the book most order tests start from: three levels a side around 60,000
ASKS = [("60000", "0.04"), ("60010", "0.05"), ("60020", "0.1")]
BIDS = [("59990", "0.03"), ("59980", "0.05"), ("59970", "0.2")]
