"""Cancel-all and the panic button on live accounts (docs/exchanges.md, docs/orders.md).

Every open **platform** order of the caller's live accounts (of one account, of one symbol) is
cancelled one by one through the same exchange cancel as ``DELETE /orders/{id}``
(``LivePlacement.ask_cancel`` / ``record_cancel``): asked on the exchange outside any
transaction, then recorded in its own short one. External orders are never touched. An
exchange error on one order is reported for that order and the others are still attempted;
an order the exchange had already filled is recorded as filled, as the single cancel does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tradepilot.core.errors import TradePilotError
from tradepilot.identity.principal import AuthUser
from tradepilot.trading.live.accounts import live_venues
from tradepilot.trading.models import AccountKind, TradingAccount
from tradepilot.trading.order_actions import owned_accounts, problem_of
from tradepilot.trading.order_models import Order, OrderSource, OrderStatus

if TYPE_CHECKING:
    from tradepilot.trading.orders import OrderService


@dataclass(slots=True)
class LiveCancelOutcome:
    order_id: uuid.UUID
    status: str  # the order's status afterwards: canceled, filled…, or still open after an error
    error: dict[str, Any] | None = None


async def open_live_orders(service: OrderService, principal: AuthUser, *, account_id: uuid.UUID | None,
                           symbol: str | None) -> list[Order]:
    """The caller's open platform orders on live accounts, detached, by account then age."""
    async with service.runtime.db.read() as session:
        accounts = await owned_accounts(session, principal, account_id)
        query = (select(Order).join(TradingAccount, TradingAccount.id == Order.account_id)
                 .where(Order.account_id.in_(accounts), Order.user_id == principal.id,
                        TradingAccount.kind == AccountKind.LIVE, Order.status.in_(tuple(OrderStatus.OPEN)),
                        Order.source == OrderSource.PLATFORM)  # never an external order
                 .order_by(Order.account_id, Order.created_at, Order.id))
        if symbol is not None:
            query = query.where(Order.symbol == symbol)
        rows = list(await session.scalars(query))
        for row in rows:
            session.expunge(row)
    return rows


async def cancel_live_orders(service: OrderService, principal: AuthUser, *, account_id: uuid.UUID | None = None,
                             symbol: str | None = None) -> list[LiveCancelOutcome]:
    """Cancel each open platform order of the caller's live accounts; one outcome per order."""
    placement = service.live
    outcomes: list[LiveCancelOutcome] = []
    rows = await open_live_orders(service, principal, account_id=account_id, symbol=symbol)
    for aid, group in groupby(rows, key=lambda r: r.account_id):
        orders = list(group)
        try:
            account = await placement.account_of(aid)
            async with live_venues(service.runtime).open(account) as exchange:
                for row in orders:
                    try:
                        answer, trades = await placement.ask_cancel(exchange, row)
                        current = await placement.record_cancel(row.id, answer, trades)
                    except TradePilotError as exc:
                        outcomes.append(LiveCancelOutcome(row.id, row.status, problem_of(exc)))
                        continue
                    outcomes.append(LiveCancelOutcome(current.id, current.status))
        except TradePilotError as exc:  # the account's exchange could not be opened at all
            done = {o.order_id for o in outcomes}
            outcomes.extend(LiveCancelOutcome(r.id, r.status, problem_of(exc)) for r in orders if r.id not in done)
    return outcomes
