"""Reconciliation's writes: each change one transaction, fenced by the account's lease.

Every write here takes the account's lock (``ledger.lock_account``) like the order paths do,
re-reads the order it changes and checks that this process still holds the reconciliation
lease (``lease.assert_held``): a process that lost it — paused, partitioned — cannot write as
the account's reconciler. Engine events are built from what the exchange reported and recorded
through the same ``OrderWriter`` as placement and paper matching, so fills settle through the
ledger, move the position and announce themselves (``fill.created``, ``order.updated``) exactly
as any other fill does.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.events import Topics
from tradepilot.core.lease import Lease
from tradepilot.core.outbox import emit, jsonable
from tradepilot.market.types import Instrument
from tradepilot.trading import ledger
from tradepilot.trading.engine import EngineEvent, OrderAccepted, OrderCanceled, OrderUpdated
from tradepilot.trading.engine import Fill as EngineFill
from tradepilot.trading.engine import Order as EngineOrder
from tradepilot.trading.engine.orders import Liquidity, OrderType, Side
from tradepilot.trading.engine.orders import OrderStatus as EngineStatus
from tradepilot.trading.execution import OrderWriter, add, mul, sub
from tradepilot.trading.live.answers import VenueOrder, VenueTrade
from tradepilot.trading.live.client_ids import live_venue_name
from tradepilot.trading.live.placement import LivePlacement
from tradepilot.trading.live.reconciliation_models import ReconciliationRun, TradeCursor
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Fill, Order, OrderSource, OrderStatus

if TYPE_CHECKING:
    from tradepilot.core.clock import Clock
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.trading.live.reconciliation")

ZERO = Decimal(0)
RUNS_KEPT = 100  # per account: older runs are deleted when a new one is recorded
RECONCILIATION_KIND = "reconciliation"  # topic user.<id>.reconciliation (the account channel shows it)
RECONCILIATION_COMPLETED = "reconciliation.completed"
EXTERNAL_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT})
EXTERNAL_TIME_IN_FORCE = frozenset({"gtc", "ioc", "fok"})


class DifferenceKind:
    """What reconciliation found the exchange and the platform disagreeing on (docs/exchanges.md)."""

    PENDING_ADOPTED = "pending_adopted"  # a platform order left pending_new is on the exchange: recorded
    PENDING_NOT_FOUND = "pending_not_found"  # one the exchange never saw (past the grace age): rejected
    FILLS_RECORDED = "fills_recorded"  # a platform order traded on the exchange since the platform looked
    CLOSED_ON_EXCHANGE = "closed_on_exchange"  # a platform order ended there (cancelled by hand, expired)
    EXTERNAL_ORDER = "external_order"  # an order the platform did not place: recorded, source external
    EXTERNAL_FILLS = "external_fills"  # new fills of such an order
    BALANCE_CHANGED = "balance_changed"  # a balance moved outside any order (deposit, withdrawal, transfer)
    BALANCE_UNRESOLVED = "balance_unresolved"  # a difference the ledger could not take (more than is free)


@dataclass(slots=True)
class Findings:
    """A run's differences, in the order they were found."""

    items: list[dict[str, Any]] = field(default_factory=list)
    ignored: frozenset[str] = frozenset()  # kinds that are no difference for this caller

    def add(self, kind: str, detail: str, **fields: Any) -> None:
        if kind in self.ignored:
            return
        entry = jsonable({"kind": kind, "detail": detail, **{k: v for k, v in fields.items() if v is not None}})
        self.items.append(entry)
        logger.warning("live reconciliation difference", extra={
            "difference": kind, **{k: v for k, v in entry.items() if k not in ("kind", "detail")}})


def fill_trade_id(order_id: uuid.UUID, trade: VenueTrade) -> str:
    """A live fill's ``trade_id``: the order and the exchange's trade id (as placement writes it)."""
    return f"{order_id}-x{trade.id}"


