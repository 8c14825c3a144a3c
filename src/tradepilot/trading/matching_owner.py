"""The matching owner: the one process (lease ``paper-matching:<venue>``) that matches resting
and conditional paper orders against the market.

Under the lease it keeps a ``MatchingEngine`` loaded with the venue's open orders from the
database (``engine.load``: resting limits in their time priority, stops armed, trailing
stops with their water mark), feeds it the market service's books and trades, and turns the
engine's events into database transactions, one per order touched, each fenced by the lease
token (``lease.assert_held``) and taken under the account's lock, where the order must still
be open at the revision the engine knows — a cancel that committed first wins, and the
engine drops the order.

It learns of new and cancelled orders from the ``order.updated`` events the order service
writes to the outbox (relayed to the bus after commit, on every replica), and re-reads the
open orders every ``paper_matching_resync_seconds`` so that a lost bus message costs at most
that delay. Every second it lets engine time pass, which expires day orders at 00:00 UTC.
A new holder of the lease (another replica, or this one after a restart) rebuilds everything
from the database, so nothing is lost and nothing fills twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tradepilot.core.events import Event, Topics
from tradepilot.core.lease import Lease, LeaseLost, lease_manager
from tradepilot.trading import ledger
from tradepilot.trading.engine import EngineEvent, MatchingEngine, UnknownOrderError
from tradepilot.trading.engine import Order as EngineOrder
from tradepilot.trading.engine.orders import OrderType
from tradepilot.trading.execution import ORDER_UPDATED, ORDERS_KIND, OrderWriter, events_by_order, to_engine
from tradepilot.trading.order_models import Order, OrderStatus

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.market.types import OrderBook, Trade
    from tradepilot.runtime import Runtime
    from tradepilot.trading.orders import OrderService

logger = logging.getLogger("tradepilot.trading.matching")

TICK_SECONDS = 1.0
SERVICE_KEY = "matching"
STOP_TIMEOUT = 15.0


def lease_name(venue: str) -> str:
    return f"paper-matching:{venue}"


class _Stale(Exception):
    """The order changed since the engine learned of it (cancelled, modified, deleted)."""


class MatchingOwner:
    def __init__(self, runtime: Runtime, market: MarketService, orders: OrderService) -> None:
        self.runtime = runtime
        self.market = market
        self.orders = orders
        self.venue = market.venue
        self.engine: MatchingEngine | None = None
        self.lease: Lease | None = None
        self.ready = asyncio.Event()  # set while owning, once the open orders are loaded
        self._orders: dict[str, EngineOrder] = {}  # what the engine works, by id (the engine's own objects)
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None

    # -- what tests and operators may ask -------------------------------------------------

    def working(self, order_id: str | uuid.UUID) -> bool:
        """True while this process's engine works the order."""
        return str(order_id) in self._orders

    # -- under the lease ------------------------------------------------------------------

    async def run(self, lease: Lease) -> None:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._queue = queue
        put: Callable[[tuple[str, Any]], None] = queue.put_nowait
        unsubscribe_trades = self.market.subscribe_trades(lambda trade: put(("trade", trade)))
        unsubscribe_books = self.market.subscribe_books(lambda book: put(("book", book)))
        subscription = await self.runtime.bus.subscribe(Topics.all_user(ORDERS_KIND), self._on_order_event)
        timer = asyncio.create_task(self._beat(queue), name=f"paper-matching-beat-{self.venue}")
        try:
            self.lease = lease
            self.engine = MatchingEngine(self.orders.fee_schedule(), self.market.instruments())
            for instrument in self.market.instruments():
                book = self.market.order_book(instrument.symbol)
                if book is not None:
                    self.engine.on_book(book)
            await self._resync()
            logger.info("paper matching owned", extra={"venue": self.venue, "token": lease.token,
                                                       "orders": len(self._orders)})
            self.ready.set()
            while True:
                kind, item = await queue.get()
                await self._handle(kind, item)
        finally:
            self.ready.clear()
            unsubscribe_trades()
            unsubscribe_books()
            await subscription.close()
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
            self.engine, self.lease, self._queue = None, None, None
            self._orders.clear()

    async def _beat(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        resync_every = self.runtime.settings.paper_matching_resync_seconds
        since_resync = 0.0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            queue.put_nowait(("tick", self.runtime.clock.now()))
            since_resync += TICK_SECONDS
            if since_resync >= resync_every:
                since_resync = 0.0
                queue.put_nowait(("resync", None))

    async def _on_order_event(self, event: Event) -> None:
        if event.type != ORDER_UPDATED or self._queue is None:
            return
        order = event.payload.get("order") or {}
        if order.get("venue") == self.venue and order.get("id"):
            self._queue.put_nowait(("order", (str(order["id"]), str(order.get("status")))))

    async def _handle(self, kind: str, item: Any) -> None:
        engine = self.engine
        assert engine is not None
        if kind == "trade":
            trade: Trade = item
            if trade.venue == self.venue:
                await self._process(engine.on_trade(trade))
        elif kind == "book":
            book: OrderBook = item
            if book.venue == self.venue:
                await self._process(engine.on_book(book))
        elif kind == "tick":
            await self._process(engine.advance(item))
        elif kind == "order":
            order_id, status = item
            if status in OrderStatus.OPEN and order_id not in self._orders:
                await self._load_one(order_id)
            elif status in OrderStatus.FINAL and order_id in self._orders:
                await self._drop(order_id)
        elif kind == "resync":
            await self._resync()

    # -- keeping the engine equal to the database ----------------------------------------------

    @staticmethod
    def _workable(row: Order) -> bool:
        return row.is_open and row.type != OrderType.MARKET and row.status != OrderStatus.PENDING_NEW

    def _load(self, rows: list[Order]) -> None:
        engine = self.engine
        assert engine is not None
        fresh = [to_engine(row) for row in rows if self._workable(row) and str(row.id) not in self._orders]
        engine.load(fresh)
        for order in fresh:
            self._orders[order.id] = order

    async def _load_one(self, order_id: str) -> None:
        async with self.runtime.db.session() as session:
            row = await session.get(Order, uuid.UUID(order_id))
        if row is not None and row.venue == self.venue:
            self._load([row])

    async def _resync(self) -> None:
        """Load open orders the engine misses; drop the ones the database has ended."""
        async with self.runtime.db.session() as session:
            rows = list(await session.scalars(select(Order).where(
                Order.venue == self.venue, Order.status.in_(tuple(OrderStatus.OPEN)))))
        open_ids = {str(row.id) for row in rows}
        for order_id in [i for i in self._orders if i not in open_ids]:
            await self._drop(order_id)
        self._load(rows)

    async def _drop(self, order_id: str) -> None:
        """Take an order out of the engine without persisting anything about it (the database
        already says it ended); other orders' events of the same call are still persisted."""
        order = self._orders.pop(order_id, None)
        engine = self.engine
        if order is None or engine is None or not order.is_open:
            return
        try:
            events = engine.cancel(order_id, self.runtime.clock.now())
        except UnknownOrderError:
            return
        await self._process(events, skip=frozenset({order_id}))

    # -- persisting -----------------------------------------------------------------------

    async def _process(self, events: list[EngineEvent], *, skip: frozenset[str] = frozenset()) -> None:
        if not events:
            return
        for order_id, own in events_by_order(events).items():
            if order_id in skip:
                continue
            order = self._orders.get(order_id)
            if order is None:
                continue
            await self._persist(order, own)
            if not order.is_open:
                self._orders.pop(order_id, None)

    async def _persist(self, order: EngineOrder, events: list[EngineEvent]) -> None:
        lease = self.lease
        assert lease is not None
        now = self.runtime.clock.now()
        try:
            async with self.runtime.db.transaction() as session:
                await lease.assert_held(session)
                row, account = await self._lock_order(session, order)
                await OrderWriter(session, account, now).apply(row, order, events)
        except LeaseLost:
            raise
        except _Stale:
            await self._drop(order.id)
        except ledger.InsufficientFunds:
            logger.info("order canceled: funds ran out at its fill", extra={"order_id": order.id})
            await self._end(order, reason="insufficient_funds")
        except Exception:
            logger.exception("persisting matching events failed; re-reading the order", extra={"order_id": order.id})
            await self._reload(order)

    async def _lock_order(self, session: Any, order: EngineOrder) -> tuple[Order, Any]:
        account_id = await session.scalar(select(Order.account_id).where(Order.id == uuid.UUID(order.id)))
        if account_id is None:
            raise _Stale()
        account = await ledger.lock_account(session, account_id)
        row = await session.scalar(select(Order).where(Order.id == uuid.UUID(order.id))
                                   .execution_options(populate_existing=True))
        if row is None or not row.is_open or row.revision != order.revision:
            raise _Stale()
        return row, account

    async def _end(self, order: EngineOrder, *, reason: str) -> None:
        """Cancel an order the engine filled but the account could not pay for."""
        lease = self.lease
        assert lease is not None
        try:
            async with self.runtime.db.transaction() as session:
                await lease.assert_held(session)
                row, account = await self._lock_order(session, order)
                await OrderWriter(session, account, self.runtime.clock.now()).close(
                    row, OrderStatus.CANCELED, reason=reason)
        except _Stale:
            pass
        await self._drop(order.id)
        self._orders.pop(order.id, None)

    async def _reload(self, order: EngineOrder) -> None:
        """After a failed write: the engine takes the order back as the database has it."""
        if order.is_open:
            await self._drop(order.id)
        self._orders.pop(order.id, None)
        await self._load_one(order.id)


# --- wiring -------------------------------------------------------------------------------------

async def start_matching(runtime: Runtime) -> MatchingOwner | None:
    """Compete for the venue's matching lease (from the app lifespan, after the market)."""
    if not runtime.settings.paper_matching_enabled:
        return None
    market = runtime.services["market"]
    owner = MatchingOwner(runtime, market, runtime.services["orders"])
    task = asyncio.create_task(lease_manager(runtime).run_while_held(lease_name(owner.venue), owner.run),
                               name=f"paper-matching-{owner.venue}")
    runtime.services[SERVICE_KEY] = owner
    runtime.services[SERVICE_KEY + "_task"] = task
    return owner


async def stop_matching(runtime: Runtime) -> None:
    task: asyncio.Task[None] | None = runtime.services.pop(SERVICE_KEY + "_task", None)
    runtime.services.pop(SERVICE_KEY, None)
    if task is None:
        return
    task.cancel()
    _, pending = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
    if pending:
        logger.warning("paper matching did not stop in time; leaving it behind")
