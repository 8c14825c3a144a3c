"""The double-entry ledger: the only way a trading account's balances change.

:func:`post` writes one journal transaction (two or more postings that sum to zero per asset,
see the chart of accounts in ``trading.models``) and applies it to the ``Balance`` rows in
the caller's database transaction. It never commits: the caller commits the postings, the
balances and the outbox event together, or none of them.

Concurrency: ``post`` first locks the account row (``SELECT … FOR UPDATE`` on PostgreSQL;
on SQLite every transaction begins with ``BEGIN IMMEDIATE``, see ``core.db``, so writers are
already serialised). Under that lock it reads the balances, checks that no ``free`` or
``locked`` amount would go negative, and writes them with a version check. Two concurrent
reservations therefore never spend the same dollar: the second one reads what the first
left. Locks are taken in one order (account, then its balances by asset), so they cannot
deadlock with each other.

The helpers (:func:`deposit`, :func:`withdraw`, :func:`reserve`, :func:`release`,
:func:`settle_fill`, :func:`reset`) build the postings for the usual movements.
:func:`recompute_balances` rebuilds the balances from the postings alone: tests use it to
prove that the balances always equal the ledger, an operator can use it to repair them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, Unprocessable
from tradepilot.core.events import Topics
from tradepilot.core.money import EXACT, PrecisionLossError, check_fits, to_plain_string
from tradepilot.core.outbox import Pending, emit
from tradepilot.trading.models import (
    AccountStatus,
    Balance,
    Bucket,
    LedgerKind,
    LedgerPosting,
    LedgerTransaction,
    TradingAccount,
)

ZERO = Decimal(0)
EVENT_KIND = "balances"  # the outbox topic is user.<id>.balances; the WebSocket "kind" too
BALANCE_UPDATED = "balance.updated"


# --- errors -------------------------------------------------------------------------------

class LedgerError(ValueError):
    """The caller built an invalid transaction (a bug in the caller, not bad user input)."""


class InsufficientFunds(Unprocessable):
    code, title = "insufficient_funds", "Insufficient funds"

    def __init__(self, *, asset: str, bucket: str, available: Decimal, requested: Decimal) -> None:
        super().__init__(
            f"Not enough {asset} {bucket}: {format(available, 'f')} available, {format(requested, 'f')} needed.",
            extra={"asset": asset, "bucket": bucket, "available": _plain(available), "requested": _plain(requested)},
        )


class AccountClosed(Conflict):
    code, title = "account_closed", "Account closed"

    def __init__(self) -> None:
        super().__init__("This trading account is closed; its balances can no longer change.")


class BalanceOutOfRange(Unprocessable):
    code, title = "balance_out_of_range", "Balance out of range"

    def __init__(self, asset: str) -> None:
        super().__init__(f"The resulting {asset} balance would not fit 18 integer and 18 decimal digits.",
                         extra={"asset": asset})


def _plain(value: Decimal) -> str:
    return to_plain_string(value)


# --- values -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Posting:
    """``amount`` (signed: + adds to the bucket) of ``asset`` into ``bucket``."""

    asset: str
    bucket: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Reference:
    """What a transaction belongs to: ``Reference("order", order_id)``."""

    type: str
    id: str


@dataclass(frozen=True, slots=True)
class Amounts:
    """An asset's free and locked amounts."""

    free: Decimal = ZERO
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return EXACT.add(self.free, self.locked)


@dataclass(frozen=True, slots=True)
class KnownBalance:
    """A balance row as this transaction knows it (see ``post(known=...)``)."""

    free: Decimal
    locked: Decimal
    version: int  # of the row in the database
    dirty: bool = False  # free / locked not written yet (see write_known)


# Built once: a statement made per call costs its construction and its cache key every time
# (about a fifth of an order's SQLAlchemy time, measured); this one's key is memoised.
_UPDATE_BALANCE = (
    update(Balance)
    .where(Balance.account_id == bindparam("b_account"), Balance.asset == bindparam("b_asset"),
           Balance.version == bindparam("b_version"))
    .values(free=bindparam("b_free", type_=Balance.free.type), locked=bindparam("b_locked", type_=Balance.locked.type),
            version=bindparam("b_next", type_=Balance.version.type),
            updated_at=bindparam("b_now", type_=Balance.updated_at.type))
    .execution_options(synchronize_session=False))


