"""Reconciliation of a live account: what the exchange holds against what the platform recorded.

One run (docs/exchanges.md, "Reconciliation") first **reads** the exchange, holding no database
transaction across the network:

1. the account's open orders on every symbol, whoever placed them;
2. each order the platform has open that is not among them, looked up (a platform order by its
   ``tp-`` client id, an external one by the exchange's id) — filled or cancelled meanwhile, or
   never seen by the exchange at all;
3. the trades since the last one seen, per symbol (``live_trade_cursor``; Binance
   ``myTrades?fromId``), and the orders behind trades the platform does not know yet;
4. the trades of every order that traded more than the platform recorded;
5. the balances — compared only if no trade happened while the run was reading (the trades
   are read again after the balances), since a balance read between two trades cannot be
   matched to either.

Then it **writes** (``reconciliation_writer``), one transaction per change, fenced by the
account's lease: platform orders are adopted (a ``pending_new`` the exchange has), settled
(later fills, an end on the exchange) or finalised (a ``pending_new`` the exchange never saw,
older than ``live_pending_grace_seconds``: rejected, its reservation released); orders the
platform did not place are recorded with ``source: external`` — they move balances and
positions, and the platform never cancels or closes them; a balance that still differs is an
external deposit or withdrawal. Every difference is logged, kept with the run and, when there
is one, announced on the user's account channel.

The first time a symbol is read (no cursor yet), its older trades are the account's history
before TradePilot watched it: only those of orders the platform knows or that are still open
are recorded; the rest show up in the balances.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select

from tradepilot.core.errors import TradePilotError
from tradepilot.core.lease import Lease, LeaseLost
from tradepilot.market.types import Instrument
from tradepilot.trading.live.accounts import detached_live_account, live_venues
from tradepilot.trading.live.answers import VenueOrder, VenueTrade
from tradepilot.trading.live.client_ids import client_order_id, parse_client_order_id
from tradepilot.trading.live.errors import MalformedAnswer
from tradepilot.trading.live.exchange import LiveExchange, trade_number
from tradepilot.trading.live.reconciliation_models import (
    ReconciliationRun,
    RunStatus,
    RunTrigger,
    TradeCursor,
)
from tradepilot.trading.live.reconciliation_writer import (
    DifferenceKind,
    Findings,
    ReconciliationWriter,
)
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Order, OrderEvent, OrderSource, OrderStatus

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.trading.live.reconciliation")

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Known:
    """A platform row as the run read it (detached facts, no ORM object across the network)."""

    id: uuid.UUID
    symbol: str
    source: str
    status: str
    exchange_order_id: str | None
    filled: Decimal
    age: float  # seconds since it was last changed (created, or replaced by a modify), by the runtime's clock
    revision: int = 0  # a live modify sends a replacement under a new client id per revision

    @property
    def client_id(self) -> str | None:
        return client_order_id(self.id, self.revision) if self.source == OrderSource.PLATFORM else None


@dataclass(slots=True)
class Plan:
    """What the reads decided: the writes to make."""

    settle: list[tuple[uuid.UUID, VenueOrder, list[VenueTrade]]]
    external: list[tuple[VenueOrder, Instrument, list[VenueTrade]]]
    missing: list[Known]
    cursors: dict[str, int]
    balances: dict[str, tuple[Decimal, Decimal]] | None  # None: trading went on while reading


def platform_id(client_id: str | None) -> uuid.UUID | None:
    """The platform order id inside a ``tp-`` client order id (None: not one of ours)."""
    parsed = parse_client_order_id(client_id)
    return None if parsed is None else parsed[0]


class Reconciliation:
    """One run for one account, under the account's reconciliation lease."""

    def __init__(self, runtime: Runtime, account_id: uuid.UUID, lease: Lease) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        self.settings = runtime.settings
        self.account_id = account_id
        self.lease = lease

    async def run(self, trigger: str) -> ReconciliationRun:
        started = self.clock.now()
        findings = Findings()
        writer = ReconciliationWriter(self.runtime, self.account_id, self.lease, findings)
        run = ReconciliationRun(id=uuid.uuid4(), account_id=self.account_id, trigger=trigger,
                                holder=self.lease.holder[:200], lease_token=self.lease.token, started_at=started)
        error: str | None = None
        try:
            account = await self._account()
            run.user_id = account.user_id
            async with live_venues(self.runtime).open(account) as exchange:
                plan = await self._read(exchange)
            await self._write(writer, plan, run.id)
        except LeaseLost:
            raise
        except TradePilotError as exc:  # the exchange failed or refused: the next run tries again
            error = exc.code
            logger.warning("live reconciliation failed", extra={"account_id": str(self.account_id),
                                                                "error": exc.code})
        run.error_code = error
        run.differences = findings.items
        run.status = RunStatus.FAILED if error else RunStatus.DIFFERENCES if findings.items else RunStatus.OK
        run.finished_at = self.clock.now()
        await writer.record_run(run)
        return run

    async def apply_updates(self, views: list[VenueOrder]) -> ReconciliationRun | None:
        """Order updates pushed by the user-data stream (``live/user_stream.py``), applied as a run
        applies what it reads: each order's trades are read from the exchange before anything is
        written. A platform order's fills are the stream's everyday news, not a difference; anything
        else found (an external order, an end on the exchange…) is kept as a ``stream`` run."""
        findings = Findings(ignored=frozenset({DifferenceKind.FILLS_RECORDED}))
        writer = ReconciliationWriter(self.runtime, self.account_id, self.lease, findings)
        started = self.clock.now()
        try:
            account = await self._account()
            plan = Plan(settle=[], external=[], missing=[], cursors={}, balances=None)
            async with live_venues(self.runtime).open(account) as exchange:
                for view in views:
                    await self._plan_one(exchange, view, plan)
            await self._write(writer, plan, uuid.uuid4())
        except TradePilotError as exc:  # the next periodic run reads these orders again
            logger.warning("live user-data stream update not applied", extra={
                "account_id": str(self.account_id), "error": exc.code})
            return None
        if not findings.items:
            return None
        run = ReconciliationRun(id=uuid.uuid4(), account_id=self.account_id, trigger=RunTrigger.STREAM,
                                holder=self.lease.holder[:200], lease_token=self.lease.token, started_at=started,
                                user_id=account.user_id, differences=findings.items, status=RunStatus.DIFFERENCES,
                                finished_at=self.clock.now())
        await writer.record_run(run)
        return run

    async def _account(self) -> TradingAccount:
        account = await detached_live_account(self.runtime, self.account_id)
        if account is None:
            raise LeaseLost(f"account {self.account_id} is gone or not live")
        return account

    # --- reading ---------------------------------------------------------------------------------------

    async def _known(self, where: list) -> list[Known]:  # type: ignore[type-arg]
        now = self.clock.now()
        async with self.runtime.db.read() as session:
            rows = (await session.execute(select(Order.id, Order.symbol, Order.source, Order.status,
                                                 Order.exchange_order_id, Order.filled_quantity, Order.updated_at,
                                                 Order.revision)
                                          .where(Order.account_id == self.account_id, *where))).all()
        return [Known(id=r[0], symbol=r[1], source=r[2], status=r[3], exchange_order_id=r[4], filled=r[5],
                      age=(now - r[6]).total_seconds(), revision=r[7]) for r in rows]

    async def _read(self, exchange: LiveExchange) -> Plan:
        open_orders = await exchange.open_orders()
        known_open = await self._known([Order.status.in_(OrderStatus.OPEN)])
        async with self.runtime.db.read() as session:
            cursors = {c.symbol: c.last_trade_id for c in await session.scalars(
                select(TradeCursor).where(TradeCursor.account_id == self.account_id))}
            traded = set(await session.scalars(select(Order.symbol).where(Order.account_id == self.account_id)
                                               .distinct()))
        views: dict[str, VenueOrder] = {o.exchange_id: o for o in open_orders}
        open_cids = {o.client_order_id for o in open_orders if o.client_order_id}
        missing: list[Known] = []
        for row in known_open:  # open here, not open there: what became of it?
            if row.exchange_order_id in views or (row.client_id and row.client_id in open_cids):
                continue
            if row.status == OrderStatus.NEW and row.exchange_order_id is None:
                continue  # kept by the platform until it fires, never sent (live/emulation.py): nothing to ask
            if row.client_id is not None:
                found = await exchange.find_order(symbol=row.symbol, client_order_id=row.client_id)
            elif row.exchange_order_id is not None:
                found = await exchange.order_by_id(symbol=row.symbol, exchange_order_id=row.exchange_order_id)
            else:
                found = None
            if found is None:
                if row.status == OrderStatus.PENDING_NEW:
                    missing.append(row)
                continue
            views[found.exchange_id] = found

        symbols = sorted(traded | set(cursors) | {row.symbol for row in known_open}
                         | {o.symbol for o in open_orders if o.symbol})
        trades: dict[str, list[VenueTrade]] = {}
        for symbol in symbols:
            trades[symbol] = await exchange.trades_after(symbol=symbol, after_id=cursors.get(symbol))
        # orders behind new trades that the run has not met yet (only past a cursor: before it is history)
        unknown = {(s, t.order_id) for s, ts in trades.items() if s in cursors for t in ts
                   if t.order_id and t.order_id not in views}
        recorded = {r.exchange_order_id for r in await self._known([Order.exchange_order_id.in_(
            sorted({order_id for _, order_id in unknown}))])} if unknown else set()
        unknown = {(s, order_id) for s, order_id in unknown if order_id not in recorded}
        for symbol, order_id in sorted(unknown):
            found = await exchange.order_by_id(symbol=symbol, exchange_order_id=order_id)
            if found is not None:
                views[found.exchange_id] = found

        plan = Plan(settle=[], external=[], missing=missing, cursors={}, balances=None)
        for view in views.values():
            await self._plan_one(exchange, view, plan)
        plan.cursors = {s: trade_number(ts[-1]) for s, ts in trades.items() if ts}
        balances = await exchange.balances()
        for symbol in symbols:  # did anything trade while we read? then the balances cannot be matched
            if await exchange.trades_after(symbol=symbol, after_id=plan.cursors.get(symbol, cursors.get(symbol)),
                                           page=1):
                logger.info("live reconciliation: trading while reading, balances compared next run",
                            extra={"account_id": str(self.account_id), "symbol": symbol})
                return plan
        plan.balances = balances
        return plan

    async def _plan_one(self, exchange: LiveExchange, view: VenueOrder, plan: Plan) -> None:
        if not view.symbol:
            raise MalformedAnswer("the exchange sent an order without its symbol", venue=exchange.venue)
        row = await self._row_of(view)
        if row is not None and row.exchange_order_id != view.exchange_id and view.client_order_id != row.client_id:
            return  # an earlier revision of a modified order: replaced (its end recorded by the modify)
        if row is not None and await self._being_replaced(row, view):
            return  # a modify cancelled it a moment ago and is placing its replacement (live/modify.py)
        if row is not None and (row.status in OrderStatus.FINAL or (
                row.status != OrderStatus.PENDING_NEW and view.is_open and view.filled == row.filled)):
            return  # nothing to change: no write transaction, no lock
        filled = row.filled if row is not None else ZERO
        trades = await self._trades_of(exchange, view) if view.filled > filled else []
        if row is not None:
            plan.settle.append((row.id, view, trades))
        else:
            plan.external.append((view, await exchange.instrument(view.symbol), trades))

    async def _being_replaced(self, row: Known, view: VenueOrder) -> bool:
        """An open platform order whose exchange order just ended cancelled, with nothing new filled,
        while a modify of it is in flight (its last event ``replace_requested``, younger than the
        grace age): the modify records it. Older: the modify died, and the run records the cancel."""
        if row.status not in OrderStatus.OPEN or row.status == OrderStatus.PENDING_NEW or view.is_open:
            return False
        if view.status not in ("canceled", "expired") or view.filled != row.filled:
            return False
        if row.age >= self.settings.live_pending_grace_seconds:
            return False
        async with self.runtime.db.read() as session:
            last = await session.scalar(select(OrderEvent.type).where(OrderEvent.order_id == row.id)
                                        .order_by(OrderEvent.seq.desc()).limit(1))
        return last == "replace_requested"

    async def _row_of(self, view: VenueOrder) -> Known | None:
        """The platform's row for an exchange order: by the exchange's id, or by our client id."""
        [row] = await self._known([Order.exchange_order_id == view.exchange_id]) or [None]
        if row is None and (mine := platform_id(view.client_order_id)) is not None:
            [row] = await self._known([Order.id == mine]) or [None]
        return row

    async def _trades_of(self, exchange: LiveExchange, view: VenueOrder) -> list[VenueTrade]:
        assert view.symbol is not None
        trades = await exchange.order_trades(symbol=view.symbol, exchange_order_id=view.exchange_id)
        total = ZERO
        for trade in trades:
            total += trade.quantity
        if total != view.filled:
            raise MalformedAnswer("the order's trades do not add up to its filled quantity", venue=exchange.venue)
        return sorted(trades, key=trade_number)

    # --- writing ----------------------------------------------------------------------------------------

    async def _write(self, writer: ReconciliationWriter, plan: Plan, run_id: uuid.UUID) -> None:
        for order_id, view, trades in plan.settle:
            await writer.settle(order_id, view, trades)
        for view, instrument, trades in plan.external:
            await writer.adopt_external(view, instrument, trades)
        grace = self.settings.live_pending_grace_seconds
        for row in plan.missing:
            if row.age >= grace:
                await writer.finalise_missing(row.id, row.age)
        await writer.advance_cursors(plan.cursors)
        if plan.balances is not None:
            await writer.balances(plan.balances, run_id)