class ReconciliationWriter:
    def __init__(self, runtime: Runtime, account_id: uuid.UUID, lease: Lease, findings: Findings) -> None:
        self.runtime = runtime
        self.clock: Clock = runtime.clock
        self.account_id = account_id
        self.lease = lease
        self.findings = findings

    async def _locked(self, session: AsyncSession) -> TradingAccount:
        await self.lease.assert_held(session)
        return await ledger.lock_account(session, self.account_id)

    # --- orders -------------------------------------------------------------------------------------

    async def settle(self, order_id: uuid.UUID, view: VenueOrder, trades: list[VenueTrade]) -> None:
        """Bring a known order (platform or external) up to what the exchange reports."""
        async with self.runtime.db.transaction() as session:
            account = await self._locked(session)
            row = await session.scalar(select(Order).where(Order.id == order_id, Order.account_id == account.id)
                                       .execution_options(populate_existing=True))
            if row is None or not row.is_open:
                return  # settled meanwhile (placement's own answer, a cancel): nothing to do
            await self._apply(session, account, row, view, trades, found=False)

    async def adopt_external(self, view: VenueOrder, instrument: Instrument, trades: list[VenueTrade]) -> None:
        """Record an order the platform did not place, with its fills: ``source: external``."""
        async with self.runtime.db.transaction() as session:
            account = await self._locked(session)
            existing = await session.scalar(select(Order.id).where(Order.account_id == account.id,
                                                                  Order.exchange_order_id == view.exchange_id))
            if existing is not None:
                row = await session.get(Order, existing, populate_existing=True)
                assert row is not None
                if row.is_open:
                    await self._apply(session, account, row, view, trades, found=False)
                return
            now = self.clock.now()
            row = self._external_row(account, view, instrument, await self._external_client_id(session, view), now)
            session.add(row)
            writer = OrderWriter(session, account, now)
            await writer.add_event(row, "received", OrderStatus.PENDING_NEW, {
                "source": OrderSource.EXTERNAL, "exchange_order_id": view.exchange_id,
                "exchange_client_order_id": view.client_order_id, "exchange_type": view.type,
                "exchange_status": view.status})
            if view.is_open:  # what the exchange locks for it, as far as the ledger has it free
                rest = sub(view.quantity, view.filled)
                need = mul(rest, view.price or ZERO) if row.side == "buy" else rest
                free = next((b.free for b in await ledger.get_balances(session, account.id)
                             if b.asset == row.reserved_asset), ZERO)
                await writer.reserve(row, min(need, free))
            await session.flush()
            await self._apply(session, account, row, view, trades, found=True)

    async def finalise_missing(self, order_id: uuid.UUID, waited: float) -> None:
        """A platform order left pending_new that the exchange has never seen: it never will now."""
        async with self.runtime.db.transaction() as session:
            account = await self._locked(session)
            row = await session.scalar(select(Order).where(Order.id == order_id, Order.account_id == account.id)
                                       .execution_options(populate_existing=True))
            if row is None or row.status != OrderStatus.PENDING_NEW:
                return
            now = self.clock.now()
            row.reject_code, row.reject_reason = "not_found_on_exchange", (
                "The exchange has no order with this client order id: it never reached it.")
            writer = OrderWriter(session, account, now)
            await writer.close(row, OrderStatus.REJECTED, reason="not_found_on_exchange", event_type="rejected")
            self.findings.add(DifferenceKind.PENDING_NOT_FOUND,
                              "A pending order the exchange never saw was ended as rejected; its reservation "
                              "was released.", order_id=row.id, client_order_id=row.client_order_id,
                              symbol=row.symbol, waited_seconds=round(waited, 3))

    async def _apply(self, session: AsyncSession, account: TradingAccount, row: Order, view: VenueOrder,
                     trades: list[VenueTrade], *, found: bool) -> None:
        recorded = set(await session.scalars(select(Fill.trade_id).where(Fill.order_id == row.id)))
        new = [t for t in trades if fill_trade_id(row.id, t) not in recorded]
        ends = not view.is_open
        was = row.status
        if not new and not ends and was != OrderStatus.PENDING_NEW:
            return
        now = self.clock.now()
        row.exchange_order_id = view.exchange_id
        order, events = settle_events(row, view, new, now)
        await OrderWriter(session, account, now).apply(row, order, events)
        external = row.source == OrderSource.EXTERNAL
        common = {"order_id": row.id, "exchange_order_id": view.exchange_id, "client_order_id": row.client_order_id,
                  "symbol": row.symbol, "status": row.status}
        fills = [{"trade_id": t.id, "price": t.price, "quantity": t.quantity} for t in new] or None
        if external and found:
            self.findings.add(DifferenceKind.EXTERNAL_ORDER, "An order placed outside TradePilot was found on the "
                              "exchange and recorded as external; TradePilot will never cancel it.", fills=fills,
                              **common)
        elif external:
            self.findings.add(DifferenceKind.EXTERNAL_FILLS, "An external order traded on the exchange.",
                              fills=fills, **common)
        elif was == OrderStatus.PENDING_NEW:
            self.findings.add(DifferenceKind.PENDING_ADOPTED, "A platform order whose answer was never recorded "
                              "is on the exchange: adopted with its fills.", fills=fills, **common)
        elif new:
            self.findings.add(DifferenceKind.FILLS_RECORDED, "A platform order traded on the exchange since the "
                              "platform last looked: its fills were recorded.", fills=fills, **common)
        if not external and was != OrderStatus.PENDING_NEW and ends and row.status != OrderStatus.FILLED:
            self.findings.add(DifferenceKind.CLOSED_ON_EXCHANGE, f"The order was {view.status} on the exchange, "
                              "not through TradePilot.", **common)

    @staticmethod
    def _external_row(account: TradingAccount, view: VenueOrder, instrument: Instrument, client_id: str,
                      now: datetime) -> Order:
        kind = view.type if view.type in EXTERNAL_TYPES else (OrderType.LIMIT if view.price else OrderType.MARKET)
        tif = view.time_in_force if view.time_in_force in EXTERNAL_TIME_IN_FORCE else "gtc"
        side = view.side or "buy"
        return Order(id=uuid.uuid4(), account_id=account.id, user_id=account.user_id, client_order_id=client_id,
                     venue=live_venue_name(account.venue), symbol=instrument.symbol, base_asset=instrument.base,
                     quote_asset=instrument.quote, side=side, type=kind, time_in_force=tif, quantity=view.quantity,
                     quote_quantity=None, price=view.price if kind == OrderType.LIMIT else None, stop_price=None,
                     trail_amount=None, trail_percent=None, post_only=False, reduce_only=False,
                     status=OrderStatus.PENDING_NEW, filled_quantity=ZERO, filled_notional=ZERO, fees=ZERO,
                     fee_asset=instrument.quote, reserved=ZERO,
                     reserved_asset=instrument.quote if side == "buy" else instrument.base, revision=0, seq=0,
                     fill_count=0, triggered=False, event_seq=0, exchange_order_id=view.exchange_id,
                     source=OrderSource.EXTERNAL, created_at=now, updated_at=now)

    async def _external_client_id(self, session: AsyncSession, view: VenueOrder) -> str:
        """The exchange's client id when the account has no order by it yet, else ``ext-<exchange id>``."""
        mine = (view.client_order_id or "")[:64]
        if mine and await session.scalar(select(Order.id).where(Order.account_id == self.account_id,
                                                                Order.client_order_id == mine)) is None:
            return mine
        return f"ext-{view.exchange_id}"[:64]

    # --- balances, cursors, the run --------------------------------------------------------------------

    async def balances(self, on_exchange: dict[str, tuple[Decimal, Decimal]], run_id: uuid.UUID) -> None:
        """Totals (free + locked) the exchange holds that the ledger does not: a deposit or a
        withdrawal the platform did not make, recorded against the ledger's ``external`` bucket."""
        async with self.runtime.db.transaction() as session:
            account = await self._locked(session)
            now = self.clock.now()
            mine = {b.asset: b for b in await ledger.get_balances(session, account.id)}
            for asset in sorted(set(mine) | set(on_exchange)):
                free, locked = on_exchange.get(asset, (ZERO, ZERO))
                theirs = add(free, locked)
                ours = mine[asset].total if asset in mine else ZERO
                if theirs == ours:
                    continue
                reference = ledger.Reference("reconciliation", run_id.hex)
                memo = "found by reconciliation: changed on the exchange, not through TradePilot"
                if theirs > ours:
                    await ledger.deposit(session, account, asset, sub(theirs, ours), now=now, reference=reference,
                                         dedupe_key=f"reconcile:{run_id.hex}:{asset}", memo=memo)
                    applied = sub(theirs, ours)
                else:
                    available = mine[asset].free
                    applied = min(sub(ours, theirs), available)
                    if applied > 0:
                        await ledger.withdraw(session, account, asset, applied, now=now, reference=reference,
                                              dedupe_key=f"reconcile:{run_id.hex}:{asset}", memo=memo)
                    applied = applied.copy_negate()
                self.findings.add(DifferenceKind.BALANCE_CHANGED, f"The exchange holds {theirs} {asset}, the "
                                  f"platform had {ours}: the difference was recorded as an external change.",
                                  asset=asset, platform=ours, exchange=theirs, applied=applied)
                if add(ours, applied) != theirs:
                    self.findings.add(DifferenceKind.BALANCE_UNRESOLVED, f"Only {applied} {asset} of the difference "
                                      "could be recorded: the rest is reserved by open orders.", asset=asset,
                                      platform=ours, exchange=theirs)

    async def advance_cursors(self, last_ids: dict[str, int]) -> None:
        if not last_ids:
            return
        async with self.runtime.db.transaction() as session:
            await self._locked(session)
            now = self.clock.now()
            for symbol, last in last_ids.items():
                cursor = await session.get(TradeCursor, (self.account_id, symbol))
                if cursor is None:
                    session.add(TradeCursor(account_id=self.account_id, symbol=symbol, last_trade_id=last,
                                            updated_at=now))
                elif last > cursor.last_trade_id:
                    cursor.last_trade_id, cursor.updated_at = last, now

    async def record_run(self, run: ReconciliationRun) -> None:
        """The run with its differences, the oldest runs beyond ``RUNS_KEPT`` pruned, and — when
        something differed or the run failed — an event on the user's account channel."""
        async with self.runtime.db.transaction() as session:
            await self.lease.assert_held(session)
            last = await session.scalar(select(func.max(ReconciliationRun.seq))
                                        .where(ReconciliationRun.account_id == run.account_id))
            run.seq = (last or 0) + 1
            session.add(run)
            await session.flush()
            keep = select(ReconciliationRun.id).where(ReconciliationRun.account_id == run.account_id) \
                .order_by(ReconciliationRun.seq.desc()).limit(RUNS_KEPT)
            await session.execute(delete(ReconciliationRun).where(ReconciliationRun.account_id == run.account_id,
                                                                  ReconciliationRun.id.not_in(keep.scalar_subquery())))
            if run.differences or run.error_code:
                await emit(session, topic=Topics.user(run.user_id, RECONCILIATION_KIND),
                           type=RECONCILIATION_COMPLETED, user_id=run.user_id,
                           payload={"account_id": run.account_id, "run": run_payload(run)})