async def _update_balance(session: AsyncSession, account_id: uuid.UUID, asset: str, version: int,
                          free: Decimal, locked: Decimal, now: datetime) -> None:
    """One version-checked balance UPDATE; 409 ``concurrent_update`` if the row moved."""
    result = await session.execute(_UPDATE_BALANCE, {
        "b_account": account_id, "b_asset": asset, "b_version": version, "b_free": free, "b_locked": locked,
        "b_next": version + 1, "b_now": now})
    if result.rowcount != 1:  # type: ignore[attr-defined]  # cannot happen under the lock
        raise Conflict("The balance changed concurrently; retry.", code="concurrent_update")


async def write_known(session: AsyncSession, account_id: uuid.UUID, known: dict[str, KnownBalance], *,
                      now: datetime) -> None:
    """Write the balances ``post(known=..., events=...)`` changed: one version-checked UPDATE per
    changed asset, however many transactions of this database transaction moved it."""
    for asset in sorted(known):
        row = known[asset]
        if not row.dirty:
            continue
        await _update_balance(session, account_id, asset, row.version, row.free, row.locked, now)
        known[asset] = KnownBalance(row.free, row.locked, row.version + 1)


@dataclass(frozen=True, slots=True)
class Posted:
    """The result of :func:`post`: the transaction, the balances it touched (after it), and
    whether an earlier transaction with the same ``dedupe_key`` was returned instead."""

    transaction: LedgerTransaction
    postings: list[LedgerPosting]
    balances: dict[str, Amounts]
    replayed: bool = False


def _is_asset(value: object) -> bool:
    return isinstance(value, str) and 2 <= len(value) <= 16 and value.isascii() and value.isalnum() \
        and value == value.upper()


def _validate(kind: str, postings: Sequence[Posting]) -> list[Posting]:
    if kind not in LedgerKind.ALL:
        raise LedgerError(f"unknown ledger kind {kind!r}")
    if len(postings) < 2:
        raise LedgerError("a transaction needs at least two postings")
    checked = []
    sums: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for p in postings:
        if p.bucket not in Bucket.ALL:
            raise LedgerError(f"unknown bucket {p.bucket!r}")
        if not _is_asset(p.asset):
            raise LedgerError(f"bad asset code {p.asset!r}")
        if not isinstance(p.amount, Decimal) or isinstance(p.amount, bool):
            raise LedgerError("posting amounts must be Decimal")
        try:
            amount = check_fits(p.amount)
        except PrecisionLossError as exc:
            raise LedgerError(f"posting amount {p.amount}: {exc}") from None
        if amount == 0:
            raise LedgerError("a posting of zero records nothing")
        sums[p.asset] = EXACT.add(sums[p.asset], amount)
        checked.append(Posting(p.asset, p.bucket, amount))
    unbalanced = {asset: total for asset, total in sums.items() if total != 0}
    if unbalanced:
        raise LedgerError(f"postings do not sum to zero per asset: {unbalanced}")
    return checked


# --- reading --------------------------------------------------------------------------------

async def lock_account(session: AsyncSession, account_id: uuid.UUID) -> TradingAccount:
    """The account row, locked until the caller's transaction ends (PostgreSQL), re-read."""
    # FOR NO KEY UPDATE (key_share=True): excludes other writers of this account, but not the
    # KEY SHARE locks that inserts of rows referencing it (orders later) take for their FK check
    account = await session.scalar(
        select(TradingAccount).where(TradingAccount.id == account_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True))
    if account is None:
        raise LedgerError(f"no trading account {account_id}")
    return account


_BALANCES = (select(Balance).where(Balance.account_id == bindparam("account_id")).order_by(Balance.asset)
             .execution_options(populate_existing=True))


async def get_balances(session: AsyncSession, account_id: uuid.UUID) -> list[Balance]:
    """The account's balance rows, freshly read, by asset."""
    return list(await session.scalars(_BALANCES, {"account_id": account_id}))


async def recompute_balances(session: AsyncSession, account_id: uuid.UUID, *,
                             write: bool = False) -> dict[str, Amounts]:
    """Free and locked per asset, summed (in Python, exactly) from the account's postings.

    With ``write=True`` the ``Balance`` rows are set to these values (an operator's repair;
    call it with the account locked, i.e. after :func:`lock_account`).
    """
    rows = await session.execute(
        select(LedgerPosting.asset, LedgerPosting.bucket, LedgerPosting.amount)
        .where(LedgerPosting.account_id == account_id, LedgerPosting.bucket.in_(Bucket.HELD)))
    free: dict[str, Decimal] = defaultdict(lambda: ZERO)
    locked: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for asset, bucket, amount in rows:
        target = free if bucket == Bucket.FREE else locked
        target[asset] = EXACT.add(target[asset], amount)
    result = {asset: Amounts(free[asset], locked[asset]) for asset in sorted(set(free) | set(locked))}
    if write:
        for balance in await get_balances(session, account_id):
            amounts = result.get(balance.asset, Amounts())
            balance.free, balance.locked = amounts.free, amounts.locked
            balance.version += 1
        await session.flush()
    return result


