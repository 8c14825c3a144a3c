"""``GET /api/trading/portfolio``: what an account (or all of a user's accounts) is worth now."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Query
from pydantic import Field
from sqlalchemy import select

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import NotFound
from tradepilot.core.money import EXACT
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Money, Schema
from tradepilot.trading import ledger
from tradepilot.trading.deps import ReadUser, Trading
from tradepilot.trading.models import AccountStatus, TradingAccount
from tradepilot.trading.valuation import holdings_from_balances, value_holdings

router = api_router(prefix="/api/trading", tags=["trading"])


class HoldingOut(Schema):
    asset: str
    quantity: Money
    price: Money | None = Field(description="One unit in the valuation currency; null: no market prices it")
    value: Money | None
    weight: Decimal | None = Field(description="Share of the valued total, 0..1 (8 places)")


class PortfolioOut(Schema):
    currency: str
    accounts: list[uuid.UUID]
    total_value: Money
    cash: Money = Field(description="The valuation currency held (free + locked)")
    holdings: list[HoldingOut]
    unpriced: list[str] = Field(description="Assets held that no market values: left out of the total")
    as_of: datetime


@router.get("/portfolio", response_model=PortfolioOut, summary="Portfolio value, per-asset value and weight",
            responses={404: {"description": "No such account, or not yours (account_not_found)"}})
async def portfolio(
    principal: ReadUser,
    db: DbSession,
    runtime: RuntimeDep,
    trading: Trading,
    account_id: Annotated[uuid.UUID | None, Query(description="One account; default: all your active accounts")] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z0-9]{1,16}$",
                                          description="Valuation currency; default: the account's quote")] = None,
) -> PortfolioOut:
    """Balances (free + locked) valued at the market's last prices. Assets without a market
    in the valuation currency are listed in `unpriced`, never guessed."""
    if await trading.ensure_default_account(db, user_id=principal.id):
        await db.commit()
    query = select(TradingAccount).where(TradingAccount.user_id == principal.id)
    query = query.where(TradingAccount.id == account_id) if account_id is not None else \
        query.where(TradingAccount.status == AccountStatus.ACTIVE)
    accounts = list((await db.scalars(query.order_by(TradingAccount.created_at))).all())
    if not accounts:
        raise NotFound("Trading account not found.", code="account_not_found")
    default = next((a for a in accounts if a.is_default), accounts[0])
    valuation_currency = currency or default.quote_currency
    totals: dict[str, tuple[Decimal, Decimal]] = defaultdict(lambda: (Decimal(0), Decimal(0)))
    for account in accounts:
        for balance in await ledger.get_balances(db, account.id):
            free, locked = totals[balance.asset]
            totals[balance.asset] = (EXACT.add(free, balance.free), EXACT.add(locked, balance.locked))
    market = runtime.services["market"]
    valuation = value_holdings(holdings_from_balances(totals), valuation_currency, market.last_price)
    return PortfolioOut(
        currency=valuation.currency, accounts=[a.id for a in accounts], total_value=valuation.total,
        cash=valuation.cash, unpriced=valuation.unpriced, as_of=runtime.clock.now(),
        holdings=[HoldingOut(asset=h.asset, quantity=h.quantity, price=h.price, value=h.value, weight=h.weight)
                  for h in valuation.holdings])
