"""The panic button's ``close_positions`` on live accounts (docs/exchanges.md, docs/orders.md).

A live account's position can hold more than TradePilot bought: reconciliation records trades
the user made by hand (``source: external``) into the same position, and the exchange account
may hold coins that never went through the platform at all. The panic button must never sell
those. So each long position is closed by a market sell of the **platform-held** quantity
only — what the platform's own fills brought in and have not sold yet (net of fees taken in
the base asset) — capped by the position and by what the ledger holds free, rounded down to
the exchange's step. Each sell is an ordinary live order (``LivePlacement.place``: recorded
first, sent once with a ``tp-`` client id, never lost), reduce-only and allowed while the
platform is halted. No database transaction is held across the network.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import TradePilotError, Unprocessable
from tradepilot.core.money import EXACT
from tradepilot.identity.principal import AuthUser
from tradepilot.trading import ledger
from tradepilot.trading.execution import add, sub
from tradepilot.trading.live.accounts import live_venues
from tradepilot.trading.models import AccountKind, TradingAccount
from tradepilot.trading.order_actions import CloseResult, owned_accounts, problem_of
from tradepilot.trading.order_models import Fill, Order, OrderSource, Position
from tradepilot.trading.order_schemas import OrderCreate

if TYPE_CHECKING:
    from tradepilot.trading.orders import OrderService

ZERO = Decimal(0)


async def platform_held(session: AsyncSession, account_id: uuid.UUID, symbol: str, base_asset: str) -> Decimal:
    """The base quantity the platform's own fills of ``symbol`` hold on the account: bought
    minus sold, minus fees the exchange took in the base asset (never below zero). Summed in
    Python: no SQL aggregate over money on SQLite."""
    held = ZERO
    for side, quantity, fee, fee_asset in (await session.execute(
            select(Fill.side, Fill.quantity, Fill.fee, Fill.fee_asset).where(
                Fill.account_id == account_id, Fill.symbol == symbol,
                Fill.source == OrderSource.PLATFORM))).all():
        held = add(held, quantity) if side == "buy" else sub(held, quantity)
        if fee_asset == base_asset:
            held = sub(held, fee)
    return max(held, ZERO)


def floor_to_step(quantity: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return quantity
    return EXACT.divide(quantity, step).quantize(Decimal(1), rounding=ROUND_FLOOR, context=EXACT) * step


async def _live_positions(service: OrderService, principal: AuthUser,
                          account_id: uuid.UUID | None) -> list[tuple[Position, Decimal]]:
    """(long position, what of it may be sold: platform-held and free), of the caller's live accounts."""
    out: list[tuple[Position, Decimal]] = []
    async with service.runtime.db.read() as session:
        accounts = await owned_accounts(session, principal, account_id)
        live = set(await session.scalars(select(TradingAccount.id).where(
            TradingAccount.id.in_(accounts), TradingAccount.kind == AccountKind.LIVE)))
        positions = [p for p in await session.scalars(select(Position).where(Position.account_id.in_(live))
                                                      .order_by(Position.account_id, Position.symbol))
                     if p.quantity > 0]
        for position in positions:
            free = next((b.free for b in await ledger.get_balances(session, position.account_id)
                         if b.asset == position.base_asset), ZERO)
            mine = await platform_held(session, position.account_id, position.symbol, position.base_asset)
            session.expunge(position)
            out.append((position, min(position.quantity, mine, free)))
    return out


async def close_live_positions(service: OrderService, principal: AuthUser, *,
                               account_id: uuid.UUID | None) -> list[CloseResult]:
    """Sell the platform-held part of each long position of the caller's live accounts at
    market; one result per position (201 / 202 with the order, or the problem)."""
    results: list[CloseResult] = []
    for position, quantity in await _live_positions(service, principal, account_id):
        try:
            account = await service.live.account_of(position.account_id)
            async with live_venues(service.runtime).open(account) as exchange:
                instrument = await exchange.instrument(position.symbol)
            quantity = floor_to_step(quantity, instrument.step_size)
            if quantity <= 0:
                raise Unprocessable("Nothing the platform bought is held free on this position (less than one "
                                    "step of the instrument): holdings from outside TradePilot are never sold.",
                                    code="nothing_to_close")
            body = OrderCreate(symbol=position.symbol, side="sell", type="market", quantity=quantity,
                               reduce_only=True, account_id=position.account_id)

            async def finish(session: AsyncSession, row: Order, status_code: int) -> tuple[Order, int]:
                return row, status_code

            row, status_code = await service.live.place(principal, body, account, finish, halt_exempt=True)
        except TradePilotError as exc:
            results.append(CloseResult(position.account_id, position.symbol, quantity, exc.status,
                                       error=problem_of(exc)))
            continue
        results.append(CloseResult(position.account_id, position.symbol, quantity, status_code, order=row))
    return results
