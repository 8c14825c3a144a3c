"""Rebalancing an account: load it, plan (``rebalance.plan_rebalance``), and — only when
confirmed — place the orders through ``OrderService`` (the code path of ``POST
/api/trading/orders``: filters, risk checks, ledger, events), sells first.

Everything happens in the caller's transaction under the account's lock, each order in its
own savepoint (as bulk placement does): a refused order writes nothing and is reported, the
others go on. The buys are fitted again to the cash the sells really brought in, at the book's
best ask, so a sale that fetched less than estimated shrinks the buys instead of failing them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import NotFound, ServiceUnavailable, TradePilotError
from tradepilot.identity.principal import AuthUser
from tradepilot.portfolio.rebalance import (
    AssetMarket,
    PlannedOrder,
    RebalancePlan,
    fit_buys,
    plan_rebalance,
)
from tradepilot.trading import ledger
from tradepilot.trading.deps import owned_account
from tradepilot.trading.halt import ensure_not_halted
from tradepilot.trading.models import AccountStatus, TradingAccount
from tradepilot.trading.order_actions import problem_of
from tradepilot.trading.order_models import Order
from tradepilot.trading.order_schemas import OrderCreate

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.trading.orders import OrderService
    from tradepilot.trading.service import TradingService

ZERO = Decimal(0)


@dataclass(slots=True)
class OrderOutcome:
    planned: PlannedOrder
    status_code: int
    order: Order | None = None
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class RebalanceResult:
    account: TradingAccount
    plan: RebalancePlan
    outcomes: list[OrderOutcome] | None  # None: a dry run


class RebalanceService:
    def __init__(self, orders: OrderService, market: MarketService, trading: TradingService) -> None:
        self.orders = orders
        self.market = market
        self.trading = trading

    async def rebalance(self, session: AsyncSession, principal: AuthUser, *, account_id: uuid.UUID | None,
                        target: dict[str, Decimal], tolerance: Decimal, dry_run: bool) -> RebalanceResult:
        """Plan, and unless ``dry_run`` place the plan's orders; never commits."""
        if not dry_run:
            await ensure_not_halted(session)  # one clear 503 rather than every order refused
        account = await self._account(session, principal, account_id)
        if not dry_run:
            account = await ledger.lock_account(session, account.id)
        plan = await self.plan(session, account, target, tolerance)
        if dry_run:
            return RebalanceResult(account, plan, None)
        return RebalanceResult(account, plan, await self._execute(session, principal, account, plan))

    async def plan(self, session: AsyncSession, account: TradingAccount, target: dict[str, Decimal],
                   tolerance: Decimal) -> RebalancePlan:
        quote = account.quote_currency
        holdings = await self._free_balances(session, account.id)
        markets = self._markets(quote, set(target) | set(holdings))
        return plan_rebalance(holdings=holdings, target=target, quote=quote, markets=markets, tolerance=tolerance,
                              fee_rate=self.orders.rates.taker)

    # --- loading ------------------------------------------------------------------------------------

    async def _account(self, session: AsyncSession, principal: AuthUser,
                       account_id: uuid.UUID | None) -> TradingAccount:
        """The named account (404 ``account_not_found`` if not the caller's) or the default one."""
        if account_id is not None:
            account = await owned_account(account_id, principal, session)
        else:
            await self.trading.ensure_default_account(session, user_id=principal.id)
            found = await session.scalar(select(TradingAccount).where(
                TradingAccount.user_id == principal.id, TradingAccount.is_default.is_(True)))
            if found is None:
                raise NotFound("Trading account not found.", code="account_not_found")
            account = found
        if account.status != AccountStatus.ACTIVE:
            raise ledger.AccountClosed()
        return account

    @staticmethod
    async def _free_balances(session: AsyncSession, account_id: uuid.UUID) -> dict[str, Decimal]:
        """Free quantities: what is locked for open orders cannot be sold or spent."""
        return {b.asset: b.free for b in await ledger.get_balances(session, account_id) if b.free > 0}

    def _markets(self, quote: str, assets: set[str]) -> dict[str, AssetMarket]:
        """Each asset's ``ASSET/QUOTE`` instrument and prices; assets without an instrument are
        left out (the planner refuses them in a target, ignores them in holdings)."""
        markets: dict[str, AssetMarket] = {}
        for asset in sorted(assets - {quote}):
            symbol = f"{asset}/{quote}"
            try:
                instrument = self.market.instrument(symbol)
            except NotFound:
                continue
            last = self.market.last_price(symbol)
            book = self.market.order_book(symbol, depth=1)
            bid = book.bids[0][0] if book is not None and book.bids else None
            ask = book.asks[0][0] if book is not None and book.asks else None
            price = last if last is not None else (bid + ask) / 2 if bid is not None and ask is not None else None
            if price is None or price <= 0:
                raise ServiceUnavailable(f"No price for {symbol} yet; try again shortly.",
                                         code="market_data_unavailable", extra={"symbol": symbol})
            markets[asset] = AssetMarket(instrument=instrument, price=price, bid=bid, ask=ask)
        return markets

    # --- execution ----------------------------------------------------------------------------------

    async def _execute(self, session: AsyncSession, principal: AuthUser, account: TradingAccount,
                       plan: RebalancePlan) -> list[OrderOutcome]:
        batch = uuid.uuid4().hex[:12]
        outcomes = [await self._place(session, principal, account, order, f"rebalance-{batch}-{i}")
                    for i, order in enumerate(plan.sells)]
        if not plan.buys:
            return outcomes
        # the buys, fitted to the cash the sells really brought in and to the book as it is now
        cash = (await self._free_balances(session, account.id)).get(plan.quote, ZERO)
        markets = self._markets(plan.quote, {o.asset for o in plan.buys})
        fitted = {o.asset: o for o in fit_buys([(o.asset, o.quantity) for o in plan.buys], markets, budget=cash,
                                               fee_rate=plan.fee_rate)}
        for i, planned in enumerate(plan.buys, start=len(plan.sells)):
            order = fitted.get(planned.asset)
            if order is None:
                outcomes.append(OrderOutcome(planned, 422, error={
                    "code": "insufficient_funds", "status": 422, "title": "Not enough cash left",
                    "detail": "After the sells, the cash no longer covers this buy above the instrument's minimum."}))
                continue
            outcomes.append(await self._place(session, principal, account, order, f"rebalance-{batch}-{i}"))
        return outcomes

    async def _place(self, session: AsyncSession, principal: AuthUser, account: TradingAccount,
                     planned: PlannedOrder, client_order_id: str) -> OrderOutcome:
        body = OrderCreate(symbol=planned.symbol, side=planned.side, type="market", quantity=planned.quantity,
                           account_id=account.id, client_order_id=client_order_id)
        try:
            prepared = self.orders.prepare(body)
            async with session.begin_nested():
                row = await self.orders.place(session, principal, prepared)
        except TradePilotError as exc:
            return OrderOutcome(planned, exc.status, error=problem_of(exc))
        return OrderOutcome(planned, 201, order=row)
