"""The double-entry ledger on SQLite and PostgreSQL: validation, fills, dedupe, concurrency,
and a property test over random sequences of movements."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from tradepilot.core.money import EXACT
from tradepilot.identity.models import User
from tradepilot.runtime import Runtime
from tradepilot.trading import ledger
from tradepilot.trading.ledger import Amounts, Bucket, InsufficientFunds, LedgerError, Posting
from tradepilot.trading.models import Balance, LedgerKind, LedgerPosting, LedgerTransaction, TradingAccount

D = Decimal


async def new_account(runtime: Runtime, *, usdt: str | None = "10000") -> uuid.UUID:
    """A fresh user (registered the usual way) and a new paper account funded with ``usdt``."""
    async with runtime.db.session() as session:
        user = await runtime.services["identity"].register(session, email=f"l-{uuid.uuid4().hex[:10]}@example.com",
                                                           password="a sturdy test passphrase")
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        account = TradingAccount(user_id=user.id, name="t", starting_balance=D(usdt or 0), created_at=now,
                                 updated_at=now)
        session.add(account)
        await session.flush()
        if usdt:
            await ledger.deposit(session, account, "USDT", D(usdt), now=now)
    return account.id


async def apply(runtime: Runtime, account_id: uuid.UUID, op, *args, **kwargs):  # type: ignore[no-untyped-def]
    """One ledger call in its own transaction (committed, or rolled back if it raises)."""
    async with runtime.db.transaction() as session:
        account = await session.get(TradingAccount, account_id)
        assert account is not None
        return await op(session, account, *args, now=runtime.clock.now(), **kwargs)


async def check_invariants(runtime: Runtime, account_id: uuid.UUID) -> dict[str, Amounts]:
    """Every transaction balances per asset, every asset's buckets sum to zero, the balance rows
    equal the recomputation from the postings, and nothing held is negative."""
    async with runtime.db.session() as session:
        postings = list(await session.scalars(select(LedgerPosting).where(LedgerPosting.account_id == account_id)))
        txns = list(await session.scalars(select(LedgerTransaction).where(LedgerTransaction.account_id == account_id)
                                          .order_by(LedgerTransaction.seq)))
        rows = {b.asset: Amounts(b.free, b.locked) for b in await ledger.get_balances(session, account_id)}
        recomputed = await ledger.recompute_balances(session, account_id)
        totals = await ledger.bucket_totals(session, account_id)
        seq = (await session.get(TradingAccount, account_id)).ledger_seq  # type: ignore[union-attr]
    per_txn: dict[tuple[uuid.UUID, str], Decimal] = defaultdict(Decimal)
    legs: dict[uuid.UUID, int] = defaultdict(int)
    for p in postings:
        per_txn[(p.transaction_id, p.asset)] = EXACT.add(per_txn[(p.transaction_id, p.asset)], p.amount)
        legs[p.transaction_id] += 1
        assert p.amount != 0 and p.bucket in Bucket.ALL
    assert all(v == 0 for v in per_txn.values()), per_txn
    assert all(legs[t.id] >= 2 for t in txns)
    per_asset: dict[str, Decimal] = defaultdict(Decimal)
    for (asset, _bucket), amount in totals.items():
        per_asset[asset] = EXACT.add(per_asset[asset], amount)
    assert all(v == 0 for v in per_asset.values()), per_asset
    assert rows == recomputed
    assert all(a.free >= 0 and a.locked >= 0 for a in rows.values())
    assert [t.seq for t in txns] == list(range(1, seq + 1))
    return rows


# --- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("postings, message", [
    ([Posting("USDT", Bucket.FREE, D(1))], "at least two"),
    ([Posting("USDT", Bucket.FREE, D(1)), Posting("USDT", Bucket.EXTERNAL, D("-0.9"))], "sum to zero"),
    ([Posting("USDT", Bucket.FREE, D(1)), Posting("BTC", Bucket.EXTERNAL, D(-1))], "sum to zero"),
    ([Posting("USDT", Bucket.FREE, D(0)), Posting("USDT", Bucket.EXTERNAL, D(0))], "zero"),
    ([Posting("USDT", "wallet", D(1)), Posting("USDT", Bucket.EXTERNAL, D(-1))], "bucket"),
    ([Posting("usdt", Bucket.FREE, D(1)), Posting("usdt", Bucket.EXTERNAL, D(-1))], "asset"),
    ([Posting("USDT", Bucket.FREE, 1.0), Posting("USDT", Bucket.EXTERNAL, -1.0)], "Decimal"),  # type: ignore[arg-type]
    ([Posting("USDT", Bucket.FREE, D("1e-19")), Posting("USDT", Bucket.EXTERNAL, D("-1e-19"))], "decimal places"),
])
async def test_invalid_transactions_are_refused_before_anything_is_written(runtime: Runtime, postings: list[Posting],
                                                                           message: str) -> None:
    aid = await new_account(runtime)
    before = await check_invariants(runtime, aid)
    with pytest.raises(LedgerError, match=message):
        await apply(runtime, aid, ledger.post, LedgerKind.ADJUSTMENT, postings)
    with pytest.raises(LedgerError, match="kind"):
        await apply(runtime, aid, ledger.post, "gift", [Posting("USDT", Bucket.FREE, D(1)),
                                                        Posting("USDT", Bucket.EXTERNAL, D(-1))])
    assert await check_invariants(runtime, aid) == before


async def test_movements_and_a_refusal_that_leaves_no_trace(runtime: Runtime) -> None:
    aid = await new_account(runtime)
    await apply(runtime, aid, ledger.reserve, "USDT", D("2500.5"))
    await apply(runtime, aid, ledger.release, "USDT", D("0.5"))
    assert await check_invariants(runtime, aid) == {"USDT": Amounts(D("7500"), D("2500"))}
    with pytest.raises(InsufficientFunds) as refused:
        await apply(runtime, aid, ledger.release, "USDT", D("2500.000000000000000001"))
    assert refused.value.extra == {"asset": "USDT", "bucket": "locked", "available": "2500",
                                   "requested": "2500.000000000000000001"}
    with pytest.raises(InsufficientFunds):
        await apply(runtime, aid, ledger.reserve, "USDT", D("7500.1"))
    with pytest.raises(InsufficientFunds):
        await apply(runtime, aid, ledger.withdraw, "ETH", D("1"))
    with pytest.raises(LedgerError):
        await apply(runtime, aid, ledger.deposit, "USDT", D(0))
    with pytest.raises(LedgerError):
        await apply(runtime, aid, ledger.deposit, "USDT", D(-1))
    assert await check_invariants(runtime, aid) == {"USDT": Amounts(D("7500"), D("2500"))}
    async with runtime.db.session() as session:  # the refusals wrote no transaction, no ETH balance row
        assert await session.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.account_id == aid)) == 3
        assert await session.get(Balance, (aid, "ETH")) is None


async def test_fills_move_quote_to_the_market_and_base_to_free_with_the_fee(runtime: Runtime) -> None:
    aid = await new_account(runtime)
    order = ledger.Reference("order", "o-1")
    await apply(runtime, aid, ledger.reserve, "USDT", D("6500"), reference=order)
    # buy 0.1 BTC at 64,000 with a quote fee of 6.4: from the reservation
    await apply(runtime, aid, ledger.settle_fill, pay_asset="USDT", pay_amount=D("6400"), receive_asset="BTC",
                receive_amount=D("0.1"), fee_asset="USDT", fee_amount=D("6.4"), reference=order)
    # the unused reservation goes back
    await apply(runtime, aid, ledger.release, "USDT", D("93.6"), reference=order)
    assert await check_invariants(runtime, aid) == {"USDT": Amounts(D("3593.6"), D(0)),
                                                    "BTC": Amounts(D("0.1"), D(0))}
    # sell 0.05 BTC at 65,000, fee in the received quote; then a BNB-style fee from free BNB
    await apply(runtime, aid, ledger.deposit, "BNB", D("1"))
    await apply(runtime, aid, ledger.reserve, "BTC", D("0.05"))
    await apply(runtime, aid, ledger.settle_fill, pay_asset="BTC", pay_amount=D("0.05"), receive_asset="USDT",
                receive_amount=D("3250"), fee_asset="USDT", fee_amount=D("3.25"))
    await apply(runtime, aid, ledger.reserve, "BTC", D("0.05"))
    await apply(runtime, aid, ledger.settle_fill, pay_asset="BTC", pay_amount=D("0.05"), receive_asset="USDT",
                receive_amount=D("3300"), fee_asset="BNB", fee_amount=D("0.005"))
    assert await check_invariants(runtime, aid) == {
        "USDT": Amounts(D("10140.35"), D(0)), "BTC": Amounts(D(0), D(0)), "BNB": Amounts(D("0.995"), D(0))}
    async with runtime.db.session() as session:
        totals = await ledger.bucket_totals(session, aid)
        references = list(await session.scalars(select(LedgerTransaction.kind).where(
            LedgerTransaction.reference_type == "order", LedgerTransaction.reference_id == "o-1")
            .order_by(LedgerTransaction.seq)))
    assert totals[("USDT", Bucket.FEES)] == D("9.65") and totals[("BNB", Bucket.FEES)] == D("0.005")
    assert totals[("USDT", Bucket.MARKET)] == D("-150") and totals[("BTC", Bucket.MARKET)] == D(0)
    assert totals[("USDT", Bucket.EXTERNAL)] == D("-10000")
    assert references == ["reservation", "fill", "release"]
    with pytest.raises(InsufficientFunds):  # a fill can only pay out of a reservation
        await apply(runtime, aid, ledger.settle_fill, pay_asset="USDT", pay_amount=D("1"), receive_asset="BTC",
                    receive_amount=D("0.00001"))


async def test_a_dedupe_key_moves_money_once(runtime: Runtime) -> None:
    aid = await new_account(runtime)
    first = await apply(runtime, aid, ledger.withdraw, "USDT", D("10"), dedupe_key="fill:42")
    again = await apply(runtime, aid, ledger.withdraw, "USDT", D("10"), dedupe_key="fill:42")
    assert not first.replayed and again.replayed and again.transaction.id == first.transaction.id
    assert sorted(p.amount for p in again.postings) == [D(-10), D(10)]
    assert again.balances == {"USDT": Amounts(D("9990"), D(0))}
    assert await check_invariants(runtime, aid) == {"USDT": Amounts(D("9990"), D(0))}


async def test_reset_settles_every_asset_against_external(runtime: Runtime) -> None:
    aid = await new_account(runtime)
    await apply(runtime, aid, ledger.deposit, "ETH", D("3"))
    await apply(runtime, aid, ledger.reserve, "ETH", D("3"))  # all of it locked
    await apply(runtime, aid, ledger.withdraw, "USDT", D("1"))
    posted = await apply(runtime, aid, ledger.reset)
    assert posted is not None and posted.transaction.kind == "reset"
    assert await check_invariants(runtime, aid) == {"USDT": Amounts(D("10000"), D(0)), "ETH": Amounts(D(0), D(0))}
    assert await apply(runtime, aid, ledger.reset) is None  # nothing left to do


async def test_recompute_repairs_a_tampered_balance(runtime: Runtime) -> None:
    aid = await new_account(runtime)
    async with runtime.db.transaction() as session:
        balance = await session.get(Balance, (aid, "USDT"))
        assert balance is not None
        balance.free = D("1")  # a bug or a manual edit
    async with runtime.db.transaction() as session:
        await ledger.lock_account(session, aid)
        assert await ledger.recompute_balances(session, aid, write=True) == {"USDT": Amounts(D("10000"), D(0))}
    assert await check_invariants(runtime, aid) == {"USDT": Amounts(D("10000"), D(0))}


async def test_deleting_the_user_removes_accounts_balances_and_ledger(runtime: Runtime) -> None:
    aid = await new_account(runtime)
    async with runtime.db.transaction() as session:
        user_id = (await session.get(TradingAccount, aid)).user_id  # type: ignore[union-attr]
        await session.execute(delete(User).where(User.id == user_id))
    async with runtime.db.session() as session:
        assert await session.get(TradingAccount, aid) is None
        for model in (Balance, LedgerTransaction, LedgerPosting):
            assert await session.scalar(select(func.count()).select_from(model)
                                        .where(model.account_id == aid)) == 0  # type: ignore[attr-defined]


# --- concurrency -----------------------------------------------------------------------------

async def test_concurrent_reservations_never_spend_the_same_dollar(runtime: Runtime) -> None:
    aid = await new_account(runtime)

    async def one(op, amount: str) -> bool:  # type: ignore[no-untyped-def]
        try:
            await apply(runtime, aid, op, "USDT", D(amount))
            return True
        except InsufficientFunds:
            return False

    # 20 reservations of 600 against 10,000: exactly 16 fit
    results = await asyncio.gather(*(one(ledger.reserve, "600") for _ in range(20)))
    assert results.count(True) == 16
    assert await check_invariants(runtime, aid) == {"USDT": Amounts(D("400"), D("9600"))}
    # releases and withdrawals racing each other: never negative, always the ledger's sums
    mixed = await asyncio.gather(*[one(ledger.release, "600") for _ in range(8)],
                                 *[one(ledger.withdraw, "500") for _ in range(12)])
    assert all(mixed[:8])
    rows = await check_invariants(runtime, aid)
    withdrawn = mixed[8:].count(True)
    assert rows["USDT"].locked == D("4800") and rows["USDT"].free == D("5200") - 500 * withdrawn
    assert 0 <= withdrawn <= 10  # how many fit depends on the interleaving; never more than 5,200 free


# --- the property test -------------------------------------------------------------------------

ASSETS = ("USDT", "BTC")
amounts = st.one_of(
    st.integers(min_value=1, max_value=20_000).map(Decimal),
    st.decimals(min_value=D("0.01"), max_value=D("5000"), places=2),
    st.decimals(min_value=D("0.000000000000000001"), max_value=D("3"), places=18),
)
operations = st.lists(st.one_of(
    st.tuples(st.sampled_from(["deposit", "withdraw", "reserve", "release"]), st.sampled_from(ASSETS), amounts),
    st.tuples(st.just("fill"), st.sampled_from(ASSETS), st.tuples(amounts, amounts, amounts)),
    st.just(("reset", "USDT", D(0))),
), min_size=1, max_size=16)


def model_step(model: dict[str, list[Decimal]], kind: str, asset: str, arg) -> dict[str, list[Decimal]] | None:  # type: ignore[no-untyped-def]
    """The expected balances after one operation (free, locked per asset), or None if refused."""
    state = {a: list(v) for a, v in model.items()}

    def add(a: str, i: int, amount: Decimal) -> None:
        state.setdefault(a, [D(0), D(0)])[i] = EXACT.add(state.get(a, [D(0), D(0)])[i], amount)

    if kind == "reset":  # the account's starting balance is zero: everything back to zero
        return {a: [D(0), D(0)] for a in state}
    if kind == "deposit":
        add(asset, 0, arg)
    elif kind == "withdraw":
        add(asset, 0, -arg)
    elif kind == "reserve":
        add(asset, 0, -arg)
        add(asset, 1, arg)
    elif kind == "release":
        add(asset, 1, -arg)
        add(asset, 0, arg)
    else:  # fill: pay `asset` from locked, receive the other, fee in the received asset
        other = ASSETS[1 - ASSETS.index(asset)]
        pay, receive, fee = arg
        add(asset, 1, -pay)
        add(other, 0, receive)
        add(other, 0, -fee)
    if any(v < 0 for pair in state.values() for v in pair):
        return None
    return state


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=operations)
async def test_property_the_ledger_always_balances(runtime: Runtime, ops) -> None:  # type: ignore[no-untyped-def]
    aid = await new_account(runtime, usdt=None)
    model: dict[str, list[Decimal]] = {}
    for kind, asset, arg in ops:
        expected = model_step(model, kind, asset, arg)
        if kind == "fill":
            pay, receive, fee = arg
            other = ASSETS[1 - ASSETS.index(asset)]
            call = apply(runtime, aid, ledger.settle_fill, pay_asset=asset, pay_amount=pay, receive_asset=other,
                         receive_amount=receive, fee_asset=other, fee_amount=fee)
        elif kind == "reset":
            call = apply(runtime, aid, ledger.reset)
        else:
            call = apply(runtime, aid, getattr(ledger, kind), asset, arg)
        if expected is None:
            with pytest.raises(InsufficientFunds):
                await call
        else:
            await call
            model = expected
    rows = await check_invariants(runtime, aid)
    assert {a: [v.free, v.locked] for a, v in rows.items()} == model
