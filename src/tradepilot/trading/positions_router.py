"""HTTP edge of positions: list, read, close, close-all, stop-loss and take-profit.

Another user's position id answers exactly like a missing one: 404 ``position_not_found``
(``owned_position``, an ownership dependency).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Depends, Query, Response, status
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.cursors import bad_cursor, decode_cursor, encode_cursor
from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import TradePilotError
from tradepilot.core.money import EXACT
from tradepilot.core.ownership import ownership_dependency
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.identity.deps import CurrentUser
from tradepilot.identity.idempotency import Idempotency
from tradepilot.market.service import normalize_symbol
from tradepilot.runtime import Runtime
from tradepilot.trading.deps import ReadUser, TradeUser
from tradepilot.trading.execution import order_payload
from tradepilot.trading.order_models import Order, Position
from tradepilot.trading.order_schemas import OrderOut
from tradepilot.trading.orders import check_account_filter
from tradepilot.trading.position_exits import PositionService, open_exits, position_not_found
from tradepilot.trading.position_models import ExitKind
from tradepilot.trading.position_schemas import (
    CloseAllOut,
    CloseError,
    CloseResult,
    ExitOut,
    PositionClose,
    PositionsCloseAll,
    PositionView,
    StopLossIn,
    TakeProfitIn,
)
from tradepilot.trading.positions import position_payload, unrealised_pnl

router = api_router(prefix="/api/trading", tags=["positions"])

_NOT_FOUND = {404: {"description": "No such position, or not yours (position_not_found)"}}
_EXIT_ERRORS = {**_NOT_FOUND,
                409: {"description": "The position is flat (position_not_open), the account closed (account_closed)"},
                422: {"description": "invalid_tick_size, below_min_notional, stop_loss_would_trigger, "
                                     "take_profit_would_trigger, insufficient_position, open_orders_limit"}}


def get_positions(runtime: RuntimeDep) -> PositionService:
    return runtime.services["positions"]  # type: ignore[no-any-return]


Positions = Annotated[PositionService, Depends(get_positions)]


@ownership_dependency
async def owned_position(position_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> Position:
    """The caller's position; 404 ``position_not_found`` alike for a missing id and another user's."""
    row = await db.get(Position, position_id)
    if row is None or row.user_id != principal.id:
        raise position_not_found()
    return row


OwnedPosition = Annotated[Position, Depends(owned_position)]


# --- views -------------------------------------------------------------------------------------

def _exit_out(order: Order | None) -> ExitOut | None:
    if order is None:
        return None
    return ExitOut(order_id=order.id, type=order.type,  # type: ignore[arg-type]
                   price=order.price if order.type == "limit" else order.stop_price,  # type: ignore[arg-type]
                   quantity=EXACT.subtract(order.quantity or 0, order.filled_quantity), status=order.status,  # type: ignore[arg-type]
                   created_at=order.created_at)


async def position_views(session: AsyncSession, runtime: Runtime, rows: list[Position]) -> list[PositionView]:
    market = runtime.services["market"]
    exits = await open_exits(session, [row.id for row in rows])
    out = []
    for row in rows:
        mark = market.last_price(row.symbol)
        mine = exits.get(row.id, {})
        out.append(PositionView(
            **position_payload(row), mark_price=mark, unrealised_pnl=unrealised_pnl(row, mark),
            exposure=None if mark is None else EXACT.multiply(row.quantity, mark),
            status="open" if row.quantity != 0 else "closed", net_pnl=EXACT.subtract(row.realised_pnl, row.fees),
            stop_loss=_exit_out(mine.get(ExitKind.STOP_LOSS)), take_profit=_exit_out(mine.get(ExitKind.TAKE_PROFIT))))
    return out


async def _view(session: AsyncSession, runtime: Runtime, position_id: uuid.UUID) -> PositionView:
    row = await session.scalar(select(Position).where(Position.id == position_id)
                               .execution_options(populate_existing=True))
    if row is None:
        raise position_not_found()
    return (await position_views(session, runtime, [row]))[0]


def _position_cursor(account_id: uuid.UUID, symbol: str) -> str:
    return encode_cursor(account_id.hex, symbol)


def _decode_position_cursor(cursor: str) -> tuple[uuid.UUID, str]:
    account, symbol = decode_cursor(cursor, 2)
    try:
        return uuid.UUID(hex=account), symbol
    except ValueError:
        raise bad_cursor() from None


# --- reading -----------------------------------------------------------------------------------

@router.get("/positions", response_model=Page[PositionView], summary="Your positions",
            responses={404: {"description": "account_id names no account of yours (account_not_found)"}})
async def list_positions(
    principal: ReadUser,
    db: DbSession,
    runtime: RuntimeDep,
    account_id: uuid.UUID | None = None,
    symbol: Annotated[str | None, Query(max_length=32)] = None,
    status_: Annotated[Literal["open", "closed"] | None, Query(
        alias="status", description="`open`: quantity ≠ 0; `closed`: flat")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> Page[PositionView]:
    """Per account and symbol, average-cost method, marked at the symbol's last trade price, with
    the stop-loss / take-profit in force."""
    await check_account_filter(db, principal.id, account_id)
    query = select(Position).where(Position.user_id == principal.id)
    if account_id is not None:
        query = query.where(Position.account_id == account_id)
    if symbol is not None:
        query = query.where(Position.symbol == normalize_symbol(symbol))
    if status_ == "open":
        query = query.where(Position.opened_at.is_not(None))  # set exactly while the quantity is not 0
    elif status_ == "closed":
        query = query.where(Position.opened_at.is_(None))
    if cursor is not None:
        after_account, after_symbol = _decode_position_cursor(cursor)
        query = query.where(or_(Position.account_id > after_account,
                                and_(Position.account_id == after_account, Position.symbol > after_symbol)))
    rows = list(await db.scalars(query.order_by(Position.account_id, Position.symbol).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _position_cursor(rows[-1].account_id, rows[-1].symbol)
    return Page[PositionView](items=await position_views(db, runtime, rows), next_cursor=next_cursor)


@router.get("/positions/{position_id}", response_model=PositionView, summary="A position", responses=_NOT_FOUND)
async def get_position(position: OwnedPosition, principal: ReadUser, db: DbSession,
                       runtime: RuntimeDep) -> PositionView:
    return (await position_views(db, runtime, [position]))[0]


# --- closing -----------------------------------------------------------------------------------

@router.post("/positions/{position_id}/close", status_code=status.HTTP_201_CREATED, response_model=OrderOut,
             summary="Close a position at market",
             responses={**_NOT_FOUND,
                        409: {"description": "The position is flat (position_not_open), account_closed"},
                        422: {"description": "quantity_exceeds_position, invalid_step_size, below_min_notional, "
                                             "insufficient_position (coins locked by your other sell orders)"},
                        503: {"description": "No order book yet (market_data_unavailable)"}})
async def close_position(idem: Idempotency, position: OwnedPosition, principal: TradeUser, db: DbSession,
                         positions: Positions, body: PositionClose | None = None) -> Response:
    """Sells the position (or `quantity` of it) with a reduce-only market order, answered like
    `POST /orders` (201, the order). Its stop-loss / take-profit are canceled (flat) or resized
    in the same transaction. Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    body = body or PositionClose()
    row = await positions.close(db, principal, account_id=position.account_id, symbol=position.symbol,
                                held=position.quantity, quantity=body.quantity,
                                client_order_id=body.client_order_id)
    answer = await idem.respond(db, OrderOut.of(order_payload(row)), status=status.HTTP_201_CREATED)
    await db.commit()
    return answer


