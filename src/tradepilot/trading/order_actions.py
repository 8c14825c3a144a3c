"""The rest of the orders API: modify, bulk placement, cancel-all and the panic button
(docs/orders.md). Each works on the order service's rows under the account's lock, in the
caller's transaction, and writes through the same writers as placement and matching.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, NotFound, TradePilotError, Unprocessable
from tradepilot.core.money import EXACT, to_plain_string
from tradepilot.identity.principal import AuthUser
from tradepilot.trading import ledger, risk
from tradepilot.trading.engine import ModifyRejected, OrderModified
from tradepilot.trading.engine.orders import STOP_TYPES, OrderType
from tradepilot.trading.filters import OrderAmounts, check_filters
from tradepilot.trading.halt import ensure_not_halted
from tradepilot.trading.models import AccountKind, TradingAccount
from tradepilot.trading.order_groups import (
    BRACKET,
    EXIT_ROLES,
    group_rows,
    load_rows,
    reservation_need,
    transient_engine,
    write_events,
)
from tradepilot.trading.order_models import Order, OrderSource, OrderStatus, Position
from tradepilot.trading.order_schemas import OrderCreate, OrderModify
from tradepilot.trading.orders import _priority, live_account_not_supported, order_not_found
from tradepilot.trading.service import TradingService

if TYPE_CHECKING:
    from tradepilot.trading.orders import OrderService

ZERO = Decimal(0)
MAX_BATCH = 50  # orders per POST /orders/bulk
_OPEN = tuple(OrderStatus.OPEN)


def order_not_open(row: Order) -> Conflict:
    return Conflict(f"The order is already {row.status}.", code="order_not_open", extra={"status": row.status})


def problem_of(exc: TradePilotError) -> dict[str, Any]:
    """An error as the API would answer it (problem+json members), for per-item results."""
    return {"type": f"https://tradepilot.dev/problems/{exc.code}", "title": exc.title, "status": exc.status,
            "detail": exc.detail, "code": exc.code, **exc.extra}


# --- modify ---------------------------------------------------------------------------------------

async def modify(service: OrderService, session: AsyncSession, row: Order, body: OrderModify) -> Order:
    """Change price / quantity / stop price / trail of an open order in the caller's transaction.

    Same id, ``revision`` + 1; the reservation follows exactly through the ledger (more locked,
    or some released); a new limit price that crosses the book takes like a new order. The
    matching owner learns of it from the ``order.updated`` event and applies it at the new
    revision — whichever of this modify and a fill at the old revision commits first wins.
    """
    now = service.clock.now()
    changes = {name: getattr(body, name) for name in ("price", "quantity", "stop_price", "trail_amount",
                                                       "trail_percent") if getattr(body, name) is not None}
    if not changes:
        raise Unprocessable("Give price, quantity, stop_price, trail_amount or trail_percent.",
                            code="nothing_to_modify")
    await ensure_not_halted(session)
    account = await ledger.lock_account(session, row.account_id)
    if account.is_live:
        raise live_account_not_supported()
    current = await session.scalar(select(Order).where(Order.id == row.id).execution_options(populate_existing=True))
    if current is None:
        raise order_not_found()
    if not current.is_open:
        raise order_not_open(current)
    if body.revision is not None and body.revision != current.revision:
        raise Conflict(f"The order is at revision {current.revision}, not {body.revision}.",
                       code="revision_mismatch", extra={"revision": current.revision})

    market = service.market
    instrument = market.instrument(current.symbol)
    book, last = market.order_book(current.symbol), market.last_price(current.symbol)
    is_exit = current.group_role in EXIT_ROLES
    new_quantity = changes.get("quantity", current.quantity)
    new_price = changes.get("price", current.price)
    new_stop = changes.get("stop_price", current.stop_price) if current.type in STOP_TYPES else None
    reference = None
    if book is not None:
        side = book.asks if current.side == "buy" else book.bids
        reference = side[0][0] if side else None
    check_filters(instrument, OrderAmounts(
        quantity=None if is_exit and current.group_kind == BRACKET else new_quantity,
        price=new_price, stop_price=new_stop), reference_price=reference or last)
    trail_percent = changes.get("trail_percent")
    if trail_percent is not None and -trail_percent.as_tuple().exponent > 8:  # type: ignore[operator]
        raise Unprocessable("trail_percent takes at most 8 decimal places.", code="invalid_trail")
    if "price" in changes and current.type == OrderType.LIMIT:  # a fat finger, as at placement
        risk._check_collar(risk.OrderIntent(side=current.side, type=current.type, quantity=None,
                                            limit_price=changes["price"]),
                           risk.MarketSnapshot(last=last, best_bid=None, best_ask=None),
                           risk.RiskLimits(max_open_orders=0))

    engine = transient_engine(service, instrument, book, last)
    groups = await group_rows(session, [current.group_id]) if current.group_id is not None else {}
    members = groups[current.group_id] if current.group_id is not None else [current]
    orders = load_rows(engine, members, groups)
    target = orders[str(current.id)]
    filled_before = target.filled_quantity
    events = engine.modify(str(current.id), now, **changes)
    refused = next((e for e in events if isinstance(e, ModifyRejected) and e.order_id == target.id), None)
    if refused is not None:
        if refused.code == "order_closed":
            raise order_not_open(current)
        raise Unprocessable(refused.detail, code=refused.code)
    modified = next(e for e in events if isinstance(e, OrderModified) and e.order_id == target.id)
    if modified.lost_priority:
        target.seq = _priority(now)  # the back of its level, across processes

    if not is_exit:  # an exit's reservation is its group's, re-sized by the group writer
        need = reservation_need(side=current.side, type_=current.type, quantity=target.quantity,
                                filled=filled_before, price=target.price, stop_price=modified.stop_price,
                                rates=service.rates)
        await _adjust_reservation(session, account, current, need, now)
    rows = {str(r.id): r for r in members}
    await write_events(session, account, now, service.rates, events,
                       {oid: (rows[oid], order) for oid, order in orders.items()}, groups)
    return current


async def _adjust_reservation(session: AsyncSession, account: TradingAccount, row: Order, need: Decimal,
                              now: Any) -> None:
    from tradepilot.trading.execution import order_reference, sub

    if need > row.reserved:
        more = sub(need, row.reserved)
        if row.side == "sell":  # spot: more to sell than the free holding is a position problem
            free = next((b.free for b in await ledger.get_balances(session, account.id)
                         if b.asset == row.reserved_asset), ZERO)
            if more > free:
                raise risk.RiskRejected(
                    f"You can sell at most {to_plain_string(free)} more; spot accounts cannot go short.",
                    code="insufficient_position",
                    extra={"requested": to_plain_string(more), "available": to_plain_string(free)})
        await ledger.reserve(session, account, row.reserved_asset, more, now=now, reference=order_reference(row))
        row.reserved = need
    elif need < row.reserved:
        await ledger.release(session, account, row.reserved_asset, sub(row.reserved, need), now=now,
                             reference=order_reference(row))
        row.reserved = need


# --- cancel all ---------------------------------------------------------------------------------------

async def owned_accounts(session: AsyncSession, principal: AuthUser, account_id: uuid.UUID | None) -> list[uuid.UUID]:
    """The caller's account ids (one, if named: 404 ``account_not_found`` if not theirs), sorted —
    the order in which several accounts are locked, so two such requests cannot deadlock."""
    query = select(TradingAccount.id).where(TradingAccount.user_id == principal.id)
    if account_id is not None:
        query = query.where(TradingAccount.id == account_id)
    ids = sorted(await session.scalars(query))
    if account_id is not None and not ids:
        raise NotFound("Trading account not found.", code="account_not_found")
    return ids


async def cancel_all(service: OrderService, session: AsyncSession, principal: AuthUser, *,
                     account_id: uuid.UUID | None = None, symbol: str | None = None,
                     reason: str = "canceled_by_user") -> list[Order]:
    """Cancel every open order of the caller's paper accounts (of one account, of one symbol) in
    the caller's transaction; returns the orders it canceled. Group rules apply (a bracket's exits
    go with it), and only the caller's own orders are ever touched. Live accounts are skipped:
    ``live.bulk_cancel`` cancels theirs on the exchange once this transaction is committed."""
    now = service.clock.now()
    canceled: list[Order] = []
    for aid in await owned_accounts(session, principal, account_id):
        query = select(Order.id).where(Order.account_id == aid, Order.user_id == principal.id,
                                       Order.status.in_(_OPEN),
                                       Order.source == OrderSource.PLATFORM)  # never an external order
        if symbol is not None:
            query = query.where(Order.symbol == symbol)
        if await session.scalar(query.limit(1)) is None:
            continue
        account = await ledger.lock_account(session, aid)
        if account.is_live:  # the exchange's to cancel, outside this transaction (live/bulk_cancel.py)
            continue
        rows = list(await session.scalars(select(Order).where(Order.id.in_(query.scalar_subquery()))
                                          .execution_options(populate_existing=True)))
        groups = await group_rows(session, [r.group_id for r in rows if r.group_id is not None])
        engine = transient_engine(service, None, None, None)
        orders = load_rows(engine, rows, groups)
        events = engine.cancel_all(str(aid), now, symbol=symbol, reason=reason)
        by_id = {str(r.id): r for r in rows}
        for members in groups.values():
            by_id.update({str(r.id): r for r in members})
        await write_events(session, account, now, service.rates, events,
                           {oid: (by_id[oid], order) for oid, order in orders.items()}, groups)
        canceled.extend(r for r in by_id.values() if str(r.id) in orders and r.status == OrderStatus.CANCELED)
    canceled.sort(key=lambda r: (r.created_at, str(r.id)))
    return canceled


# --- bulk placement ------------------------------------------------------------------------------------

@dataclass(slots=True)
class ItemResult:
    index: int
    status_code: int
    order: Order | None = None
    error: dict[str, Any] | None = None


def _validation_problem(exc: ValidationError) -> dict[str, Any]:
    errors = [{"field": ".".join(str(p) for p in err.get("loc", ())), "in": "body", "code": err.get("type"),
               "message": err.get("msg")} for err in exc.errors()]
    custom = sorted({e["code"] for e in errors} & {"decimal_precision_loss"})
    code = custom[0] if custom else "validation_error"
    return {"type": f"https://tradepilot.dev/problems/{code}", "title": "Validation failed", "status": 422,
            "detail": "; ".join(f"{e['field']}: {e['message']}" for e in errors), "code": code, "errors": errors}


async def place_batch(service: OrderService, session: AsyncSession, principal: AuthUser,
                      items: list[Any], *, atomic: bool) -> list[ItemResult]:
    """Place each item as ``POST /orders`` would, each in a savepoint of the caller's transaction:
    a failed item writes nothing (its savepoint is rolled back) and the others go on. With
    ``atomic`` the caller must roll everything back if any item failed."""
    if len(items) > MAX_BATCH:
        raise Unprocessable(f"At most {MAX_BATCH} orders per batch ({len(items)} given).", code="batch_too_large",
                            extra={"max": MAX_BATCH, "given": len(items)})
    await ensure_not_halted(session)
    bodies: list[OrderCreate | ItemResult] = []
    for index, raw in enumerate(items):
        try:
            bodies.append(OrderCreate.model_validate(raw))
        except ValidationError as exc:
            bodies.append(ItemResult(index, 422, error=_validation_problem(exc)))
    await _lock_batch_accounts(service, session, principal, [b for b in bodies if isinstance(b, OrderCreate)])
    results: list[ItemResult] = []
    for index, body in enumerate(bodies):
        if isinstance(body, ItemResult):
            results.append(body)
            continue
        try:
            prepared = service.prepare(body)
            async with session.begin_nested():
                row = await service.place(session, principal, prepared)
        except TradePilotError as exc:
            results.append(ItemResult(index, exc.status, error=problem_of(exc)))
            continue
        results.append(ItemResult(index, 201, order=row))
    return results


async def _lock_batch_accounts(service: OrderService, session: AsyncSession, principal: AuthUser,
                               bodies: list[OrderCreate]) -> None:
    """Lock every account the batch trades from, in id order, before the first item."""
    trading: TradingService = service.runtime.services["trading"]
    wanted: set[uuid.UUID] = {b.account_id for b in bodies if b.account_id is not None}
    if any(b.account_id is None for b in bodies):
        await trading.ensure_default_account(session, user_id=principal.id)
        default = await session.scalar(select(TradingAccount.id).where(
            TradingAccount.user_id == principal.id, TradingAccount.is_default.is_(True)))
        if default is not None:
            wanted.add(default)
    owned = set(await owned_accounts(session, principal, None))
    for aid in sorted(wanted & owned):
        await ledger.lock_account(session, aid)


# --- panic --------------------------------------------------------------------------------------------

@dataclass(slots=True)
class CloseResult:
    account_id: uuid.UUID
    symbol: str
    quantity: Decimal
    status_code: int
    order: Order | None = None
    error: dict[str, Any] | None = None


async def close_positions(service: OrderService, session: AsyncSession, principal: AuthUser, *,
                          account_id: uuid.UUID | None) -> list[CloseResult]:
    """Sell every long spot position of the caller's paper accounts at market (reduce-only, through
    ``OrderService.place``), each in its own savepoint; allowed while the platform is halted.
    Live accounts' positions are ``live.closing``'s (the exchange first, no transaction held)."""
    results: list[CloseResult] = []
    accounts = await owned_accounts(session, principal, account_id)
    if not accounts:
        return results
    positions = [p for p in await session.scalars(select(Position).where(Position.account_id.in_(accounts))
                                                  .order_by(Position.account_id, Position.symbol))
                 if p.quantity > 0]
    live = set(await session.scalars(select(TradingAccount.id).where(
        TradingAccount.id.in_(accounts), TradingAccount.kind == AccountKind.LIVE)))
    for position in positions:
        if position.account_id in live:  # live.closing sells only the platform-held part, outside this transaction
            continue
        free = next((b.free for b in await ledger.get_balances(session, position.account_id)
                     if b.asset == position.base_asset), ZERO)
        quantity = min(position.quantity, free)
        try:
            instrument = service.market.instrument(position.symbol)
            step = instrument.step_size
            if step > 0:
                quantity = EXACT.divide(quantity, step).quantize(Decimal(1), rounding=ROUND_FLOOR,
                                                                 context=EXACT) * step
            if quantity <= 0:
                raise Unprocessable("Nothing free to sell (less than one step of the instrument).",
                                    code="nothing_to_close")
            body = OrderCreate(symbol=position.symbol, side="sell", type="market", quantity=quantity,
                               reduce_only=True, account_id=position.account_id)
            prepared = service.prepare(body)
            async with session.begin_nested():
                row = await service.place(session, principal, prepared, halt_exempt=True)
        except TradePilotError as exc:
            results.append(CloseResult(position.account_id, position.symbol, quantity, exc.status,
                                       error=problem_of(exc)))
            continue
        results.append(CloseResult(position.account_id, position.symbol, quantity, 201, order=row))
    return results