async def bucket_totals(session: AsyncSession, account_id: uuid.UUID) -> dict[tuple[str, str], Decimal]:
    """The running sum of every (asset, bucket) of the account, nominal buckets included."""
    rows = await session.execute(select(LedgerPosting.asset, LedgerPosting.bucket, LedgerPosting.amount)
                                 .where(LedgerPosting.account_id == account_id))
    totals: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for asset, bucket, amount in rows:
        totals[(asset, bucket)] = EXACT.add(totals[(asset, bucket)], amount)
    return dict(totals)


# --- posting --------------------------------------------------------------------------------

async def post(
    session: AsyncSession,
    account: TradingAccount,
    kind: str,
    postings: Sequence[Posting],
    *,
    now: datetime,
    reference: Reference | None = None,
    dedupe_key: str | None = None,
    memo: str | None = None,
    locked_account: TradingAccount | None = None,
    known: dict[str, KnownBalance] | None = None,
    events: list[Pending] | None = None,
    late_rows: list[object] | None = None,
    check_dedupe: bool = True,
) -> Posted:
    """Record ``postings`` as one transaction and apply them to the balances (never commits).

    Raises :class:`InsufficientFunds` (422) if a ``free`` or ``locked`` amount would become
    negative, :class:`AccountClosed` (409) for a closed account, :class:`LedgerError` for
    postings that do not balance. Nothing is written when it raises. With ``dedupe_key``, a
    transaction already recorded under that key is returned (``replayed=True``) and nothing
    moves again.

    Batched callers (the order writer) may pass ``known``: the account's balances as this
    transaction last read or wrote them (under the account lock), kept up to date here, so
    that they are not read again; ``events``: a list the ``balance.updated`` event is appended
    to (written later with ``outbox.emit_many``) instead of being emitted now; and
    With both ``known`` and ``events`` the balance rows are not written here either: the
    caller writes them with :func:`write_known` before anything else reads them.
    ``check_dedupe=False`` when the key cannot exist yet (a fill of an order created in this
    transaction: the unique constraint still guards it); ``late_rows``: a list the postings are
    appended to, for the caller to add to the session after the flush that writes the
    transaction (the unit of work does not order these two tables by their foreign key).
    """
    checked = _validate(kind, postings)
    if dedupe_key is not None and not 1 <= len(dedupe_key) <= 128:
        raise LedgerError("dedupe_key must be 1-128 characters")
    account = locked_account or await lock_account(session, account.id)
    if dedupe_key is not None and check_dedupe:
        earlier = await session.scalar(select(LedgerTransaction).where(
            LedgerTransaction.account_id == account.id, LedgerTransaction.dedupe_key == dedupe_key))
        if earlier is not None:
            earlier_postings = list(await session.scalars(
                select(LedgerPosting).where(LedgerPosting.transaction_id == earlier.id)))
            touched = {p.asset for p in earlier_postings if p.bucket in Bucket.HELD}
            current = {b.asset: Amounts(b.free, b.locked) for b in await get_balances(session, account.id)
                       if b.asset in touched}
            return Posted(earlier, earlier_postings, current, replayed=True)
    if account.status != AccountStatus.ACTIVE:
        raise AccountClosed()

    deltas: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for p in checked:
        if p.bucket in Bucket.HELD:
            deltas[(p.asset, p.bucket)] = EXACT.add(deltas[(p.asset, p.bucket)], p.amount)
    assets = sorted({asset for asset, _ in deltas})
    existing: dict[str, KnownBalance] = {}
    if known is None or not all(asset in known for asset in assets):
        if assets:  # locked in asset order (redundant under the account lock, and deadlock-free)
            existing = {b.asset: KnownBalance(b.free, b.locked, b.version) for b in await session.scalars(
                select(Balance).where(Balance.account_id == account.id, Balance.asset.in_(assets))
                .order_by(Balance.asset).with_for_update(key_share=True)
                .execution_options(populate_existing=True))}
    if known is not None:
        existing.update({asset: known[asset] for asset in assets if asset in known})

    after: dict[str, Amounts] = {}
    for asset in assets:
        row = existing.get(asset)
        before = Amounts(row.free, row.locked) if row is not None else Amounts()
        free = EXACT.add(before.free, deltas.get((asset, Bucket.FREE), ZERO))
        locked = EXACT.add(before.locked, deltas.get((asset, Bucket.LOCKED), ZERO))
        for bucket, was, now_value in ((Bucket.FREE, before.free, free), (Bucket.LOCKED, before.locked, locked)):
            if now_value < 0:  # spot: nothing held may go negative (margin will add a "borrowed" bucket)
                raise InsufficientFunds(asset=asset, bucket=bucket, available=was,
                                        requested=deltas[(asset, bucket)].copy_negate())
        try:
            after[asset] = Amounts(check_fits(free), check_fits(locked))
        except PrecisionLossError:
            raise BalanceOutOfRange(asset) from None

    account.ledger_seq += 1
    txn = LedgerTransaction(id=uuid.uuid4(), account_id=account.id, seq=account.ledger_seq, kind=kind,
                            reference_type=reference.type if reference else None,
                            reference_id=reference.id if reference else None,
                            dedupe_key=dedupe_key, memo=memo, created_at=now)
    session.add(txn)
    if events is None:
        await session.flush()  # the transaction row first: postings reference it
    rows = [LedgerPosting(id=uuid.uuid4(), transaction_id=txn.id, account_id=account.id, asset=p.asset,
                          bucket=p.bucket, amount=p.amount) for p in checked]
    if late_rows is not None:
        late_rows.extend(rows)
    else:
        session.add_all(rows)
    for asset, amounts in after.items():
        row = existing.get(asset)
        if row is None:
            session.add(Balance(account_id=account.id, asset=asset, free=amounts.free, locked=amounts.locked,
                                version=1, updated_at=now))
            if known is not None:
                await session.flush()  # a new row: written now, so that later statements find it
                known[asset] = KnownBalance(amounts.free, amounts.locked, 1)
            continue
        if known is not None and events is not None:  # batched: written once, by write_known
            known[asset] = KnownBalance(amounts.free, amounts.locked, row.version, dirty=True)
            continue
        await _update_balance(session, account.id, asset, row.version, amounts.free, amounts.locked, now)
        if known is not None:
            known[asset] = KnownBalance(amounts.free, amounts.locked, row.version + 1)
    event = Pending(topic=Topics.user(account.user_id, EVENT_KIND), type=BALANCE_UPDATED,
                    user_id=account.user_id, payload={
                        "account_id": account.id,
                        "transaction": {"id": txn.id, "seq": txn.seq, "kind": kind,
                                        "reference_type": txn.reference_type, "reference_id": txn.reference_id},
                        "balances": [{"asset": asset, "free": a.free, "locked": a.locked, "total": a.total}
                                     for asset, a in after.items()],
                    })
    if events is not None:
        events.append(event)
    else:
        await session.flush()
        await emit(session, topic=event.topic, type=event.type, user_id=event.user_id, payload=event.payload)
    return Posted(txn, rows, after)


