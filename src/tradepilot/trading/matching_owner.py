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
from tradepilot.trading.engine import (
    EngineEvent,
    MatchingEngine,
    ModifyRejected,
    OrderGroup,
    OrderModified,
    UnknownOrderError,
)
from tradepilot.trading.engine import Order as EngineOrder
from tradepilot.trading.engine.orders import STOP_TYPES, OrderType
from tradepilot.trading.execution import ORDER_UPDATED, ORDERS_KIND, OrderWriter, events_by_order, to_engine
from tradepilot.trading.order_groups import EXIT_ROLES, GroupWriter, group_of, group_rows
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

    def working_revision(self, order_id: str | uuid.UUID) -> int | None:
        """The revision this process's engine works the order at (None: not working it)."""
        order = self._orders.get(str(order_id))
        return None if order is None else order.revision

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
            self._queue.put_nowait(("order", (str(order["id"]), str(order.get("status")), order.get("revision"))))

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
            order_id, status, revision = item
            known = self._orders.get(order_id)
            if status in OrderStatus.OPEN:
                if known is None:
                    await self._load_one(order_id)
                elif isinstance(revision, int) and revision > known.revision:
                    await self._apply_modify(order_id)
            elif status in OrderStatus.FINAL and known is not None:
                await self._drop(order_id)
        elif kind == "resync":
            await self._resync()

    # -- keeping the engine equal to the database ----------------------------------------------

    @staticmethod
    def _workable(row: Order) -> bool:
        # pending_new: a bracket exit waiting for its entry (the engine activates it)
        return row.is_open and row.type != OrderType.MARKET and (
            row.status != OrderStatus.PENDING_NEW or row.group_role in EXIT_ROLES)

    def _load(self, rows: list[Order], groups: dict[uuid.UUID, list[Order]] | None = None) -> None:
        engine = self.engine
        assert engine is not None
        fresh_rows = [row for row in rows if self._workable(row) and str(row.id) not in self._orders]
        fresh = [to_engine(row) for row in fresh_rows]
        wanted = sorted({row.group_id for row in fresh_rows if row.group_id is not None})
        engine_groups: list[OrderGroup] = [group_of(groups[gid]) for gid in wanted if groups and groups.get(gid)]
        engine.load(fresh, engine_groups)
        for order in fresh:
            self._orders[order.id] = order

    async def _load_one(self, order_id: str) -> None:
        async with self.runtime.db.read() as session:
            row = await session.get(Order, uuid.UUID(order_id))
            if row is not None and row.group_id is not None:  # a group is loaded whole
                groups = await group_rows(session, [row.group_id])
                rows = groups[row.group_id]
            else:
                groups, rows = {}, [] if row is None else [row]
        if row is not None and row.venue == self.venue:
            self._load(rows, groups)

    async def _resync(self) -> None:
        """Load open orders the engine misses; drop the ones the database has ended; apply
        modifications the engine missed."""
        async with self.runtime.db.read() as session:
            rows = list(await session.scalars(select(Order).where(
                Order.venue == self.venue, Order.status.in_(tuple(OrderStatus.OPEN)))))
            groups = await group_rows(session, [row.group_id for row in rows if row.group_id is not None])
        open_ids = {str(row.id) for row in rows}
        for order_id in [i for i in self._orders if i not in open_ids]:
            await self._drop(order_id)
        for row in rows:
            known = self._orders.get(str(row.id))
            if known is not None and row.revision > known.revision:
                await self._apply_modify(str(row.id))
        self._load(rows, groups)

    async def _drop(self, order_id: str) -> None:
        """Take an order out of the engine without persisting anything about it (the database
        already says it ended); other orders' events of the same call are still persisted."""
        grouped = self._orders.get(order_id)
        if grouped is not None and grouped.group_id is not None:
            await self._refresh_group(grouped.group_id)
            return
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
        groups: dict[str, list[tuple[EngineOrder, list[EngineEvent]]]] = {}
        for order_id, own in events_by_order(events).items():
            if order_id in skip:
                continue
            order = self._orders.get(order_id)
            if order is None:
                continue
            if order.group_id is not None:  # a group's orders are written together, after the others
                groups.setdefault(order.group_id, []).append((order, own))
                continue
            await self._persist(order, own)
            if not order.is_open and self._orders.get(order_id) is order:
                self._orders.pop(order_id, None)
        for members in groups.values():
            await self._persist_group(members)
            for order, _ in members:
                if not order.is_open and self._orders.get(order.id) is order:
                    self._orders.pop(order.id, None)

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
        except _Stale:  # cancelled or modified meanwhile: the engine takes it back as the database has it
            await self._reload(order)
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


    # -- groups (brackets, OCO) and modifications ---------------------------------------------

    async def _persist_group(self, members: list[tuple[EngineOrder, list[EngineEvent]]]) -> None:
        """One engine call's events of one group's orders, in one transaction (their exits share
        one reservation: ``order_groups.GroupWriter``); stale if any of them changed meanwhile."""
        lease = self.lease
        assert lease is not None
        group_id = members[0][0].group_id
        assert group_id is not None
        now = self.runtime.clock.now()
        try:
            async with self.runtime.db.transaction() as session:
                await lease.assert_held(session)
                rows = await self._lock_group(session, group_id)
                by_id = {str(row.id): row for row in rows}
                for order, _ in members:
                    row = by_id.get(order.id)
                    if row is None or not row.is_open or row.revision != order.revision:
                        raise _Stale()
                account = await ledger.lock_account(session, rows[0].account_id)
                writer = GroupWriter(session, account, now, self.orders.rates, rows)
                for order, own in members:
                    await writer.apply(by_id[order.id], order, own)
                await writer.complete()
        except LeaseLost:
            raise
        except _Stale:
            await self._refresh_group(group_id)
        except ledger.InsufficientFunds:  # a stop entry that gapped beyond the free balance
            logger.info("group canceled: funds ran out at its fill", extra={"group_id": group_id})
            await self._end_group(group_id, reason="insufficient_funds")
        except Exception:
            logger.exception("persisting a group's matching events failed; re-reading it",
                             extra={"group_id": group_id})
            await self._refresh_group(group_id)

    async def _lock_group(self, session: Any, group_id: str) -> list[Order]:
        gid = uuid.UUID(group_id)
        account_id = await session.scalar(select(Order.account_id).where(Order.group_id == gid).limit(1))
        if account_id is None:
            raise _Stale()
        await ledger.lock_account(session, account_id)
        return (await group_rows(session, [gid]))[gid]

    async def _end_group(self, group_id: str, *, reason: str) -> None:
        lease = self.lease
        assert lease is not None
        try:
            async with self.runtime.db.transaction() as session:
                await lease.assert_held(session)
                rows = await self._lock_group(session, group_id)
                account = await ledger.lock_account(session, rows[0].account_id)
                writer = GroupWriter(session, account, self.runtime.clock.now(), self.orders.rates, rows)
                for row in rows:
                    if row.is_open:
                        await writer.close(row, OrderStatus.CANCELED, reason=reason)
                await writer.complete()
        except _Stale:
            pass
        await self._refresh_group(group_id)

    async def _refresh_group(self, group_id: str) -> None:
        """Take the group's orders out of the engine without persisting anything about them, and
        load the ones still open as the database has them (with their group)."""
        engine = self.engine
        members = [o for o in self._orders.values() if o.group_id == group_id]
        for order in members:
            self._orders.pop(order.id, None)
        events: list[EngineEvent] = []
        if engine is not None:
            now = self.runtime.clock.now()
            for order in members:
                if order.is_open:
                    try:
                        events.extend(engine.cancel(order.id, now))
                    except UnknownOrderError:
                        pass
        # what the clock did to other orders meanwhile (expiries) is theirs to persist
        await self._process(events, skip=frozenset(o.id for o in members))
        if engine is not None:
            gid = uuid.UUID(group_id)
            async with self.runtime.db.read() as session:
                groups = await group_rows(session, [gid])
            if groups.get(gid) and groups[gid][0].venue == self.venue:
                self._load(groups[gid], groups)

    async def _apply_modify(self, order_id: str) -> None:
        """The user modified an order the engine works: apply ``engine.modify`` at the new
        revision (priority kept or lost as the engine rules), or, when the engine's picture is
        off by more than that modification, take the order back as the database has it."""
        engine = self.engine
        known = self._orders.get(order_id)
        if engine is None or known is None:
            return
        async with self.runtime.db.read() as session:
            row = await session.get(Order, uuid.UUID(order_id))
        if row is None or not row.is_open:
            await self._drop(order_id)
            return
        if row.revision <= known.revision:
            return
        if row.revision == known.revision + 1 and known.is_open and row.filled_quantity == known.filled_quantity:
            changes: dict[str, Any] = {}
            for name in ("price", "quantity", "trail_amount", "trail_percent"):
                if getattr(row, name) != getattr(known, name) and getattr(row, name) is not None:
                    changes[name] = getattr(row, name)
            if row.type in STOP_TYPES and not known.triggered and row.stop_price != known.stop_price:
                changes["stop_price"] = row.stop_price
            if changes:
                events = engine.modify(order_id, self.runtime.clock.now(), **changes)
                applied = known.revision == row.revision and not any(
                    isinstance(e, ModifyRejected) and e.order_id == order_id for e in events)
                # the modification itself is recorded already; what follows from it is not
                await self._process([e for e in events if not (isinstance(e, OrderModified)
                                                               and e.order_id == order_id)])
                if applied:
                    return
        await self._refresh(order_id)

    async def _refresh(self, order_id: str) -> None:
        order = self._orders.get(order_id)
        if order is not None and order.group_id is not None:
            await self._refresh_group(order.group_id)
            return
        await self._drop(order_id)
        await self._load_one(order_id)


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
