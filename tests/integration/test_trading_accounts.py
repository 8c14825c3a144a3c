"""Trading accounts over HTTP: the default paper account, deposits, withdrawals, reset, close,
the ledger, ownership, plan limits, concurrency and the events. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select

from tests.helpers import bearer, new_user
from tests.integration.admin_support import client_from, create_key, set_account
from tests.integration.ws_helpers import authed, uvicorn_server
from tradepilot.core.money import EXACT
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.runtime import Runtime
from tradepilot.trading import ledger
from tradepilot.trading.models import Balance, LedgerPosting, LedgerTransaction, TradingAccount
from tradepilot.trading.service import OPEN_ORDER_COUNTERS

ACCOUNTS = "/api/trading/accounts"


async def default_account(client: httpx.AsyncClient, tokens: dict) -> dict[str, Any]:
    resp = await client.get(ACCOUNTS, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    [account] = [a for a in resp.json()["items"] if a["is_default"]]
    return account  # type: ignore[no-any-return]


async def balances(client: httpx.AsyncClient, tokens: dict, account_id: str) -> dict[str, dict[str, str]]:
    resp = await client.get(f"{ACCOUNTS}/{account_id}", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return {b["asset"]: b for b in resp.json()["balances"]}


async def move(client: httpx.AsyncClient, tokens: dict, account_id: str, what: str, asset: str,
               amount: Any) -> httpx.Response:
    return await client.post(f"{ACCOUNTS}/{account_id}/{what}", json={"asset": asset, "amount": amount},
                             headers=bearer(tokens))


async def raw_move(client: httpx.AsyncClient, tokens: dict, account_id: str, what: str, body: str) -> httpx.Response:
    """A hand-written JSON body: numbers exactly as typed (0.1 stays 0.1)."""
    return await client.post(f"{ACCOUNTS}/{account_id}/{what}", content=body.encode(),
                             headers={**bearer(tokens), "Content-Type": "application/json"})


async def db_state(runtime: Runtime, account_id: str) -> dict[str, Any]:
    """Everything the ledger wrote for an account, and the balances as rows and as recomputed."""
    aid = uuid.UUID(account_id)
    async with runtime.db.session() as session:
        txns = list(await session.scalars(select(LedgerTransaction).where(LedgerTransaction.account_id == aid)
                                          .order_by(LedgerTransaction.seq)))
        postings = list(await session.scalars(select(LedgerPosting).where(LedgerPosting.account_id == aid)))
        rows = {b.asset: ledger.Amounts(b.free, b.locked) for b in await ledger.get_balances(session, aid)}
        recomputed = await ledger.recompute_balances(session, aid)
        events = await session.scalar(select(func.count()).select_from(OutboxEvent))
    return {"txns": txns, "postings": postings, "rows": rows, "recomputed": recomputed, "events": events}


def assert_balanced(state: dict[str, Any]) -> None:
    per_txn: dict[tuple[uuid.UUID, str], Decimal] = defaultdict(Decimal)
    for p in state["postings"]:
        per_txn[(p.transaction_id, p.asset)] = EXACT.add(per_txn[(p.transaction_id, p.asset)], p.amount)
    assert all(total == 0 for total in per_txn.values()), per_txn
    assert state["rows"] == state["recomputed"]
    assert all(a.free >= 0 and a.locked >= 0 for a in state["rows"].values())


# --- the default account -------------------------------------------------------------------

async def test_registration_opens_a_default_paper_account_with_10000_usdt(client: httpx.AsyncClient,
                                                                          runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    listing = (await client.get(ACCOUNTS, headers=bearer(tokens))).json()
    assert listing["next_cursor"] is None and len(listing["items"]) == 1
    account = listing["items"][0]
    assert account["is_default"] is True and account["kind"] == "paper" and account["margin_mode"] == "spot"
    assert account["status"] == "active" and account["quote_currency"] == "USDT"
    assert account["starting_balance"] == "10000" and account["venue"] == "paper"
    detail = (await client.get(f"{ACCOUNTS}/{account['id']}", headers=bearer(tokens))).json()
    assert detail["balances"] == [{"asset": "USDT", "free": "10000", "locked": "0", "total": "10000"}]
    entries = (await client.get(f"{ACCOUNTS}/{account['id']}/ledger", headers=bearer(tokens))).json()["items"]
    assert len(entries) == 1 and entries[0]["kind"] == "deposit" and entries[0]["seq"] == 1
    assert sorted((p["bucket"], p["amount"]) for p in entries[0]["postings"]) == [("external", "-10000"),
                                                                                  ("free", "10000")]
    assert_balanced(await db_state(runtime, account["id"]))


async def test_the_starting_balance_and_asset_come_from_the_settings(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support import make_settings
    from tradepilot.app import create_app

    app = create_app(make_settings(database_url, data_dir=tmp_path / "var", paper_starting_balance="0.5",
                                   paper_quote_asset="eur"))
    async with app.router.lifespan_context(app), client_from(app, "203.0.113.9") as client:
        _, tokens = await new_user(client)
        account = await default_account(client, tokens)
        assert account["quote_currency"] == "EUR" and account["starting_balance"] == "0.5"
        assert await balances(client, tokens, account["id"]) == {
            "EUR": {"asset": "EUR", "free": "0.5", "locked": "0", "total": "0.5"}}


async def test_a_user_from_before_trading_gets_the_default_account_on_the_first_request(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    profile, tokens = await new_user(client)
    async with runtime.db.transaction() as session:  # as if registered before this feature
        await session.execute(delete(TradingAccount).where(TradingAccount.user_id == uuid.UUID(profile["id"])))
    # racing first requests open exactly one default account
    pages = await asyncio.gather(*(client.get(ACCOUNTS, headers=bearer(tokens)) for _ in range(5)))
    assert all(p.status_code == 200 for p in pages), [p.text for p in pages]
    assert {tuple(a["id"] for a in p.json()["items"]) for p in pages} == {(pages[0].json()["items"][0]["id"],)}
    account = await default_account(client, tokens)
    assert (await balances(client, tokens, account["id"]))["USDT"]["free"] == "10000"
    async with runtime.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(TradingAccount).where(
            TradingAccount.user_id == uuid.UUID(profile["id"]))) == 1


# --- deposits and withdrawals ----------------------------------------------------------------

async def test_deposits_and_withdrawals_are_exact(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    aid = (await default_account(client, tokens))["id"]
    first = await raw_move(client, tokens, aid, "deposits", '{"asset": "btc", "amount": 0.1}')
    assert first.status_code == 201, first.text
    assert first.json()["balances"] == [{"asset": "BTC", "free": "0.1", "locked": "0", "total": "0.1"}]
    assert first.json()["transaction"]["kind"] == "deposit"
    assert (await raw_move(client, tokens, aid, "deposits", '{"asset": "BTC", "amount": 0.2}')).status_code == 201
    assert (await balances(client, tokens, aid))["BTC"]["free"] == "0.3"  # not 0.30000000000000004
    tiny = await raw_move(client, tokens, aid, "deposits", '{"asset": "BTC", "amount": 1e-18}')
    assert tiny.status_code == 201 and tiny.json()["balances"][0]["free"] == "0.300000000000000001"
    out = await move(client, tokens, aid, "withdrawals", "BTC", "0.3")
    assert out.status_code == 201 and out.json()["balances"][0]["free"] == "0.000000000000000001"
    assert (await move(client, tokens, aid, "withdrawals", "BTC", "0.000000000000000001")).status_code == 201
    big = await move(client, tokens, aid, "deposits", "USDT", "123456789012345678.123456789012345678")
    assert big.status_code == 201
    assert big.json()["balances"][0]["total"] == "123456789012355678.123456789012345678"
    assert (await balances(client, tokens, aid))["BTC"] == {"asset": "BTC", "free": "0", "locked": "0", "total": "0"}
    assert_balanced(await db_state(runtime, aid))


async def test_insufficient_funds_is_422_and_writes_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    aid = (await default_account(client, tokens))["id"]
    before = await db_state(runtime, aid)
    for asset, amount in (("USDT", "10000.000000000000000001"), ("BTC", "1"), ("USDT", "1e6")):
        resp = await move(client, tokens, aid, "withdrawals", asset, amount)
        assert resp.status_code == 422, resp.text
        body = resp.json()
        assert body["code"] == "insufficient_funds" and body["asset"] == asset and body["bucket"] == "free"
        assert resp.headers["content-type"] == "application/problem+json"
    assert body["available"] == "10000" and body["requested"] == "1000000"
    after = await db_state(runtime, aid)
    assert [t.id for t in after["txns"]] == [t.id for t in before["txns"]]
    assert after["rows"] == before["rows"] and after["events"] == before["events"]
    assert (await move(client, tokens, aid, "withdrawals", "USDT", "10000")).status_code == 201  # all of it: fine
    assert (await balances(client, tokens, aid))["USDT"]["total"] == "0"


@pytest.mark.parametrize("body, code", [
    ('{"asset": "USDT", "amount": 0}', "validation_error"),
    ('{"asset": "USDT", "amount": "0"}', "validation_error"),
    ('{"asset": "USDT", "amount": -1}', "validation_error"),
    ('{"asset": "USDT", "amount": "-0.5"}', "validation_error"),
    ('{"asset": "USDT", "amount": "0.0000000000000000001"}', "decimal_precision_loss"),
    ('{"asset": "USDT", "amount": 0.1234567890123456789}', "decimal_precision_loss"),
    ('{"asset": "USDT", "amount": 1e19}', "decimal_precision_loss"),
    ('{"asset": "USDT", "amount": "NaN"}', "decimal_precision_loss"),
    ('{"asset": "USDT", "amount": "Infinity"}', "decimal_precision_loss"),
    ('{"asset": "USDT", "amount": "ten"}', "decimal_precision_loss"),
    ('{"asset": "USDT", "amount": true}', "decimal_precision_loss"),
    ('{"asset": "USDT", "amount": null}', "decimal_precision_loss"),
    ('{"asset": "USDT"}', "validation_error"),
    ('{"asset": "US-DT", "amount": "1"}', "validation_error"),
    ('{"asset": "", "amount": "1"}', "validation_error"),
    ('{"asset": "USDT", "amount": "1", "account_id": "x"}', "validation_error"),
    ('{"asset": "USDT", "amount": 1', "malformed_json"),
])
async def test_bad_amounts_are_refused_and_write_nothing(client: httpx.AsyncClient, runtime: Runtime, body: str,
                                                         code: str) -> None:
    _, tokens = await new_user(client)
    aid = (await default_account(client, tokens))["id"]
    before = await db_state(runtime, aid)
    for what in ("deposits", "withdrawals"):
        resp = await raw_move(client, tokens, aid, what, body)
        assert resp.status_code == (400 if code == "malformed_json" else 422), resp.text
        assert resp.json()["code"] == code, resp.text
    after = await db_state(runtime, aid)
    assert len(after["txns"]) == len(before["txns"]) and after["rows"] == before["rows"]
    assert after["events"] == before["events"]


# --- create, list, close, reset ----------------------------------------------------------------

async def test_create_list_and_close_accounts(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    default = await default_account(client, tokens)
    created = await client.post(ACCOUNTS, json={"name": "  Swing  ", "starting_balance": "250.5",
                                                "quote_currency": "eur"}, headers=bearer(tokens))
    assert created.status_code == 201, created.text
    swing = created.json()
    assert swing["name"] == "Swing" and swing["is_default"] is False and swing["quote_currency"] == "EUR"
    assert swing["balances"] == [{"asset": "EUR", "free": "250.5", "locked": "0", "total": "250.5"}]
    empty = (await client.post(ACCOUNTS, json={"name": "Empty", "starting_balance": 0},
                               headers=bearer(tokens))).json()
    assert empty["balances"] == [] and empty["starting_balance"] == "0"
    # paginated, oldest first: the default account leads
    first = (await client.get(ACCOUNTS, params={"limit": 2}, headers=bearer(tokens))).json()
    assert [a["id"] for a in first["items"]] == [default["id"], swing["id"]] and first["next_cursor"]
    second = (await client.get(ACCOUNTS, params={"limit": 2, "cursor": first["next_cursor"]},
                               headers=bearer(tokens))).json()
    assert [a["id"] for a in second["items"]] == [empty["id"]] and second["next_cursor"] is None
    bad = await client.get(ACCOUNTS, params={"cursor": "not-a-cursor"}, headers=bearer(tokens))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    # the default account cannot be closed; another one can, once
    refused = await client.delete(f"{ACCOUNTS}/{default['id']}", headers=bearer(tokens))
    assert refused.status_code == 409 and refused.json()["code"] == "default_account"
    closed = await client.delete(f"{ACCOUNTS}/{swing['id']}", headers=bearer(tokens))
    assert closed.status_code == 200 and closed.json()["status"] == "closed" and closed.json()["closed_at"]
    again = await client.delete(f"{ACCOUNTS}/{swing['id']}", headers=bearer(tokens))
    assert again.status_code == 409 and again.json()["code"] == "account_closed"
    before = await db_state(runtime, swing["id"])
    for resp in (await move(client, tokens, swing["id"], "deposits", "EUR", "1"),
                 await move(client, tokens, swing["id"], "withdrawals", "EUR", "1"),
                 await client.post(f"{ACCOUNTS}/{swing['id']}/reset", headers=bearer(tokens))):
        assert resp.status_code == 409 and resp.json()["code"] == "account_closed", resp.text
    assert len((await db_state(runtime, swing["id"]))["txns"]) == len(before["txns"])
    # still readable, and filterable by status
    assert (await balances(client, tokens, swing["id"]))["EUR"]["free"] == "250.5"
    only_closed = (await client.get(ACCOUNTS, params={"status": "closed"}, headers=bearer(tokens))).json()
    assert [a["id"] for a in only_closed["items"]] == [swing["id"]]
    assert (await client.get(ACCOUNTS, params={"status": "gone"}, headers=bearer(tokens))).status_code == 422
    for body in ({"name": ""}, {"name": "x" * 101}, {"name": "a", "starting_balance": "-1"},
                 {"name": "a", "quote_currency": "not an asset"}, {"name": "a", "kind": "live"}):
        resp = await client.post(ACCOUNTS, json=body, headers=bearer(tokens))
        assert resp.status_code == 422, (body, resp.text)


async def test_the_plan_limits_open_accounts(client: httpx.AsyncClient, runtime: Runtime) -> None:
    profile, tokens = await new_user(client)
    ids = [(await client.post(ACCOUNTS, json={"name": f"a{i}"}, headers=bearer(tokens))).json()["id"]
           for i in range(2)]
    limits = (await client.get("/api/users/me/limits", headers=bearer(tokens))).json()
    assert limits["limits"]["trading_accounts"] == 3 and limits["usage"]["trading_accounts"] == 3
    over = await client.post(ACCOUNTS, json={"name": "one too many"}, headers=bearer(tokens))
    assert over.status_code == 409 and over.json()["code"] == "trading_account_limit_reached"
    assert over.json()["limit"] == 3
    assert (await client.delete(f"{ACCOUNTS}/{ids[0]}", headers=bearer(tokens))).status_code == 200
    assert (await client.post(ACCOUNTS, json={"name": "replacement"}, headers=bearer(tokens))).status_code == 201
    # racing creations cannot overshoot the limit
    await set_account(runtime, profile["id"], plan="pro")  # 10
    racing = await asyncio.gather(*(client.post(ACCOUNTS, json={"name": f"r{i}"}, headers=bearer(tokens))
                                    for i in range(10)))
    assert sorted(r.status_code for r in racing) == [201] * 7 + [409] * 3
    open_now = (await client.get(ACCOUNTS, params={"status": "active"}, headers=bearer(tokens))).json()["items"]
    assert len(open_now) == 10


async def test_reset_returns_every_balance_to_the_start_through_the_ledger(client: httpx.AsyncClient,
                                                                           runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    aid = (await default_account(client, tokens))["id"]
    assert (await move(client, tokens, aid, "withdrawals", "USDT", "2500.25")).status_code == 201
    assert (await move(client, tokens, aid, "deposits", "BTC", "1.5")).status_code == 201
    async with runtime.db.transaction() as session:  # an order's reservation, as the order layer will make
        account = await session.get(TradingAccount, uuid.UUID(aid))
        assert account is not None
        await ledger.reserve(session, account, "USDT", Decimal("100"), now=runtime.clock.now())
    resp = await client.post(f"{ACCOUNTS}/{aid}/reset", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    assert {b["asset"]: (b["free"], b["locked"]) for b in resp.json()["balances"]} == {
        "USDT": ("10000", "0"), "BTC": ("0", "0")}
    state = await db_state(runtime, aid)
    assert_balanced(state)
    reset_txn = state["txns"][-1]
    assert reset_txn.kind == "reset"
    legs = sorted((p.asset, p.bucket, p.amount) for p in state["postings"] if p.transaction_id == reset_txn.id)
    assert legs == [("BTC", "external", Decimal("1.5")), ("BTC", "free", Decimal("-1.5")),
                    ("USDT", "external", Decimal("-2500.25")), ("USDT", "free", Decimal("2600.25")),
                    ("USDT", "locked", Decimal("-100"))]
    # already at the start: nothing to record
    assert (await client.post(f"{ACCOUNTS}/{aid}/reset", headers=bearer(tokens))).status_code == 200
    assert len((await db_state(runtime, aid))["txns"]) == len(state["txns"])


async def test_close_and_reset_are_refused_while_orders_are_open(client: httpx.AsyncClient, runtime: Runtime,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, tokens = await new_user(client)
    default = await default_account(client, tokens)
    other = (await client.post(ACCOUNTS, json={"name": "bot"}, headers=bearer(tokens))).json()
    assert (await move(client, tokens, default["id"], "withdrawals", "USDT", "1")).status_code == 201

    async def two_open_orders(session, account) -> int:  # type: ignore[no-untyped-def]
        return 2

    monkeypatch.setitem(OPEN_ORDER_COUNTERS, "test.orders", two_open_orders)
    for resp in (await client.post(f"{ACCOUNTS}/{default['id']}/reset", headers=bearer(tokens)),
                 await client.delete(f"{ACCOUNTS}/{other['id']}", headers=bearer(tokens))):
        assert resp.status_code == 409 and resp.json()["code"] == "open_orders" and resp.json()["open_orders"] == 2
    assert (await balances(client, tokens, default["id"]))["USDT"]["free"] == "9999"
    monkeypatch.delitem(OPEN_ORDER_COUNTERS, "test.orders")
    assert (await client.delete(f"{ACCOUNTS}/{other['id']}", headers=bearer(tokens))).status_code == 200


async def test_the_ledger_pages_newest_first(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    aid = (await default_account(client, tokens))["id"]
    for amount in ("1", "2", "3"):
        assert (await move(client, tokens, aid, "deposits", "ETH", amount)).status_code == 201
    assert (await move(client, tokens, aid, "withdrawals", "ETH", "0.5")).status_code == 201
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{ACCOUNTS}/{aid}/ledger", params=params, headers=bearer(tokens))).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["seq"] for e in seen] == [5, 4, 3, 2, 1]
    assert [e["kind"] for e in seen] == ["withdrawal", "deposit", "deposit", "deposit", "deposit"]
    assert sorted((p["bucket"], p["amount"]) for p in seen[0]["postings"]) == [("external", "0.5"),
                                                                               ("free", "-0.5")]
    only = (await client.get(f"{ACCOUNTS}/{aid}/ledger", params={"kind": "withdrawal"}, headers=bearer(tokens))).json()
    assert [e["seq"] for e in only["items"]] == [5]
    for params in ({"kind": "gift"}, {"limit": 0}, {"limit": 201}):
        assert (await client.get(f"{ACCOUNTS}/{aid}/ledger", params=params, headers=bearer(tokens))).status_code == 422
    bad = await client.get(f"{ACCOUNTS}/{aid}/ledger", params={"cursor": "eHl6"}, headers=bearer(tokens))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"


# --- ownership and scopes ------------------------------------------------------------------------

async def test_another_users_account_is_404_on_every_account_route(app, client: httpx.AsyncClient,  # type: ignore[no-untyped-def]
                                                                   runtime: Runtime) -> None:
    _, victim_tokens = await new_user(client)
    victim = await default_account(client, victim_tokens)
    _, tokens = await new_user(client)
    await default_account(client, tokens)
    before = await db_state(runtime, victim["id"])
    routes = [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
              if path.startswith(ACCOUNTS + "/{account_id}")]
    assert len(routes) == 8, routes  # 6 + a live account's reconciliation runs and reconcile-now
    body = {"asset": "USDT", "amount": "1"}
    for method, path in routes:
        for target in (victim["id"], str(uuid.uuid4())):
            resp = await client.request(method, path.replace("{account_id}", target), headers=bearer(tokens),
                                        json=body if method == "POST" else None)
            assert resp.status_code == 404, (method, path, resp.text)
            assert resp.json()["code"] == "account_not_found"
        malformed = await client.request(method, path.replace("{account_id}", "12"), headers=bearer(tokens),
                                         json=body if method == "POST" else None)
        assert malformed.status_code == 422, (method, path, malformed.text)
        anonymous = await client.request(method, path.replace("{account_id}", victim["id"]))
        assert anonymous.status_code == 401
    after = await db_state(runtime, victim["id"])
    assert len(after["txns"]) == len(before["txns"]) and after["rows"] == before["rows"]
    mine = (await client.get(ACCOUNTS, headers=bearer(tokens))).json()["items"]
    assert victim["id"] not in {a["id"] for a in mine}


async def test_balance_changes_need_the_trade_scope(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    aid = (await default_account(client, tokens))["id"]
    reader = {"X-API-Key": (await create_key(client, tokens, ["read"]))["key"]}
    trader = {"X-API-Key": (await create_key(client, tokens, ["trade"]))["key"]}
    assert (await client.get(f"{ACCOUNTS}/{aid}", headers=reader)).status_code == 200
    assert (await client.get(f"{ACCOUNTS}/{aid}/ledger", headers=reader)).status_code == 200
    for method, path, body in (("POST", f"{ACCOUNTS}/{aid}/deposits", {"asset": "USDT", "amount": "1"}),
                               ("POST", f"{ACCOUNTS}/{aid}/withdrawals", {"asset": "USDT", "amount": "1"}),
                               ("POST", f"{ACCOUNTS}/{aid}/reset", None), ("POST", ACCOUNTS, {"name": "x"}),
                               ("DELETE", f"{ACCOUNTS}/{aid}", None)):
        resp = await client.request(method, path, json=body, headers=reader)
        assert resp.status_code == 403 and resp.json()["code"] == "insufficient_scope", (path, resp.text)
    assert (await client.get(f"{ACCOUNTS}/{aid}", headers=trader)).status_code == 403
    anonymous = await client.post(f"{ACCOUNTS}/{aid}/deposits", json={"asset": "USDT", "amount": "1"})
    assert anonymous.status_code == 401
    resp = await client.post(f"{ACCOUNTS}/{aid}/deposits", json={"asset": "USDT", "amount": "1"}, headers=trader)
    assert resp.status_code == 201


# --- concurrency ----------------------------------------------------------------------------------

async def test_concurrent_withdrawals_never_overspend(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    aid = (await default_account(client, tokens))["id"]
    results = await asyncio.gather(*(move(client, tokens, aid, "withdrawals", "USDT", "700") for _ in range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 14 + [422] * 6, [r.text for r in results if r.status_code not in (201, 422)]
    assert all(r.json()["code"] == "insufficient_funds" for r in results if r.status_code == 422)
    assert (await balances(client, tokens, aid))["USDT"]["free"] == "200"
    state = await db_state(runtime, aid)
    assert_balanced(state)
    assert [t.seq for t in state["txns"]] == list(range(1, 16))


# --- events ----------------------------------------------------------------------------------------

async def test_every_change_emits_an_event_that_reaches_the_account_channel(app, client: httpx.AsyncClient,  # type: ignore[no-untyped-def]
                                                                            runtime: Runtime) -> None:
    profile, tokens = await new_user(client)
    uid = uuid.UUID(profile["id"])
    async with runtime.db.session() as session:
        registered = list(await session.scalars(select(OutboxEvent).where(OutboxEvent.user_id == uid)
                                                .order_by(OutboxEvent.seq)))
    assert [(e.type, e.topic) for e in registered] == [
        ("account.created", f"user.{uid}.accounts"), ("balance.updated", f"user.{uid}.balances")]
    assert registered[1].payload["balances"] == [{"asset": "USDT", "free": "10000", "locked": "0", "total": "10000"}]
    aid = (await default_account(client, tokens))["id"]
    async with uvicorn_server(app) as address, contextlib.AsyncExitStack() as stack:
        ws = await authed(address, tokens["access_token"], stack)
        await ws.subscribe("account")
        base = (await ws.expect_type("subscribed", channel="account"))["seq"]
        assert base == 2
        assert (await move(client, tokens, aid, "deposits", "USDT", "0.1")).status_code == 201
        assert (await move(client, tokens, aid, "withdrawals", "USDT", "5")).status_code == 201
        other = (await client.post(ACCOUNTS, json={"name": "alt", "starting_balance": "7"},
                                   headers=bearer(tokens))).json()
        assert (await client.delete(f"{ACCOUNTS}/{other['id']}", headers=bearer(tokens))).status_code == 200
        assert (await client.post(f"{ACCOUNTS}/{aid}/reset", headers=bearer(tokens))).status_code == 200
        events = [await ws.expect_type("event", channel="account") for _ in range(6)]
    assert [e["seq"] for e in events] == list(range(base + 1, base + 7))
    assert [(e["data"]["type"], e["data"]["kind"]) for e in events] == [
        ("balance.updated", "balances"), ("balance.updated", "balances"), ("account.created", "accounts"),
        ("balance.updated", "balances"), ("account.closed", "accounts"), ("balance.updated", "balances")]
    deposit, withdrawal = events[0]["data"]["payload"], events[1]["data"]["payload"]
    assert deposit["account_id"] == aid and deposit["transaction"]["kind"] == "deposit"
    assert deposit["balances"] == [{"asset": "USDT", "free": "10000.1", "locked": "0", "total": "10000.1"}]
    assert withdrawal["balances"][0]["free"] == "9995.1"
    assert events[4]["data"]["payload"]["account"]["status"] == "closed"
    assert events[5]["data"]["payload"]["transaction"]["kind"] == "reset"
    assert events[5]["data"]["payload"]["balances"][0]["free"] == "10000"