@router.post("/positions/close-all", response_model=CloseAllOut, summary="Close every open position at market",
             responses={404: {"description": "account_id names no account of yours (account_not_found)"}})
async def close_all_positions(idem: Idempotency, principal: TradeUser, db: DbSession, runtime: RuntimeDep,
                              positions: Positions, body: PositionsCloseAll | None = None) -> Response:
    """One reduce-only market sell per open position (optionally of one account / symbol), each
    in its own transaction: the answer lists each position's order, or why it could not be
    closed (`status`, `error.code`). Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    body = body or PositionsCloseAll()
    await check_account_filter(db, principal.id, body.account_id)
    query = select(Position.id, Position.account_id, Position.symbol, Position.quantity).where(
        Position.user_id == principal.id, Position.opened_at.is_not(None))
    if body.account_id is not None:
        query = query.where(Position.account_id == body.account_id)
    if body.symbol is not None:
        query = query.where(Position.symbol == normalize_symbol(body.symbol))
    targets = list((await db.execute(query.order_by(Position.account_id, Position.symbol))).all())
    await db.rollback()  # end the read: each close is its own transaction
    items = []
    for position_id, account_id, symbol, held in targets:
        result = CloseResult(position_id=position_id, account_id=account_id, symbol=symbol, status=201)
        try:
            row = await positions.close(db, principal, account_id=account_id, symbol=symbol, held=held)
            result.order = OrderOut.of(order_payload(row))
            await db.commit()
        except TradePilotError as exc:
            await db.rollback()
            result.status, result.error = exc.status, CloseError(code=exc.code, detail=exc.detail)
        items.append(result)
    answer = await idem.respond(db, CloseAllOut(items=items))
    await db.commit()
    return answer


# --- exits -------------------------------------------------------------------------------------

@router.put("/positions/{position_id}/stop-loss", response_model=PositionView, summary="Set the stop-loss",
            responses=_EXIT_ERRORS)
async def set_stop_loss(position: OwnedPosition, principal: TradeUser, db: DbSession, runtime: RuntimeDep,
                        positions: Positions, body: StopLossIn) -> PositionView:
    """A server-side reduce-only `stop` sell of the whole position: once a trade prints at or
    below `stop_price`, it sells at market. Replaces the previous stop-loss; follows the
    position (resized when it changes, canceled when it is closed); survives restarts.
    `{"stop_price": null}` removes it. Answers the position."""
    position_id = position.id  # a live account's exit ends the session's transaction first
    if body.stop_price is None:
        await positions.remove_exit(db, position_id, ExitKind.STOP_LOSS)
    else:
        await positions.set_exit(db, principal, position_id, ExitKind.STOP_LOSS, order_type="stop",
                                 trigger=body.stop_price)
    await db.commit()
    return await _view(db, runtime, position_id)


@router.delete("/positions/{position_id}/stop-loss", response_model=PositionView, summary="Remove the stop-loss",
               responses=_NOT_FOUND)
async def remove_stop_loss(position: OwnedPosition, principal: TradeUser, db: DbSession, runtime: RuntimeDep,
                           positions: Positions) -> PositionView:
    await positions.remove_exit(db, position.id, ExitKind.STOP_LOSS)
    await db.commit()
    return await _view(db, runtime, position.id)


@router.put("/positions/{position_id}/take-profit", response_model=PositionView, summary="Set the take-profit",
            responses=_EXIT_ERRORS)
async def set_take_profit(position: OwnedPosition, principal: TradeUser, db: DbSession, runtime: RuntimeDep,
                          positions: Positions, body: TakeProfitIn) -> PositionView:
    """A server-side reduce-only sell of the whole position once a trade prints at or above
    `price`: a `take_profit` order (sells at market when it fires, the default) or a `limit`
    order resting at `price`. Replaces the previous take-profit; follows the position; survives
    restarts. `{"price": null}` removes it. Answers the position."""
    position_id = position.id  # a live account's exit ends the session's transaction first
    if body.price is None:
        await positions.remove_exit(db, position_id, ExitKind.TAKE_PROFIT)
    else:
        await positions.set_exit(db, principal, position_id, ExitKind.TAKE_PROFIT, order_type=body.type,
                                 trigger=body.price)
    await db.commit()
    return await _view(db, runtime, position_id)


@router.delete("/positions/{position_id}/take-profit", response_model=PositionView,
               summary="Remove the take-profit", responses=_NOT_FOUND)
async def remove_take_profit(position: OwnedPosition, principal: TradeUser, db: DbSession, runtime: RuntimeDep,
                             positions: Positions) -> PositionView:
    await positions.remove_exit(db, position.id, ExitKind.TAKE_PROFIT)
    await db.commit()
    return await _view(db, runtime, position.id)
