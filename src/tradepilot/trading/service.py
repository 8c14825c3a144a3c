"""Trading-account use cases: open (the default paper account too), list, close, deposit,
withdraw, reset, and read the ledger.

Every balance change goes through ``trading.ledger`` (which also writes the
``balance.updated`` outbox event); account changes emit ``account.created`` /
``account.closed`` on the user's ``accounts`` topic. Methods never commit: the router
commits once the whole use case succeeded, so a refused request leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.cursors import decode_seq_cursor, seq_cursor
from tradepilot.core.errors import Conflict, Unprocessable
from tradepilot.core.events import Topics
from tradepilot.core.outbox import emit
from tradepilot.core.pagination import time_keyset_page
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.usage import usage_counter
from tradepilot.runtime import Runtime
from tradepilot.trading import ledger
from tradepilot.trading.models import (
    AccountKind,
    AccountStatus,
    LedgerPosting,
    LedgerTransaction,
    MarginMode,
    TradingAccount,
)

ACCOUNT_EVENT_KIND = "accounts"  # topic user.<id>.accounts
DEFAULT_ACCOUNT_NAME = "Paper"
PAPER_VENUE = "paper"

@dataclass(frozen=True, slots=True)
class LiveBinding:
    """What binds a new account to an exchange: its id, the sealed credentials, the key's
    permissions, and the free balances the exchange reported (``{asset: amount}``)."""

    exchange: str
    credentials_encrypted: str
    permissions: dict[str, Any] | None
    balances: dict[str, Decimal]


# --- open orders: the order layer registers its counter here --------------------------------

OpenOrderCounter = Callable[[AsyncSession, TradingAccount], Awaitable[int]]
OPEN_ORDER_COUNTERS: dict[str, OpenOrderCounter] = {}


def open_order_counter(name: str) -> Callable[[OpenOrderCounter], OpenOrderCounter]:
    """Register a counter of an account's open orders (the order layer's hook).

    Closing and resetting an account are refused with 409 ``open_orders`` while any
    registered counter reports open orders: their reservations would be wiped or orphaned.
    """

    def register(func_: OpenOrderCounter) -> OpenOrderCounter:
        OPEN_ORDER_COUNTERS[name] = func_
        return func_

    return register


async def count_open_orders(session: AsyncSession, account: TradingAccount) -> int:
    return sum([await counter(session, account) for counter in OPEN_ORDER_COUNTERS.values()])


@usage_counter("trading_accounts")
async def count_open_accounts(session: AsyncSession, user_id: uuid.UUID) -> int:
    count = await session.scalar(select(func.count()).select_from(TradingAccount).where(
        TradingAccount.user_id == user_id, TradingAccount.status == AccountStatus.ACTIVE))
    return int(count or 0)


# --- the service ------------------------------------------------------------------------------

class TradingService:
    """One per process (``runtime.services["trading"]``); stateless apart from settings."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        self.settings = runtime.settings

    # opening ---------------------------------------------------------------------------

    async def _open(self, session: AsyncSession, *, user_id: uuid.UUID, name: str, is_default: bool,
                    starting_balance: Decimal, quote_currency: str, live: LiveBinding | None = None) -> TradingAccount:
        now = self.clock.now()
        account = TradingAccount(user_id=user_id, name=name, kind=AccountKind.PAPER, venue=PAPER_VENUE,
                                 quote_currency=quote_currency, margin_mode=MarginMode.SPOT, is_default=is_default,
                                 status=AccountStatus.ACTIVE, starting_balance=starting_balance, ledger_seq=0,
                                 created_at=now, updated_at=now)
        if live is not None:
            account.kind, account.venue = AccountKind.LIVE, live.exchange
            account.credentials_encrypted, account.key_permissions = live.credentials_encrypted, live.permissions
        session.add(account)
        await session.flush()
        await emit(session, topic=Topics.user(user_id, ACCOUNT_EVENT_KIND), type="account.created",
                   user_id=user_id, payload={"account": account_payload(account)})
        if live is not None:  # what the exchange holds free for the account, as it said when added
            for asset, amount in sorted(live.balances.items()):
                if amount > 0:
                    await ledger.deposit(session, account, asset, amount, now=now,
                                         reference=ledger.Reference("account", account.id.hex),
                                         memo="exchange balance when added")
        elif starting_balance > 0:
            await ledger.deposit(session, account, quote_currency, starting_balance, now=now,
                                 reference=ledger.Reference("account", account.id.hex), memo="starting balance")
        return account

    async def open_default_account(self, session: AsyncSession, *, user_id: uuid.UUID) -> TradingAccount:
        """The user's default paper account, funded with the configured starting balance.
        Called in the registration's transaction (a registration hook)."""
        return await self._open(session, user_id=user_id, name=DEFAULT_ACCOUNT_NAME, is_default=True,
                                starting_balance=self.settings.paper_starting_balance,
                                quote_currency=self.settings.paper_quote_asset)

    async def ensure_default_account(self, session: AsyncSession, *, user_id: uuid.UUID) -> bool:
        """Open the default account of a user registered before trading existed; True if it
        did (the caller commits). Racing first requests: the user row's lock lets one win."""
        if await self._has_default(session, user_id):
            return False
        await session.scalar(select(User.id).where(User.id == user_id)
                             .with_for_update(key_share=True))  # FOR NO KEY UPDATE: FK inserts still pass
        if await self._has_default(session, user_id):
            return False
        await self.open_default_account(session, user_id=user_id)
        return True

    @staticmethod
    async def _has_default(session: AsyncSession, user_id: uuid.UUID) -> bool:
        found = await session.scalar(select(TradingAccount.id).where(
            TradingAccount.user_id == user_id, TradingAccount.is_default.is_(True)))
        return found is not None

    async def create_account(self, session: AsyncSession, *, user_id: uuid.UUID, name: str,
                             starting_balance: Decimal | None, quote_currency: str | None) -> TradingAccount:
        """A new paper account, within the plan's ``trading_accounts`` limit (409
        ``trading_account_limit_reached``); counted under the user row's lock, so racing
        requests cannot overshoot it."""
        await self._check_account_limit(session, user_id)
        return await self._open(session, user_id=user_id, name=name, is_default=False,
                                starting_balance=self.settings.paper_starting_balance
                                if starting_balance is None else starting_balance,
                                quote_currency=quote_currency or self.settings.paper_quote_asset)

    async def create_live_account(self, session: AsyncSession, *, user_id: uuid.UUID, name: str,
                                  quote_currency: str | None, live: LiveBinding) -> TradingAccount:
        """A live account bound to an exchange (``trading.live.accounts`` checked the key first),
        within the same plan limit; its ledger starts from the exchange's free balances."""
        await self._check_account_limit(session, user_id)
        quote = quote_currency or self.settings.paper_quote_asset
        return await self._open(session, user_id=user_id, name=name, is_default=False,
                                starting_balance=live.balances.get(quote, Decimal(0)), quote_currency=quote, live=live)

    async def _check_account_limit(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        user = await session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True)
                                    .execution_options(populate_existing=True))
        assert user is not None  # authenticated just now; a purge holds this lock too
        cap = effective_limits(user.plan, dict(settings_of(user).limits)).trading_accounts
        if await count_open_accounts(session, user_id) >= cap:
            raise Conflict(f"Your plan allows {cap} open trading accounts; close one first.",
                           code="trading_account_limit_reached", extra={"limit": cap})

    # reading ---------------------------------------------------------------------------

    async def list_accounts(self, session: AsyncSession, *, user_id: uuid.UUID, status: str | None, limit: int,
                            cursor: str | None) -> tuple[list[TradingAccount], str | None]:
        """Oldest first (the default account, opened at registration, leads)."""
        query = select(TradingAccount).where(TradingAccount.user_id == user_id)
        if status is not None:
            query = query.where(TradingAccount.status == status)
        return await time_keyset_page(session, query, TradingAccount.created_at, TradingAccount.id, limit=limit,
                                      cursor=cursor, newest_first=False)

    async def ledger_page(self, session: AsyncSession, *, account: TradingAccount, kind: str | None, limit: int,
                          cursor: str | None) -> tuple[list[tuple[LedgerTransaction, list[LedgerPosting]]], str | None]:
        """The account's ledger, newest first, each transaction with its postings."""
        query = select(LedgerTransaction).where(LedgerTransaction.account_id == account.id)
        if kind is not None:
            query = query.where(LedgerTransaction.kind == kind)
        if cursor is not None:
            query = query.where(LedgerTransaction.seq < decode_seq_cursor(cursor))
        txns = list(await session.scalars(query.order_by(LedgerTransaction.seq.desc()).limit(limit + 1)))
        more = len(txns) > limit
        txns = txns[:limit]
        legs: dict[uuid.UUID, list[LedgerPosting]] = {t.id: [] for t in txns}
        if txns:
            for posting in await session.scalars(select(LedgerPosting).where(
                    LedgerPosting.transaction_id.in_(list(legs))).order_by(LedgerPosting.asset, LedgerPosting.bucket)):
                legs[posting.transaction_id].append(posting)
        page = [(t, legs[t.id]) for t in txns]
        return page, (seq_cursor(txns[-1].seq) if more and txns else None)

    # changing --------------------------------------------------------------------------

    async def close_account(self, session: AsyncSession, *, account: TradingAccount) -> TradingAccount:
        """Close: no balance changes afterwards; the account and its ledger stay readable."""
        account = await ledger.lock_account(session, account.id)
        if account.status != AccountStatus.ACTIVE:
            raise ledger.AccountClosed()
        if account.is_default:
            raise Conflict("The default account cannot be closed.", code="default_account")
        await self._refuse_with_open_orders(session, account, "closed")
        now = self.clock.now()
        account.status, account.closed_at, account.updated_at = AccountStatus.CLOSED, now, now
        await session.flush()
        await emit(session, topic=Topics.user(account.user_id, ACCOUNT_EVENT_KIND), type="account.closed",
                   user_id=account.user_id, payload={"account": account_payload(account)})
        return account

    async def deposit(self, session: AsyncSession, *, account: TradingAccount, asset: str,
                      amount: Decimal) -> ledger.Posted:
        self._paper_only(account, "Deposits")
        return await ledger.deposit(session, account, asset, amount, now=self.clock.now())

    async def withdraw(self, session: AsyncSession, *, account: TradingAccount, asset: str,
                       amount: Decimal) -> ledger.Posted:
        self._paper_only(account, "Withdrawals")
        return await ledger.withdraw(session, account, asset, amount, now=self.clock.now())

    async def reset(self, session: AsyncSession, *, account: TradingAccount) -> ledger.Posted | None:
        """Every balance back to the starting balance, through one ``reset`` ledger transaction."""
        self._paper_only(account, "Resets")
        account = await ledger.lock_account(session, account.id)
        if account.status != AccountStatus.ACTIVE:
            raise ledger.AccountClosed()
        await self._refuse_with_open_orders(session, account, "reset")
        return await ledger.reset(session, account, now=self.clock.now())

    @staticmethod
    def _paper_only(account: TradingAccount, what: str) -> None:
        if account.kind != AccountKind.PAPER:
            raise Unprocessable(f"{what} are only possible on paper accounts.", code="paper_account_only")

    @staticmethod
    async def _refuse_with_open_orders(session: AsyncSession, account: TradingAccount, verb: str) -> None:
        open_orders = await count_open_orders(session, account)
        if open_orders:
            raise Conflict(f"The account has {open_orders} open orders; cancel them before it can be {verb}.",
                           code="open_orders", extra={"open_orders": open_orders})


def account_payload(account: TradingAccount) -> dict[str, object]:
    return {"id": account.id, "name": account.name, "kind": account.kind, "venue": account.venue,
            "quote_currency": account.quote_currency, "margin_mode": account.margin_mode,
            "is_default": account.is_default, "status": account.status,
            "starting_balance": account.starting_balance}