# --- the usual movements ---------------------------------------------------------------------

def _positive(name: str, amount: Decimal) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise LedgerError(f"{name} must be a positive Decimal, not {amount!r}")
    return amount


async def deposit(session: AsyncSession, account: TradingAccount, asset: str, amount: Decimal, *, now: datetime,
                  reference: Reference | None = None, dedupe_key: str | None = None,
                  memo: str | None = None) -> Posted:
    """external → free."""
    amount = _positive("amount", amount)
    return await post(session, account, LedgerKind.DEPOSIT,
                      [Posting(asset, Bucket.EXTERNAL, amount.copy_negate()), Posting(asset, Bucket.FREE, amount)],
                      now=now, reference=reference, dedupe_key=dedupe_key, memo=memo)


async def withdraw(session: AsyncSession, account: TradingAccount, asset: str, amount: Decimal, *, now: datetime,
                   reference: Reference | None = None, dedupe_key: str | None = None,
                   memo: str | None = None) -> Posted:
    """free → external; :class:`InsufficientFunds` beyond the free amount."""
    amount = _positive("amount", amount)
    return await post(session, account, LedgerKind.WITHDRAWAL,
                      [Posting(asset, Bucket.FREE, amount.copy_negate()), Posting(asset, Bucket.EXTERNAL, amount)],
                      now=now, reference=reference, dedupe_key=dedupe_key, memo=memo)


async def reserve(session: AsyncSession, account: TradingAccount, asset: str, amount: Decimal, *, now: datetime,
                  reference: Reference | None = None, dedupe_key: str | None = None,
                  **options: Any) -> Posted:
    """free → locked (an order is placed); :class:`InsufficientFunds` beyond the free amount."""
    amount = _positive("amount", amount)
    return await post(session, account, LedgerKind.RESERVATION,
                      [Posting(asset, Bucket.FREE, amount.copy_negate()), Posting(asset, Bucket.LOCKED, amount)],
                      now=now, reference=reference, dedupe_key=dedupe_key, **options)