def run_payload(run: ReconciliationRun) -> dict[str, Any]:
    return {"id": run.id, "account_id": run.account_id, "seq": run.seq, "trigger": run.trigger, "status": run.status,
            "differences": run.differences, "error_code": run.error_code, "started_at": run.started_at,
            "finished_at": run.finished_at}


def settle_events(row: Order, view: VenueOrder, new: list[VenueTrade],
                  now: datetime) -> tuple[EngineOrder, list[EngineEvent]]:
    """The exchange's report on ``row`` as engine events: accepted (if it was pending), each new
    fill with the order's running totals, and its end if the exchange ended it unfilled."""
    oid, aid = str(row.id), str(row.account_id)
    events: list[EngineEvent] = []
    filled, notional, fees = row.filled_quantity, row.filled_notional, row.fees
    status = EngineStatus.NEW if row.status == OrderStatus.PENDING_NEW else EngineStatus(row.status)
    if row.status == OrderStatus.PENDING_NEW:
        events.append(OrderAccepted(order_id=oid, account_id=aid, status=EngineStatus.NEW, seq=0, ts=now))
    for trade in new:
        fee_asset = trade.fee_asset or row.quote_asset
        events.append(EngineFill(order_id=oid, account_id=aid, symbol=row.symbol, side=Side(row.side),
                                 price=trade.price, quantity=trade.quantity, fee=trade.fee, fee_currency=fee_asset,
                                 liquidity=Liquidity.MAKER if trade.maker else Liquidity.TAKER,
                                 trade_id=fill_trade_id(row.id, trade), market_trade_id=trade.id, ts=now))
        previous = status
        filled, notional = add(filled, trade.quantity), add(notional, mul(trade.price, trade.quantity))
        if fee_asset == row.quote_asset:
            fees = add(fees, trade.fee)
        status = EngineStatus.FILLED if filled >= view.quantity else EngineStatus.PARTIALLY_FILLED
        events.append(OrderUpdated(order_id=oid, account_id=aid, status=status, previous_status=previous,
                                   filled_quantity=filled, remaining_quantity=sub(view.quantity, filled),
                                   filled_notional=notional, fees=fees, ts=now))
    if not view.is_open and status != EngineStatus.FILLED:
        status = EngineStatus.CANCELED
        events.append(OrderCanceled(order_id=oid, account_id=aid, reason=f"exchange_{view.status}",
                                    filled_quantity=filled, ts=now))
    order = LivePlacement._engine_state(row, status, filled, notional, fees, row.fill_count + len(new), now)
    return order, events
