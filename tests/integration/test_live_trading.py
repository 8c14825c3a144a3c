"""Live accounts and live orders: the real ccxt ``binance`` against the local fake in
tests/fakes/binance_spot.py, on SQLite and PostgreSQL (docs/exchanges.md)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from tests import support
from tests.fakes.binance_spot import FakeBinanceSpot
from tests.helpers import bearer, new_user
from tests.integration.orders_support import ACCOUNTS, ORDERS, assert_ledger_consistent
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Fill, Order, OrderEvent

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
D = Decimal


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    server = await FakeBinanceSpot().start()
    server.timeout_seconds = 6.0  # held back well past the client's timeout, also on a loaded CI machine
    yield server
    await server.stop()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot) -> Settings:
    return support.make_settings(database_url, data_dir=tmp_path / "var", live_exchange_rest_url=fake.rest_url,
                                 live_request_timeout_seconds=3.0, live_lookup_backoff_seconds=0.05,
                                 live_lookup_attempts=5)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    """The app on the test clock: a back-off ends when the test says so, without sleeping."""
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def add_live(client: httpx.AsyncClient, tokens: dict, **overrides: Any) -> httpx.Response:
    body = {"type": "live", "exchange": "binance", "api_key": API_KEY, "secret": SECRET, "name": "Main", **overrides}
    return await client.post(ACCOUNTS, json=body, headers=bearer(tokens))


async def live_account(client: httpx.AsyncClient, fake: FakeBinanceSpot, balances: dict[str, str] | None = None,
                       ) -> tuple[dict, dict]:
    fake.add_account(API_KEY, SECRET, balances or {"USDT": "10000", "BNB": "1"})
    _, tokens = await new_user(client)
    resp = await add_live(client, tokens)
    assert resp.status_code == 201, resp.text
    return tokens, resp.json()


def balances_of(account: dict) -> dict[str, tuple[str, str]]:
    return {b["asset"]: (b["free"], b["locked"]) for b in account["balances"]}


# --- accounts and credentials -------------------------------------------------------------------

async def test_live_account_is_bound_and_its_credentials_never_leave_in_clear(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.add_account(API_KEY, SECRET, {"USDT": "10000", "BNB": "1"})
    _, tokens = await new_user(client)
    answers = [await add_live(client, tokens)]
    account = answers[0].json()
    assert answers[0].status_code == 201, answers[0].text
    assert (account["kind"], account["venue"], account["name"]) == ("live", "binance", "Main")
    assert balances_of(account) == {"BNB": ("1", "0"), "USDT": ("10000", "0")}
    assert account["key_permissions"]["enableWithdrawals"] is False
    # the key was checked with the exchange, signed with the secret
    assert {e for m, e, _ in fake.requests} >= {"apiRestrictions", "account"}

    answers.append(await client.get(f"{ACCOUNTS}/{account['id']}", headers=bearer(tokens)))
    answers.append(await client.get(ACCOUNTS, headers=bearer(tokens)))
    answers.append(await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.01"}))
    assert answers[-1].status_code == 201, answers[-1].text
    answers.append(await client.get(f"{ACCOUNTS}/{account['id']}/ledger", headers=bearer(tokens)))
    answers.append(await add_live(client, tokens, name="x" * 101))  # a refused body echoes nothing
    assert answers[-1].status_code == 422
    for answer in answers:
        assert API_KEY not in answer.text and SECRET not in answer.text
        assert API_KEY[:16] not in answer.text

    # at rest: the row holds ciphertext only; the raw database (file or rows) never the clear text
    async with runtime.db.session() as session:
        row = await session.get(TradingAccount, uuid.UUID(account["id"]))
        assert row.credentials_encrypted and API_KEY not in row.credentials_encrypted
        dumped = [str(r) for r in (await session.execute(text("SELECT * FROM trading_account"))).all()]
        dumped += [str(r) for r in (await session.execute(text("SELECT * FROM trading_order_event"))).all()]
        dumped += [str(r) for r in (await session.execute(text("SELECT * FROM outbox_event"))).all()]
    assert all(API_KEY not in d and SECRET not in d for d in dumped)
    if settings.is_sqlite:
        raw = Path(settings.database_url.split("///", 1)[1]).read_bytes()
        for suffix in ("-wal",):
            wal = Path(settings.database_url.split("///", 1)[1] + suffix)
            raw += wal.read_bytes() if wal.exists() else b""
        assert API_KEY.encode() not in raw and SECRET.encode() not in raw
    # the credentials decrypt with the configured keys (rotation finds the column)
    from tradepilot.core.secrets_box import ENCRYPTED_COLUMNS, secret_box
    from tradepilot.trading.live.credentials import unseal

    assert "trading_account.credentials_encrypted" in ENCRYPTED_COLUMNS
    assert unseal(secret_box(runtime), row.credentials_encrypted).api_key == API_KEY
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert API_KEY not in logged and SECRET not in logged


async def test_withdrawal_enabled_key_is_refused_unless_allowed(client: httpx.AsyncClient, fake: FakeBinanceSpot,
                                                                runtime: Any) -> None:
    fake.add_account(API_KEY, SECRET, {"USDT": "100"}, withdrawals=True)
    _, tokens = await new_user(client)
    resp = await add_live(client, tokens)
    assert resp.status_code == 422 and resp.json()["code"] == "withdrawal_permission_enabled"
    assert resp.headers["content-type"].startswith("application/problem+json")
    listed = (await client.get(ACCOUNTS, headers=bearer(tokens))).json()["items"]
    assert [a["kind"] for a in listed] == ["paper"]  # nothing stored

    runtime.settings.live_allow_withdrawal_keys = True  # the operator's choice
    resp = await add_live(client, tokens)
    assert resp.status_code == 201 and resp.json()["key_permissions"]["enableWithdrawals"] is True


async def test_bad_keys_and_unknown_exchanges_are_refused(client: httpx.AsyncClient, fake: FakeBinanceSpot) -> None:
    fake.add_account(API_KEY, SECRET, {"USDT": "100"})
    _, tokens = await new_user(client)
    resp = await add_live(client, tokens, secret="not-the-secret")
    assert resp.status_code == 422 and resp.json()["code"] == "exchange_auth_failed", resp.text
    resp = await add_live(client, tokens, exchange="kraken")
    assert resp.status_code == 422 and resp.json()["code"] == "exchange_not_supported"
    resp = await add_live(client, tokens, api_key="")
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"


# --- orders ---------------------------------------------------------------------------------------

async def test_market_order_reaches_the_exchange_and_its_fills_come_back(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await live_account(client, fake)
    resp = await client.post(ORDERS, headers={**bearer(tokens), "Idempotency-Key": "live-1"}, json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.05"})
    assert resp.status_code == 201, resp.text
    order = resp.json()
    # on the exchange: one order, with our client id, and it filled across two levels
    [sent] = fake.sent("POST", "order")
    assert sent["newClientOrderId"] == f"tp-{order['id'].replace('-', '')}" and len(sent["newClientOrderId"]) <= 36
    [on_exchange] = fake.orders
    assert on_exchange.status == "FILLED" and on_exchange.client_order_id == sent["newClientOrderId"]
    # and back: exact fills, average, fees, position, balances
    assert (order["status"], order["filled_quantity"], order["filled_quote_quantity"], order["average_fill_price"],
            order["fees"], order["reserved"], order["venue"]) == (
        "filled", "0.05", "3000.1", "60002", "3.0001", "0", "live:binance")
    fills = (await client.get("/api/trading/fills", headers=bearer(tokens),
                              params={"order_id": order["id"]})).json()["items"]
    assert sorted((f["price"], f["quantity"], f["fee"], f["fee_asset"], f["liquidity"]) for f in fills) == [
        ("60000", "0.04", "2.4", "USDT", "taker"), ("60010", "0.01", "0.6001", "USDT", "taker")]
    positions = (await client.get("/api/trading/positions", headers=bearer(tokens),
                                  params={"account_id": account["id"]})).json()["items"]
    assert [(p["symbol"], p["quantity"], p["average_entry_price"], p["fees"]) for p in positions] == [
        ("BTC/USDT", "0.05", "60002", "3.0001")]
    detail = (await client.get(f"{ACCOUNTS}/{account['id']}", headers=bearer(tokens))).json()
    exchange_side = fake.accounts[API_KEY].balances
    assert balances_of(detail) == {"BNB": ("1", "0"), "BTC": ("0.05", "0"), "USDT": ("6996.8999", "0")}
    assert (exchange_side["USDT"], exchange_side["BTC"]) == (D("6996.8999"), D("0.05"))
    await assert_ledger_consistent(runtime, account["id"])
    events = (await client.get(f"{ORDERS}/{order['id']}/events", headers=bearer(tokens))).json()["items"]
    assert [e["type"] for e in events] == ["received", "accepted", "fill", "fill"]
    # the Idempotency-Key replays the answer; nothing is sent again
    again = await client.post(ORDERS, headers={**bearer(tokens), "Idempotency-Key": "live-1"}, json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.05"})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == order
    assert len(fake.sent("POST", "order")) == 1

    # selling it back: proceeds and realised P&L
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "sell", "type": "market", "quantity": "0.05"})
    assert resp.status_code == 201 and resp.json()["status"] == "filled", resp.text
    detail = (await client.get(f"{ACCOUNTS}/{account['id']}", headers=bearer(tokens))).json()
    assert balances_of(detail)["USDT"] == (str(fake.accounts[API_KEY].balances["USDT"].normalize()), "0")
    await assert_ledger_consistent(runtime, account["id"])


async def test_resting_limit_order_is_tracked_and_cancelled_on_the_exchange(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await live_account(client, fake)
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.01",
        "price": "59000", "client_order_id": "mine-1"})
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert (order["status"], order["client_order_id"], order["reserved"]) == ("new", "mine-1", "590.59")
    assert fake.orders[0].status == "NEW" and fake.orders[0].client_order_id.startswith("tp-")
    await assert_ledger_consistent(runtime, account["id"])

    resp = await client.delete(f"{ORDERS}/{order['id']}", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["reserved"], resp.json()["cancel_reason"]) == (
        "canceled", "0", "canceled_by_user")
    assert fake.orders[0].status == "CANCELED"
    rows = await assert_ledger_consistent(runtime, account["id"])
    assert rows["USDT"].free == D("10000")
    # a trailing buy is kept by the platform (nothing sent); a trail modify is refused
    # (stops, modify, cancel-all and panic: test_live_stops.py, test_live_modify_panic.py, test_live_cancel_all.py)
    resting = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.01",
        "price": "59000"})
    assert resting.status_code == 201 and len(fake.sent("POST", "order")) == 2
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "trailing_stop", "quantity": "0.01",
        "trail_amount": "500"})
    assert resp.status_code == 201 and resp.json()["status"] == "new", resp.text
    resp = await client.put(f"{ORDERS}/{resting.json()['id']}", json={"trail_amount": "5"}, headers=bearer(tokens))
    assert resp.status_code == 422 and resp.json()["code"] == "order_type_not_supported"
    assert len(fake.sent("POST", "order")) == 2 and fake.orders[1].status == "NEW"
    await assert_ledger_consistent(runtime, account["id"])


async def test_accepted_then_timed_out_order_is_looked_up_not_resent(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await live_account(client, fake)
    fake.accept_then_timeout()
    fake.hide_fresh_orders = 2  # the exchange says "does not exist" twice before it knows the order
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.04"})
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert (order["status"], order["filled_quantity"], order["fees"]) == ("filled", "0.04", "2.4")
    assert len(fake.sent("POST", "order")) == 1 and len(fake.orders) == 1  # exactly one order exists
    lookups = fake.sent("GET", "order")
    assert len(lookups) == 3 and {q["origClientOrderId"] for q in lookups} == {fake.orders[0].client_order_id}
    assert fake.sent("GET", "myTrades")  # the lookup carried no fills: they were fetched
    events = (await client.get(f"{ORDERS}/{order['id']}/events", headers=bearer(tokens))).json()["items"]
    assert [e["type"] for e in events] == ["received", "accepted", "fill"]
    rows = await assert_ledger_consistent(runtime, account["id"])
    assert rows["BTC"].free == D("0.04") and rows["USDT"].free == D("10000") - D("2400") - D("2.4")


async def test_an_order_never_found_stays_pending_with_its_reservation(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await live_account(client, fake)
    fake.accept_then_timeout()
    fake.hide_fresh_orders = 100
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.01",
        "price": "59000"})
    assert resp.status_code == 202, resp.text
    assert (resp.json()["status"], resp.json()["reserved"]) == ("pending_new", "590.59")
    assert len(fake.sent("POST", "order")) == 1 and len(fake.sent("GET", "order")) == 5
    events = (await client.get(f"{ORDERS}/{resp.json()['id']}/events", headers=bearer(tokens))).json()["items"]
    assert [e["type"] for e in events] == ["received", "outcome_unknown"]
    await assert_ledger_consistent(runtime, account["id"])


@pytest.mark.parametrize("status", [429, 418])
async def test_rate_limits_back_off_and_nothing_is_sent_twice(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any, clock: TestClock, status: int) -> None:
    tokens, account = await live_account(client, fake)
    body = {"account_id": account["id"], "symbol": "ETH/USDT", "side": "buy", "type": "market", "quantity": "0.1"}
    await client.post(ORDERS, headers=bearer(tokens), json={**body, "quantity": "0.01"})  # markets loaded
    before = len(fake.requests)
    fake.rate_limit_next(status, retry_after=30)
    first = await client.post(ORDERS, headers=bearer(tokens), json=body)
    # the book read (before any order row) met the limit: 503 with Retry-After, nothing recorded
    assert first.status_code == 503 and first.json()["code"] == "exchange_rate_limited", first.text
    assert int(first.headers["Retry-After"]) >= 29
    second = await client.post(ORDERS, headers=bearer(tokens), json=body)
    assert second.status_code == 503 and second.json()["code"] == "exchange_rate_limited"
    assert len(fake.requests) == before + 1  # the back-off held: the second request never left
    assert len(fake.sent("POST", "order")) == 1  # only the first, small order ever reached the exchange
    clock.advance(31)  # Retry-After has passed: the venue sends again
    third = await client.post(ORDERS, headers=bearer(tokens), json=body)
    assert third.status_code == 201 and third.json()["status"] == "filled", third.text
    assert len(fake.sent("POST", "order")) == 2


async def test_rate_limited_order_is_rejected_once_and_not_resent(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await live_account(client, fake)
    body = {"account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.01"}
    fake.fail_next("order", 429, {"code": -1003, "msg": "Too many requests."})
    resp = await client.post(ORDERS, headers=bearer(tokens), json=body)
    assert resp.status_code == 503 and resp.json()["code"] == "exchange_rate_limited", resp.text
    rejected = resp.json()["order_id"]
    assert len(fake.sent("POST", "order")) == 1 and fake.orders == []
    order = (await client.get(f"{ORDERS}/{rejected}", headers=bearer(tokens))).json()
    assert (order["status"], order["reject_code"], order["reserved"]) == ("rejected", "exchange_rate_limited", "0")
    await assert_ledger_consistent(runtime, account["id"])


async def test_exchange_rejections_are_translated(client: httpx.AsyncClient, fake: FakeBinanceSpot,
                                                  runtime: Any) -> None:
    tokens, account = await live_account(client, fake, {"USDT": "10000", "BTC": "1"})
    fake.accounts[API_KEY].balances["USDT"] = D("10")  # someone spent it on the exchange meanwhile
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.01"})
    assert resp.status_code == 422 and resp.json()["code"] == "insufficient_funds", resp.text
    fake.fail_next("order", 400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"})
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "sell", "type": "market", "quantity": "0.01"})
    assert resp.status_code == 422 and resp.json()["code"] in ("invalid_order", "exchange_rejected"), resp.text
    assert fake.orders == []
    listed = (await client.get(ORDERS, headers=bearer(tokens), params={"account_id": account["id"]})).json()["items"]
    assert [o["status"] for o in listed] == ["rejected", "rejected"]
    rows = await assert_ledger_consistent(runtime, account["id"])
    assert (rows["USDT"].free, rows["BTC"].free) == (D("10000"), D("1"))  # everything released


@pytest.mark.parametrize("field,value", [("executedQty", "NaN"), ("executedQty", "-0.04"),
                                         ("cummulativeQuoteQty", "1e40"), ("executedQty", "9999999999999999999"),
                                         ("orderId", None)])
async def test_malformed_answers_are_never_written(client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any,
                                                   field: str, value: str | None) -> None:
    tokens, account = await live_account(client, fake)

    def corrupt(answer: dict) -> dict:
        answer = {**answer, "fills": [{**f, "qty": value or f["qty"]} for f in answer["fills"]]} \
            if field == "executedQty" else dict(answer)
        if value is None:
            answer.pop(field)
        else:
            answer[field] = value
        return answer

    fake.malform_next("order", corrupt)
    for _ in range(10):  # every lookup is corrupted as well: nothing trustworthy ever arrives
        fake.malform_next("order", corrupt)
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.04"})
    assert resp.status_code == 202, resp.text
    assert (resp.json()["status"], resp.json()["filled_quantity"]) == ("pending_new", "0")
    assert len(fake.sent("POST", "order")) == 1
    async with runtime.db.session() as session:
        assert list(await session.scalars(select(Fill))) == []
        order = await session.get(Order, uuid.UUID(resp.json()["id"]))
        assert order.exchange_order_id is None
        types = [e.type for e in await session.scalars(select(OrderEvent).where(OrderEvent.order_id == order.id)
                                                      .order_by(OrderEvent.seq))]
    assert types == ["received", "outcome_unknown"]
    await assert_ledger_consistent(runtime, account["id"])


async def test_malformed_balances_refuse_the_account(client: httpx.AsyncClient, fake: FakeBinanceSpot) -> None:
    fake.add_account(API_KEY, SECRET, {"USDT": "100"})
    _, tokens = await new_user(client)
    fake.malform_next("account", lambda a: {**a, "balances": [{"asset": "USDT", "free": "-5", "locked": "0"}]})
    resp = await add_live(client, tokens)
    assert resp.status_code == 502 and resp.json()["code"] == "exchange_bad_answer", resp.text
    listed = (await client.get(ACCOUNTS, headers=bearer(tokens))).json()["items"]
    assert [a["kind"] for a in listed] == ["paper"]


@pytest.mark.parametrize("fee_asset", ["BTC", "BNB"])
async def test_fees_in_the_base_asset_or_bnb_are_settled_in_that_asset(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any, fee_asset: str) -> None:
    tokens, account = await live_account(client, fake)
    fake.fee_asset = fee_asset  # Binance's default for a buy (the received asset), or BNB
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.01"})
    assert resp.status_code == 201, resp.text
    assert (resp.json()["status"], resp.json()["fees"]) == ("filled", "0")  # no quote fee
    [fill] = (await client.get("/api/trading/fills", headers=bearer(tokens))).json()["items"]
    assert (fill["fee"], fill["fee_asset"]) == ("0.00001", fee_asset)
    rows = await assert_ledger_consistent(runtime, account["id"])
    on_exchange = {a: v for a, v in fake.accounts[API_KEY].balances.items() if v}
    assert {a: r.free for a, r in rows.items() if r.free} == on_exchange  # the ledger equals the exchange


async def test_account_body_errors_name_the_field_and_the_schema_is_published(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    resp = await client.post(ACCOUNTS, json={"name": ""}, headers=bearer(tokens))
    assert resp.status_code == 422 and [e["field"] for e in resp.json()["errors"]] == ["name"]
    resp = await client.post(ACCOUNTS, json={"name": "a", "starting_balance": "1e-30"}, headers=bearer(tokens))
    assert resp.status_code == 422 and resp.json()["code"] == "decimal_precision_loss"
    resp = await client.post(ACCOUNTS, json={"type": "live", "exchange": "binance"}, headers=bearer(tokens))
    assert sorted(e["field"] for e in resp.json()["errors"]) == ["api_key", "secret"]
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert {"AccountCreate", "LiveAccountCreate"} <= set(schema)