async def release(session: AsyncSession, account: TradingAccount, asset: str, amount: Decimal, *, now: datetime,
                  reference: Reference | None = None, dedupe_key: str | None = None,
                  **options: Any) -> Posted:
    """locked → free (an order is cancelled, or the unused part of its reservation)."""
    amount = _positive("amount", amount)
    return await post(session, account, LedgerKind.RELEASE,
                      [Posting(asset, Bucket.LOCKED, amount.copy_negate()), Posting(asset, Bucket.FREE, amount)],
                      now=now, reference=reference, dedupe_key=dedupe_key, **options)


async def settle_fill(
    session: AsyncSession,
    account: TradingAccount,
    *,
    pay_asset: str,
    pay_amount: Decimal,
    receive_asset: str,
    receive_amount: Decimal,
    fee_asset: str | None = None,
    fee_amount: Decimal = ZERO,
    now: datetime,
    reference: Reference | None = None,
    dedupe_key: str | None = None,
    **options: Any,
) -> Posted:
    """One trade of an order, as one transaction.

    The order pays ``pay_amount`` of ``pay_asset`` out of its reservation (locked → market)
    and receives ``receive_amount`` of ``receive_asset`` (market → free): a buy of BTC/USDT
    pays USDT and receives BTC, a sell pays BTC and receives USDT. The fee goes to ``fees``
    from the reservation when it is in the paid asset, from the proceeds when it is in the
    received asset, and from the free balance when it is in a third asset (BNB-style).
    """
    _positive("pay_amount", pay_amount)
    _positive("receive_amount", receive_amount)
    if pay_asset == receive_asset:
        raise LedgerError("a fill pays one asset and receives another")
    postings = [Posting(pay_asset, Bucket.LOCKED, pay_amount.copy_negate()),
                Posting(pay_asset, Bucket.MARKET, pay_amount),
                Posting(receive_asset, Bucket.MARKET, receive_amount.copy_negate()),
                Posting(receive_asset, Bucket.FREE, receive_amount)]
    if fee_amount:
        _positive("fee_amount", fee_amount)
        if fee_asset is None:
            raise LedgerError("a fee needs its asset")
        source = Bucket.LOCKED if fee_asset == pay_asset else Bucket.FREE
        postings += [Posting(fee_asset, source, fee_amount.copy_negate()), Posting(fee_asset, Bucket.FEES, fee_amount)]
    return await post(session, account, LedgerKind.FILL, postings, now=now, reference=reference,
                      dedupe_key=dedupe_key, **options)


async def reset(session: AsyncSession, account: TradingAccount, *, now: datetime,
                target: Mapping[str, Decimal] | None = None, reference: Reference | None = None,
                dedupe_key: str | None = None) -> Posted | None:
    """Every balance to ``target`` (default: the starting balance in the quote currency, every
    other asset zero), free and locked alike, as one ``reset`` transaction against ``external``.

    None when the balances already are the target (nothing to record). Callers refuse a reset
    while the account has open orders: their reservations would be wiped.
    """
    locked_account = await lock_account(session, account.id)
    if locked_account.status != AccountStatus.ACTIVE:
        raise AccountClosed()
    goal = dict(target) if target is not None else (
        {locked_account.quote_currency: locked_account.starting_balance} if locked_account.starting_balance else {})
    current = {b.asset: Amounts(b.free, b.locked) for b in await get_balances(session, account.id)}
    postings: list[Posting] = []
    for asset in sorted(set(current) | set(goal)):
        have = current.get(asset, Amounts())
        legs = [Posting(asset, Bucket.FREE, EXACT.subtract(goal.get(asset, ZERO), have.free)),
                Posting(asset, Bucket.LOCKED, have.locked.copy_negate())]
        legs = [leg for leg in legs if leg.amount != 0]
        if legs:
            offset = EXACT.minus(sum_exact(leg.amount for leg in legs))
            if offset != 0:
                legs.append(Posting(asset, Bucket.EXTERNAL, offset))
            postings += legs
    if not postings:
        return None
    return await post(session, locked_account, LedgerKind.RESET, postings, now=now, reference=reference,
                      dedupe_key=dedupe_key, memo="reset to the starting balance", locked_account=locked_account)


def sum_exact(values: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for value in values:
        total = EXACT.add(total, value)
    return total
