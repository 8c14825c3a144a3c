"""HTTP edge of trading accounts: /api/trading/accounts, balances, deposits, withdrawals, reset, ledger."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.identity.idempotency import Idempotency
from tradepilot.trading import ledger
from tradepilot.trading.deps import OwnedAccount, ReadUser, TradeUser, Trading
from tradepilot.trading.live.accounts import check_new_account
from tradepilot.trading.live.reconciliation_owner import supervisor
from tradepilot.trading.models import LedgerKind, LedgerPosting, LedgerTransaction, TradingAccount
from tradepilot.trading.schemas import (
    AccountCreate,
    AccountDetail,
    AccountOut,
    AccountStatusName,
    AmountRequest,
    AnyAccountCreate,
    BalanceChange,
    LiveAccountCreate,
    PostingOut,
    TransactionOut,
    balance_out,
)

router = api_router(prefix="/api/trading/accounts", tags=["trading"])

LedgerKindName = Literal["deposit", "withdrawal", "reset", "reservation", "release", "fill", "fee", "adjustment"]
assert set(LedgerKindName.__args__) == LedgerKind.ALL  # type: ignore[attr-defined]

_NOT_FOUND = {404: {"description": "No such account, or not yours (code account_not_found)"}}
_CLOSED = {409: {"description": "The account is closed (account_closed)"}}


def account_out(account: TradingAccount) -> AccountOut:
    return AccountOut.model_validate(account)


async def account_detail(db: AsyncSession, account: TradingAccount) -> AccountDetail:
    balances = [balance_out(b.asset, b.free, b.locked) for b in await ledger.get_balances(db, account.id)]
    return AccountDetail(**account_out(account).model_dump(), balances=balances)


def transaction_out(txn: LedgerTransaction, postings: list[LedgerPosting]) -> TransactionOut:
    return TransactionOut(id=txn.id, seq=txn.seq, kind=txn.kind, reference_type=txn.reference_type,
                          reference_id=txn.reference_id, memo=txn.memo, created_at=txn.created_at,
                          postings=[PostingOut(asset=p.asset, bucket=p.bucket, amount=p.amount) for p in postings])


def balance_change(posted: ledger.Posted) -> BalanceChange:
    balances = [balance_out(asset, a.free, a.locked) for asset, a in sorted(posted.balances.items())]
    return BalanceChange(transaction=transaction_out(posted.transaction, posted.postings), balances=balances)


@router.get("", response_model=Page[AccountOut], summary="Your trading accounts")
async def list_accounts(
    principal: ReadUser,
    db: DbSession,
    trading: Trading,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status_: Annotated[AccountStatusName | None, Query(alias="status")] = None,
) -> Page[AccountOut]:
    """Oldest first; the default paper account leads. A user registered before trading
    existed gets their default account on this first call."""
    if await trading.ensure_default_account(db, user_id=principal.id):
        await db.commit()
    rows, next_cursor = await trading.list_accounts(db, user_id=principal.id, status=status_, limit=limit,
                                                    cursor=cursor)
    return Page[AccountOut](items=[account_out(a) for a in rows], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AccountDetail,
             summary="Open a paper or live account",
             responses={409: {"description": "Plan limit of open accounts reached (trading_account_limit_reached)"},
                        422: {"description": "Live: exchange_not_supported, exchange_auth_failed, "
                                             "withdrawal_permission_enabled, trading_permission_missing"},
                        503: {"description": "Live: the exchange is unavailable or rate-limits us "
                                             "(exchange_unavailable, exchange_rate_limited)"}})
async def create_account(idem: Idempotency, body: AnyAccountCreate, principal: TradeUser, runtime: RuntimeDep,
                         db: DbSession, trading: Trading) -> Response:
    """A paper account (`type` absent or `paper`) funded with `starting_balance` of
    `quote_currency` (defaults: the server's paper settings); `reset` returns it to that balance.

    A live account: `{"type": "live", "exchange": "binance", "api_key", "secret", "name"?}` —
    the key is checked with the exchange (it must trade and must not withdraw), stored
    encrypted and never shown again; the balances start from the exchange's free balances
    (docs/exchanges.md). Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    checked = None
    if isinstance(body, LiveAccountCreate):  # the exchange first: no transaction open across the network
        checked = await check_new_account(runtime, body)
    await trading.ensure_default_account(db, user_id=principal.id)
    if checked is not None:
        account = await trading.create_live_account(db, user_id=principal.id, name=checked.name,
                                                    quote_currency=body.quote_currency, live=checked.binding)
    else:
        assert isinstance(body, AccountCreate)
        account = await trading.create_account(db, user_id=principal.id, name=body.name,
                                               starting_balance=body.starting_balance,
                                               quote_currency=body.quote_currency)
    answer = await idem.respond(db, await account_detail(db, account), status=status.HTTP_201_CREATED)
    await db.commit()
    if checked is not None and (reconciliation := supervisor(runtime)) is not None:
        reconciliation.watch(account.id)  # reconciled from now on (other replicas: at their next scan)
    return answer


@router.get("/{account_id}", response_model=AccountDetail, summary="An account with its balances",
            responses=_NOT_FOUND)
async def get_account(account: OwnedAccount, principal: ReadUser, db: DbSession) -> AccountDetail:
    """Balances per asset: `free` (available), `locked` (reserved by open orders), `total`."""
    return await account_detail(db, account)


@router.delete("/{account_id}", response_model=AccountOut, summary="Close an account",
               responses={**_NOT_FOUND, 409: {"description": "Default account (default_account), already closed "
                                                             "(account_closed), or open orders (open_orders)"}})
async def close_account(account: OwnedAccount, principal: TradeUser, db: DbSession, trading: Trading) -> AccountOut:
    """Closed accounts stay readable (balances, ledger) but never change again. The default
    account cannot be closed; an account with open orders neither."""
    account = await trading.close_account(db, account=account)
    out = account_out(account)
    await db.commit()
    return out


@router.post("/{account_id}/deposits", status_code=status.HTTP_201_CREATED, response_model=BalanceChange,
             summary="Deposit (paper accounts)", responses={**_NOT_FOUND, **_CLOSED})
async def deposit(idem: Idempotency, body: AmountRequest, account: OwnedAccount, principal: TradeUser,
                  db: DbSession, trading: Trading) -> Response:
    """Add `amount` of `asset` to the free balance: one `deposit` ledger transaction.
    Accepts `Idempotency-Key`: a retried deposit never credits twice."""
    if idem.replay is not None:
        return idem.replay
    result = balance_change(await trading.deposit(db, account=account, asset=body.asset, amount=body.amount))
    answer = await idem.respond(db, result, status=status.HTTP_201_CREATED)
    await db.commit()
    return answer


@router.post("/{account_id}/withdrawals", status_code=status.HTTP_201_CREATED, response_model=BalanceChange,
             summary="Withdraw (paper accounts)",
             responses={**_NOT_FOUND, **_CLOSED, 422: {"description": "More than the free balance "
                                                                      "(insufficient_funds), or a bad amount"}})
async def withdraw(idem: Idempotency, body: AmountRequest, account: OwnedAccount, principal: TradeUser,
                   db: DbSession, trading: Trading) -> Response:
    """Take `amount` of `asset` from the free balance (never from what open orders reserve).
    Accepts `Idempotency-Key`: a retried withdrawal never debits twice."""
    if idem.replay is not None:
        return idem.replay
    result = balance_change(await trading.withdraw(db, account=account, asset=body.asset, amount=body.amount))
    answer = await idem.respond(db, result, status=status.HTTP_201_CREATED)
    await db.commit()
    return answer


@router.post("/{account_id}/reset", response_model=AccountDetail, summary="Reset to the starting balance",
             responses={**_NOT_FOUND, 409: {"description": "Closed (account_closed) or open orders (open_orders)"}})
async def reset(idem: Idempotency, account: OwnedAccount, principal: TradeUser, db: DbSession,
                trading: Trading) -> Response:
    """Every asset back to the starting balance (the quote currency) or zero, through one
    `reset` ledger transaction. Refused while the account has open orders. Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    await trading.reset(db, account=account)
    answer = await idem.respond(db, await account_detail(db, account))
    await db.commit()
    return answer


@router.get("/{account_id}/ledger", response_model=Page[TransactionOut], summary="The account's ledger",
            responses=_NOT_FOUND)
async def get_ledger(
    account: OwnedAccount,
    principal: ReadUser,
    db: DbSession,
    trading: Trading,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[LedgerKindName | None, Query(description="Only this kind of transaction")] = None,
) -> Page[TransactionOut]:
    """Newest first: each transaction with its postings (signed amounts per bucket)."""
    page, next_cursor = await trading.ledger_page(db, account=account, kind=kind, limit=limit, cursor=cursor)
    return Page[TransactionOut](items=[transaction_out(t, p) for t, p in page], next_cursor=next_cursor)
