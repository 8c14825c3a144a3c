"""Positions by the average-cost method.

A buy adds to the position at its price: the new average entry is the quantity-weighted mean
of the old average and the fill price. A sell realises ``(price − average entry) × quantity``
and leaves the average unchanged; selling everything flattens the position (no average).

The position keeps its **cost basis** (what the open quantity cost, exactly: fills add
``price × quantity``) and the average is that cost ÷ quantity rounded once — not a running
average rounded at every fill, which drifts by 1e-18 per fill from what the orders averaged.
A sell scales the cost with the quantity left, so the average stays.

Fees are kept apart (``Position.fees``): ``realised_pnl`` is gross, the net is
``realised_pnl − fees``.

Spot accounts cannot be short: a sell larger than the traded position (coins that were
deposited, so have no known cost) realises P&L only on the part the position covers, and the
position stops at zero. The average is rounded half-even at 18 decimals (the column's scale);
realised P&L likewise.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.trading.order_models import Position

ZERO = Decimal(0)
SCALE = Decimal("1e-18")
_WIDE = Context(prec=120)


def _round(value: Decimal) -> Decimal:
    return value.quantize(SCALE, rounding=ROUND_HALF_EVEN, context=_WIDE)


@dataclass(frozen=True, slots=True)
class PositionState:
    quantity: Decimal
    average_entry_price: Decimal | None
    realised_pnl: Decimal
    cost: Decimal | None = None  # the open quantity's cost; None: quantity × average (older rows)

    def basis(self) -> Decimal:
        if self.cost is not None:
            return self.cost
        return _WIDE.multiply(abs(self.quantity), self.average_entry_price or ZERO)


def apply_fill(state: PositionState, *, side: str, price: Decimal, quantity: Decimal,
               allow_short: bool = False) -> PositionState:
    """The position after one fill (pure; fees are not part of the average)."""
    held, avg, realised = state.quantity, state.average_entry_price, state.realised_pnl
    signed = quantity if side == "buy" else -quantity
    if held == 0 or (held > 0) == (signed > 0):  # opening or adding
        if held == 0 and signed < 0 and not allow_short:
            return state  # nothing held to sell (deposited coins): no position, nothing realised
        new = _WIDE.add(held, signed)
        cost = _round(_WIDE.add(state.basis() if held else ZERO, _WIDE.multiply(quantity, price)))
        return PositionState(new, _round(_WIDE.divide(cost, abs(new))), realised, cost)
    closing = min(quantity, abs(held))
    direction = 1 if held > 0 else -1
    assert avg is not None
    realised = _round(_WIDE.add(realised, _WIDE.multiply(_WIDE.subtract(price, avg), closing) * direction))
    new = _WIDE.add(held, signed)
    if new == 0 or ((new > 0) != (held > 0) and not allow_short):
        return PositionState(ZERO, None, realised, ZERO)
    if (new > 0) != (held > 0):  # flipped through zero: the rest opens at this price
        return PositionState(new, price, realised, _round(_WIDE.multiply(abs(new), price)))
    left = _round(_WIDE.divide(_WIDE.multiply(state.basis(), abs(new)), abs(held)))  # the average stays
    return PositionState(new, avg, realised, left)


_POSITION = (select(Position)  # built once: its cache key is memoised (the order path runs it per fill)
             .where(Position.account_id == bindparam("account_id"), Position.symbol == bindparam("symbol"))
             .execution_options(populate_existing=True))


async def position_for_update(session: AsyncSession, *, account_id: uuid.UUID, user_id: uuid.UUID, symbol: str,
                              base: str, quote: str, now: datetime) -> Position:
    """The account's position in ``symbol`` (created flat if missing). Call with the account
    locked (``ledger.lock_account``): every writer of an account's positions holds that lock."""
    row = await session.scalar(_POSITION, {"account_id": account_id, "symbol": symbol})
    if row is None:
        row = Position(account_id=account_id, user_id=user_id, symbol=symbol, base_asset=base, quote_asset=quote,
                       quantity=ZERO, average_entry_price=None, cost_basis=ZERO, realised_pnl=ZERO, fees=ZERO, opened_at=None,
                       updated_at=now)
        session.add(row)
    return row


def record_fill(row: Position, *, side: str, price: Decimal, quantity: Decimal, fee: Decimal,
                now: datetime) -> Decimal:
    """Apply one fill to the position; returns the P&L it realised (gross, 0 for an opening fill).

    The realised figures of an account's fills add up exactly to the position's ``realised_pnl``
    (each is the difference of two rounded running totals)."""
    before = row.quantity
    realised_before = row.realised_pnl
    after = apply_fill(PositionState(row.quantity, row.average_entry_price, row.realised_pnl, row.cost_basis),
                       side=side, price=price, quantity=quantity)
    row.quantity, row.average_entry_price, row.realised_pnl = after.quantity, after.average_entry_price, \
        after.realised_pnl
    row.cost_basis = after.cost
    row.fees = _WIDE.add(row.fees, fee)
    if after.quantity == 0:
        row.opened_at = None
    elif before == 0 or (before > 0) != (after.quantity > 0):
        row.opened_at = now
    row.updated_at = now
    return _WIDE.subtract(after.realised_pnl, realised_before)


def position_payload(row: Position) -> dict[str, Any]:
    return {
        "id": row.id, "account_id": row.account_id, "symbol": row.symbol, "base_asset": row.base_asset,
        "quote_asset": row.quote_asset, "quantity": row.quantity, "average_entry_price": row.average_entry_price,
        "realised_pnl": row.realised_pnl, "fees": row.fees, "opened_at": row.opened_at, "updated_at": row.updated_at}


def unrealised_pnl(row: Position, mark_price: Decimal | None) -> Decimal | None:
    if mark_price is None or row.average_entry_price is None or row.quantity == 0:
        return None if mark_price is None else ZERO
    return _round(_WIDE.multiply(_WIDE.subtract(mark_price, row.average_entry_price), row.quantity))
