"""Stop-loss and take-profit orders on LIVE accounts, kept and triggered by the exchange: the real
ccxt ``binance`` against the local fake in tests/fakes/binance_spot.py, on SQLite and PostgreSQL
(docs/exchanges.md, "Conditional orders")."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.fakes.binance_spot import FakeBinanceSpot, FakeOrder
from tests.helpers import bearer
from tests.integration.live_support import fake_binance, lifespan_app, live_settings
from tests.integration.orders_support import ORDERS, assert_ledger_consistent
from tests.integration.test_live_reconciliation import (
    assert_ledger_equals_exchange,
    reconcile,
    reconciled,
)
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock

D = Decimal


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    async with fake_binance() as server:
        yield server


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot) -> Settings:
    # emulated trailing stops ticked at every look of the reconciler (every 50 ms), not by the test clock
    return live_settings(database_url, tmp_path, fake, lease_ttl_seconds=5, live_emulation_interval_seconds=0)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with lifespan_app(settings, clock) as application:
        yield application


def on_exchange(fake: FakeBinanceSpot, order_id: str) -> FakeOrder:
    cid = f"tp-{uuid.UUID(order_id).hex}"
    return next(o for o in fake.orders if o.client_order_id == cid)


async def bought(client: httpx.AsyncClient, tokens: dict, aid: str, quantity: str = "0.03") -> dict:
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": quantity})
    assert resp.status_code == 201 and resp.json()["status"] == "filled", resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_stop_loss_is_placed_on_the_exchange_triggers_there_and_its_fill_comes_back(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    await bought(client, tokens, aid)
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "sell", "type": "stop", "quantity": "0.03",
        "stop_price": "58000"})
    assert resp.status_code == 201, resp.text
    stop = resp.json()
    assert (stop["status"], stop["type"], stop["stop_price"], stop["reserved"], stop["reserved_asset"]) == (
        "new", "stop", "58000", "0.03", "BTC")
    placed = on_exchange(fake, stop["id"])
    assert (placed.type, placed.stop_price, placed.status, placed.working) == ("STOP_LOSS", D("58000"), "NEW", False)
    [sent] = [p for p in fake.sent("POST", "order") if p["newClientOrderId"] == placed.client_order_id]
    assert (sent["type"], sent["stopPrice"], sent["side"]) == ("STOP_LOSS", "58000", "SELL")
    assert (await reconcile(client, tokens, aid))["differences"] == []  # waiting there too: agreed

    assert fake.move_price("BTCUSDT", "58500") == []  # not yet
    assert fake.move_price("BTCUSDT", "57900") == [placed]  # the exchange triggers it: a market sell
    assert (placed.status, placed.executed) == ("FILLED", D("0.03"))
    run = await reconcile(client, tokens, aid)
    assert [(d["kind"], d["order_id"], d["status"]) for d in run["differences"]] == [
        ("fills_recorded", stop["id"], "filled")]
    now = (await client.get(f"{ORDERS}/{stop['id']}", headers=bearer(tokens))).json()
    assert (now["status"], now["filled_quantity"], now["average_fill_price"], now["reserved"], now["stop_price"]) == (
        "filled", "0.03", "57900", "0", "58000")
    positions = (await client.get("/api/trading/positions", headers=bearer(tokens),
                                  params={"account_id": aid})).json()["items"]
    assert [p["quantity"] for p in positions if p["symbol"] == "BTC/USDT"] in ([], ["0"])
    await assert_ledger_consistent(runtime, aid)
    await assert_ledger_equals_exchange(runtime, fake, aid)
    assert (await reconcile(client, tokens, aid))["differences"] == []  # recorded once


async def test_take_profit_limit_and_stop_limit_go_as_the_exchanges_own_types(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    await bought(client, tokens, aid, "0.04")
    tp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "sell", "type": "take_profit_limit", "quantity": "0.02",
        "stop_price": "62000", "price": "61900"})
    sl = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "sell", "type": "stop_limit", "quantity": "0.02",
        "stop_price": "57000", "price": "56900"})
    assert tp.status_code == 201 and sl.status_code == 201, (tp.text, sl.text)
    tp_on, sl_on = on_exchange(fake, tp.json()["id"]), on_exchange(fake, sl.json()["id"])
    assert [(o.type, o.stop_price, o.price, o.time_in_force) for o in (tp_on, sl_on)] == [
        ("TAKE_PROFIT_LIMIT", D("62000"), D("61900"), "GTC"), ("STOP_LOSS_LIMIT", D("57000"), D("56900"), "GTC")]

    assert fake.move_price("BTCUSDT", "62100") == [tp_on]  # take-profit works at 61900: sells at the book's 62100
    assert (tp_on.status, sl_on.status) == ("FILLED", "NEW")
    run = await reconcile(client, tokens, aid)
    assert [(d["kind"], d["order_id"], d["status"]) for d in run["differences"]] == [
        ("fills_recorded", tp.json()["id"], "filled")]
    # cancelled through TradePilot: on the exchange first, by its client id
    resp = await client.delete(f"{ORDERS}/{sl.json()['id']}", headers=bearer(tokens))
    assert resp.status_code == 200 and resp.json()["status"] == "canceled", resp.text
    assert sl_on.status == "CANCELED"
    await assert_ledger_equals_exchange(runtime, fake, aid)


async def test_a_stop_that_would_trigger_at_once_is_rejected_by_the_exchange_and_released(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "buy", "type": "stop", "quantity": "0.01",
        "stop_price": "59000"})  # a buy stop below the market: Binance refuses it
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] in ("invalid_order", "exchange_rejected")
    order = (await client.get(f"{ORDERS}/{problem['order_id']}", headers=bearer(tokens))).json()
    assert (order["status"], order["reserved"]) == ("rejected", "0")
    rows = await assert_ledger_consistent(runtime, aid)
    assert rows["USDT"].locked == 0


# --- trailing stops, emulated by the platform ------------------------------------------------------------

@contextlib.asynccontextmanager
async def client_of(settings: Settings, clock: TestClock) -> AsyncIterator[httpx.AsyncClient]:
    """One server process's lifetime: its app (reconcilers, emulation) and a client of it."""
    async with lifespan_app(settings, clock) as application:
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    """Poll a background owner's effect (the emulator ticks in the lease holder's task)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def trailing_stop(client: httpx.AsyncClient, tokens: dict, aid: str, side: str, quantity: str,
                        **trail: str) -> dict:
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": side, "type": "trailing_stop", "quantity": quantity, **trail})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_trailing_stop_is_emulated_and_sends_exactly_one_market_order_across_a_restart(
        settings: Settings, clock: TestClock, fake: FakeBinanceSpot) -> None:
    async with client_of(settings, clock) as client:
        tokens, account = await reconciled(client, fake)
        aid = account["id"]
        await bought(client, tokens, aid)
        trailing = await trailing_stop(client, tokens, aid, "sell", "0.03", trail_percent="1")
        assert (trailing["status"], trailing["stop_price"], trailing["reserved"], trailing["reserved_asset"]) == (
            "new", "59390.1", "0.03", "BTC")  # 1 % under the best bid, 59990; kept here, not on the exchange
        cid = f"tp-{uuid.UUID(trailing['id']).hex}"
        assert not [p for p in fake.sent("POST", "order") if p["newClientOrderId"] == cid]

        async def order() -> dict:
            return (await client.get(f"{ORDERS}/{trailing['id']}", headers=bearer(tokens))).json()  # type: ignore[no-any-return]

        fake.move_price("BTCUSDT", "61000")  # the mark follows the bid up

        async def moved() -> bool:
            return (await order())["stop_price"] == "60390"
        await until(moved)
    # the process is gone; another takes the account over with the mark it stored
    fake.move_price("BTCUSDT", "60500")  # down, but above the stop
    async with client_of(settings, clock) as client:
        await until(lambda: _ticked(fake))
        assert not [p for p in fake.sent("POST", "order") if p["newClientOrderId"] == cid]
        fake.move_price("BTCUSDT", "60300")  # through the stop: one market sell

        async def filled() -> bool:
            resp = await client.get(f"{ORDERS}/{trailing['id']}", headers=bearer(tokens))
            return resp.json()["status"] == "filled"  # type: ignore[no-any-return]
        await until(filled)
        assert (await reconcile(client, tokens, aid))["differences"] == []  # recorded as the exchange has it
        sells = [p for p in fake.sent("POST", "order") if p["newClientOrderId"] == cid]
        assert [(p["side"], p["type"], D(p["quantity"])) for p in sells] == [("SELL", "MARKET", D("0.03"))]
        now = (await client.get(f"{ORDERS}/{trailing['id']}", headers=bearer(tokens))).json()
        assert (now["filled_quantity"], now["average_fill_price"], now["reserved"], now["stop_price"]) == (
            "0.03", "60300", "0", "60390")
        events = (await client.get(f"{ORDERS}/{trailing['id']}/events", headers=bearer(tokens))).json()["items"]
        assert [e["type"] for e in events] == ["received", "accepted", "stop_moved", "triggered", "accepted", "fill"]
        await assert_ledger_equals_exchange(client._transport.app.state.runtime, fake, aid)  # type: ignore[attr-defined]


async def test_a_trailing_buy_follows_the_ask_down_and_buys_once_when_it_rises_through_the_stop(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    trailing = await trailing_stop(client, tokens, aid, "buy", "0.01", trail_percent="1")
    # 1 % over the best ask, 60000; reserved at that level with the taker fee (0.1 %) and the
    # market-buy margin (2 %): 0.01 x 60600 x 1.001 x 1.02 — its stop only moves down
    assert (trailing["status"], trailing["stop_price"], trailing["reserved"], trailing["reserved_asset"]) == (
        "new", "60600", "618.73812", "USDT")
    assert sent_for(fake, trailing["id"]) == []  # kept here

    fake.move_price("BTCUSDT", "59000")  # the mark follows the ask down

    async def moved() -> bool:
        return (await order_of(client, tokens, trailing["id"]))["stop_price"] == "59590"
    await until(moved)
    reads = len(fake.sent("GET", "depth"))
    fake.move_price("BTCUSDT", "59500")  # up, but under the stop
    await until(lambda: _ticked(fake, reads + 2))
    assert sent_for(fake, trailing["id"]) == []
    fake.move_price("BTCUSDT", "59700")  # through the stop: one market buy

    async def bought_once() -> bool:
        return (await order_of(client, tokens, trailing["id"]))["status"] == "filled"
    await until(bought_once)
    assert sent_for(fake, trailing["id"]) == [("BUY", "MARKET", D("0.01"))]
    now = await order_of(client, tokens, trailing["id"])
    assert (now["filled_quantity"], now["average_fill_price"], now["reserved"], now["stop_price"]) == (
        "0.01", "59700", "0", "59590")
    assert (await reconcile(client, tokens, aid))["differences"] == []
    rows = await assert_ledger_consistent(runtime, aid)
    assert rows["USDT"].locked == 0
    await assert_ledger_equals_exchange(runtime, fake, aid)


async def _ticked(fake: FakeBinanceSpot, after: int = 0) -> bool:
    """The emulator has read the book (again) since ``after`` requests."""
    return len(fake.sent("GET", "depth")) > after


async def test_an_emulated_trailing_stop_is_cancelled_here_and_never_sent(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    await bought(client, tokens, aid)
    placed = []
    for trail in ("500", "700"):
        placed.append(await trailing_stop(client, tokens, aid, "sell", "0.01", trail_amount=trail))
        assert placed[-1]["status"] == "new"
    assert placed[0]["stop_price"] == "59490"  # the best bid 59990 − 500
    refused = await client.put(f"{ORDERS}/{placed[0]['id']}", headers=bearer(tokens), json={"quantity": "0.02"})
    assert (refused.status_code, refused.json()["code"]) == (422, "order_type_not_supported")
    resp = await client.delete(f"{ORDERS}/{placed[0]['id']}", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["reserved"], resp.json()["cancel_reason"]) == (
        "canceled", "0", "canceled_by_user")
    resp = await client.delete(f"{ORDERS}/bulk", headers=bearer(tokens), params={"account_id": aid})
    assert resp.status_code == 200 and resp.json()["canceled"] == [placed[1]["id"]], resp.text
    assert not fake.sent("DELETE", "order") and len(fake.sent("POST", "order")) == 1  # the buy only
    rows = await assert_ledger_consistent(runtime, aid)
    assert rows["BTC"].locked == 0
    await assert_ledger_equals_exchange(runtime, fake, aid)


# --- a position's stop-loss and take-profit, emulated by the platform ------------------------------------

POSITIONS = "/api/trading/positions"


async def btc_position(client: httpx.AsyncClient, tokens: dict, aid: str) -> dict:
    resp = await client.get(POSITIONS, headers=bearer(tokens), params={"account_id": aid})
    assert resp.status_code == 200, resp.text
    [position] = [p for p in resp.json()["items"] if p["symbol"] == "BTC/USDT"]
    return position  # type: ignore[no-any-return]


async def set_exits(client: httpx.AsyncClient, tokens: dict, position_id: str, stop: str, target: str) -> dict:
    sl = await client.put(f"{POSITIONS}/{position_id}/stop-loss", headers=bearer(tokens), json={"stop_price": stop})
    assert sl.status_code == 200, sl.text
    tp = await client.put(f"{POSITIONS}/{position_id}/take-profit", headers=bearer(tokens),
                          json={"price": target, "type": "take_profit"})
    assert tp.status_code == 200, tp.text
    return tp.json()  # type: ignore[no-any-return]


def sent_for(fake: FakeBinanceSpot, order_id: str) -> list[tuple[str, str, Decimal]]:
    cid = f"tp-{uuid.UUID(order_id).hex}"
    return [(p["side"], p["type"], D(p["quantity"])) for p in fake.sent("POST", "order")
            if p["newClientOrderId"] == cid]


async def order_of(client: httpx.AsyncClient, tokens: dict, order_id: str) -> dict:
    return (await client.get(f"{ORDERS}/{order_id}", headers=bearer(tokens))).json()  # type: ignore[no-any-return]


async def test_a_live_positions_exits_are_kept_here_and_the_stop_loss_sells_it_once(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    await bought(client, tokens, aid)
    position = await btc_position(client, tokens, aid)
    view = await set_exits(client, tokens, position["id"], "58000", "62000")
    sl, tp = view["stop_loss"], view["take_profit"]
    assert (sl["type"], sl["price"], sl["quantity"], sl["status"]) == ("stop", "58000", "0.03", "new")
    assert (tp["type"], tp["price"], tp["quantity"], tp["status"]) == ("take_profit", "62000", "0.03", "new")
    assert len(fake.sent("POST", "order")) == 1  # the buy only: both exits are kept by the platform
    events = (await client.get(f"{ORDERS}/{sl['order_id']}/events", headers=bearer(tokens))).json()["items"]
    assert [(e["type"], e["detail"].get("emulated")) for e in events] == [("received", None), ("accepted", True)]
    assert (await reconcile(client, tokens, aid))["differences"] == []  # not on the exchange, and not missing
    never_sent = {f"tp-{uuid.UUID(o['order_id']).hex}" for o in (sl, tp)}
    assert not [p for p in fake.sent("GET", "order") if p.get("origClientOrderId") in never_sent]  # not asked for

    reads = len(fake.sent("GET", "depth"))
    fake.move_price("BTCUSDT", "58500")  # down, but above the stop
    await until(lambda: _ticked(fake, reads + 2))
    assert len(fake.sent("POST", "order")) == 1
    fake.move_price("BTCUSDT", "57900")  # through the stop: one market sell of the position

    async def sold() -> bool:
        return (await order_of(client, tokens, sl["order_id"]))["status"] == "filled"
    await until(sold)
    assert sent_for(fake, sl["order_id"]) == [("SELL", "MARKET", D("0.03"))]
    assert sent_for(fake, tp["order_id"]) == []
    stop = await order_of(client, tokens, sl["order_id"])
    assert (stop["filled_quantity"], stop["average_fill_price"], stop["stop_price"]) == ("0.03", "57900", "58000")
    target = await order_of(client, tokens, tp["order_id"])
    assert (target["status"], target["cancel_reason"]) == ("canceled", "position_closed")
    flat = await btc_position(client, tokens, aid)
    assert (flat["quantity"], flat["stop_loss"], flat["take_profit"]) == ("0", None, None)
    assert (await reconcile(client, tokens, aid))["differences"] == []  # recorded as the exchange has it
    await assert_ledger_consistent(runtime, aid)
    await assert_ledger_equals_exchange(runtime, fake, aid)


async def test_live_exits_follow_the_position_and_the_take_profit_sells_it(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    await bought(client, tokens, aid, "0.02")
    position = await btc_position(client, tokens, aid)
    first = await set_exits(client, tokens, position["id"], "58000", "62000")
    await bought(client, tokens, aid, "0.01")  # the position grows: both exits are replaced at 0.03
    view = await btc_position(client, tokens, aid)
    sl, tp = view["stop_loss"], view["take_profit"]
    assert (sl["quantity"], tp["quantity"], sl["price"], tp["price"]) == ("0.03", "0.03", "58000", "62000")
    assert sl["order_id"] != first["stop_loss"]["order_id"] and tp["order_id"] != first["take_profit"]["order_id"]
    old = await order_of(client, tokens, first["take_profit"]["order_id"])
    assert (old["status"], old["cancel_reason"]) == ("canceled", "exit_resized")
    assert len(fake.sent("POST", "order")) == 2 and not fake.sent("DELETE", "order")  # the two buys only

    fake.move_price("BTCUSDT", "62100")

    async def sold() -> bool:
        return (await order_of(client, tokens, tp["order_id"]))["status"] == "filled"
    await until(sold)
    assert sent_for(fake, tp["order_id"]) == [("SELL", "MARKET", D("0.03"))]
    stop = await order_of(client, tokens, sl["order_id"])
    assert (stop["status"], stop["cancel_reason"]) == ("canceled", "position_closed")
    assert sent_for(fake, sl["order_id"]) == []
    assert (await reconcile(client, tokens, aid))["differences"] == []
    await assert_ledger_equals_exchange(runtime, fake, aid)


async def test_live_exits_refuse_what_they_cannot_keep_and_cancel_here(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    await bought(client, tokens, aid)
    pid = (await btc_position(client, tokens, aid))["id"]

    async def refused(kind: str, body: dict) -> str:
        resp = await client.put(f"{POSITIONS}/{pid}/{kind}", headers=bearer(tokens), json=body)
        assert resp.status_code == 422, resp.text
        return resp.json()["code"]  # type: ignore[no-any-return]
    assert await refused("take-profit", {"price": "62000", "type": "limit"}) == "order_type_not_supported"
    assert await refused("stop-loss", {"stop_price": "60000"}) == "stop_loss_would_trigger"  # the bid is 59990
    assert await refused("take-profit", {"price": "59000"}) == "take_profit_would_trigger"
    view = await set_exits(client, tokens, pid, "58000", "62000")
    sl = view["stop_loss"]["order_id"]
    resp = await client.put(f"{ORDERS}/{sl}", headers=bearer(tokens), json={"stop_price": "57000"})
    assert (resp.status_code, resp.json()["code"]) == (422, "order_type_not_supported")
    resp = await client.delete(f"{ORDERS}/{sl}", headers=bearer(tokens))  # cancelled here: never sent
    assert resp.status_code == 200 and resp.json()["status"] == "canceled", resp.text
    resp = await client.delete(f"{POSITIONS}/{pid}/take-profit", headers=bearer(tokens))
    assert resp.status_code == 200 and resp.json()["take_profit"] is None and resp.json()["stop_loss"] is None
    assert not fake.sent("DELETE", "order") and len(fake.sent("POST", "order")) == 1
    rows = await assert_ledger_consistent(runtime, aid)
    assert rows["BTC"].locked == 0


async def test_an_exit_whose_sell_is_in_flight_holds_its_sibling_and_cannot_be_replaced(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: object, clock: TestClock) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    await bought(client, tokens, aid)
    pid = (await btc_position(client, tokens, aid))["id"]
    view = await set_exits(client, tokens, pid, "58000", "62000")
    sl, tp = view["stop_loss"]["order_id"], view["take_profit"]["order_id"]
    fake.fail_next("order", 504, {"code": -1007, "msg": "Timeout waiting for response from backend server."})
    fake.move_price("BTCUSDT", "57900")  # the stop fires; its sell's answer is lost and lookups find nothing

    async def unknown() -> bool:
        events = (await client.get(f"{ORDERS}/{sl}/events", headers=bearer(tokens))).json()["items"]
        return events[-1]["type"] == "outcome_unknown"
    await until(unknown)
    assert (await order_of(client, tokens, sl))["status"] == "pending_new"
    resp = await client.put(f"{POSITIONS}/{pid}/stop-loss", headers=bearer(tokens), json={"stop_price": "57000"})
    assert (resp.status_code, resp.json()["code"]) == (409, "exit_in_flight")
    reads = len(fake.sent("GET", "depth"))
    fake.move_price("BTCUSDT", "62100")  # the take-profit's price, while the stop's sell is unresolved
    await until(lambda: _ticked(fake, reads + 2))
    assert (await order_of(client, tokens, tp))["status"] == "new" and sent_for(fake, tp) == []

    clock.advance(61)  # past the grace age: the stop's sell never reached the exchange
    resp = await client.post(f"/api/trading/accounts/{aid}/reconcile", headers=bearer(tokens))
    assert resp.status_code in (200, 202), resp.text

    async def taken() -> bool:
        return (await order_of(client, tokens, tp))["status"] == "filled"
    await until(taken)
    assert (await order_of(client, tokens, sl))["status"] == "rejected"
    assert len(sent_for(fake, sl)) == 1 and sent_for(fake, tp) == [("SELL", "MARKET", D("0.03"))]
    await assert_ledger_equals_exchange(runtime, fake, aid)
