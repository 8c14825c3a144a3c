"""/api/ws against a real uvicorn server: auth, market channels, limits, errors, heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.integration.ws_helpers import authed, register, uvicorn_server, ws_client
from tests.support import make_settings
from tradepilot.config import Settings
from tradepilot.core.events import Event, Topics
from tradepilot.market import payloads
from tradepilot.market.types import OrderBook, Ticker
from tradepilot.runtime import Runtime
from tradepilot.streaming.book import apply_delta


@pytest.fixture
def db_backend() -> str:
    return "sqlite"  # the protocol does not depend on the database; account tests cover both


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(database_url, data_dir=tmp_path / "var", stream_heartbeat_seconds=0.3,
                         stream_auth_timeout_seconds=1.0)


@pytest.fixture
async def address(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    async with uvicorn_server(app) as addr:
        yield addr


async def publish(runtime: Runtime, kind: str, symbol: str, payload: dict[str, Any], *extra: str) -> None:
    await runtime.bus.publish(Event(topic=Topics.market(kind, symbol, *extra), type=f"{kind}.updated",
                                    payload=payload))


def ticker(last: str, **extra: Any) -> dict[str, Any]:
    return {"venue": "paper", "symbol": "BTC/USDT", "bid": Decimal(last) - 1, "ask": Decimal(last) + 1,
            "last": Decimal(last), "ts": "2026-01-01T00:00:00+00:00", **extra}


def book(seq: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> dict[str, Any]:
    return {"venue": "paper", "symbol": "BTC/USDT", "seq": seq, "bids": [[Decimal(p), Decimal(q)] for p, q in bids],
            "asks": [[p, q] for p, q in asks], "ts": "2026-01-01T00:00:00+00:00"}


# --- authentication ------------------------------------------------------------------------

async def test_welcome_then_token_auth_reports_user_and_plan_limit(address: str, client: httpx.AsyncClient) -> None:
    token, user_id = await register(client)
    async with ws_client(address) as ws:
        welcome = await ws.recv()
        assert welcome["type"] == "welcome" and welcome["version"] == 1 and welcome["heartbeat"] == 0.3
        await ws.send(type="auth", token=token, id="a1")
        reply = await ws.recv()
        assert reply["type"] == "authenticated" and reply["id"] == "a1"
        assert reply["user_id"] == user_id and reply["plan"] == "free"
        assert reply["subscription_limit"] == 50 and reply["expires_at"].startswith("20")


async def test_api_key_auth_and_credentials_are_never_taken_from_the_url(address: str,
                                                                         client: httpx.AsyncClient) -> None:
    token, _ = await register(client)
    created = await client.post("/api/users/me/api-keys", json={"name": "ws", "scopes": ["read"]},
                                headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text
    async with ws_client(address) as ws:
        reply = await ws.authenticate(api_key=created.json()["key"])
        assert reply["type"] == "authenticated" and "expires_at" not in reply  # keys do not expire in-band
    # a token in the query string is ignored: the connection still has to authenticate
    async with ws_client(address, path=f"/api/ws?token={token}") as ws:
        await ws.expect_type("welcome")
        await ws.send(type="subscribe", channels=["ticker:BTC/USDT"])
        assert (await ws.recv())["code"] == "auth_required"
        assert await ws.closed() == (4001, "auth_required")


async def test_bad_token_and_missing_auth_close_with_4001(address: str) -> None:
    async with ws_client(address) as ws:
        await ws.expect_type("welcome")
        await ws.send(type="auth", token="not-a-jwt")
        assert (await ws.recv())["code"] == "invalid_token"
        assert await ws.closed() == (4001, "invalid_token")
    async with ws_client(address) as ws:  # silence: closed after the auth timeout (1 s here)
        await ws.expect_type("welcome")
        error = await ws.recv(timeout=3)
        assert error["type"] == "error" and error["code"] == "auth_required"
        assert await ws.closed() == (4001, "auth_required")


async def test_malformed_and_unknown_messages_get_clear_errors(address: str, client: httpx.AsyncClient) -> None:
    token, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.conn.send("{not json")
        assert (await ws.expect_type("error"))["code"] == "bad_request"
        await ws.send(type="dance", id=7)
        error = await ws.expect_type("error")
        assert error["code"] == "bad_request" and error["id"] == 7
        await ws.conn.send('{"type":"ping","pad":"' + "x" * 20_000 + '"}')
        assert (await ws.expect_type("error"))["code"] == "message_too_large"
        await ws.subscribe("weather:BTC/USDT", "candles:BTC/USDT:7m", "ticker:not a symbol")
        codes = [(await ws.expect_type("error"))["code"] for _ in range(3)]
        assert codes == ["unknown_channel"] * 3
        await ws.send(type="unsubscribe", channels=["ticker:ETH/USDT"])
        assert (await ws.expect_type("error"))["code"] == "not_subscribed"
        await ws.send(type="ping", ts="t1")
        assert (await ws.expect_type("pong"))["ts"] == "t1"


# --- market channels ---------------------------------------------------------------------------

async def test_ticker_snapshot_updates_and_unsubscribe(address: str, client: httpx.AsyncClient,
                                                       runtime: Runtime) -> None:
    token, _ = await register(client)
    await publish(runtime, "ticker", "BTC-USDT", ticker("100"))  # before anyone subscribes
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("ticker:btc-usdt", id="s")
        ack = await ws.expect_type("subscribed")
        assert ack == {"type": "subscribed", "id": "s", "channel": "ticker:BTC/USDT"}
        first = await ws.expect_type("ticker")  # the newest ticker, at once
        assert first["data"]["last"] == "100" and first["channel"] == "ticker:BTC/USDT"
        await publish(runtime, "ticker", "BTC-USDT", ticker("101.50"))
        update = await ws.expect_type("ticker")
        assert update["data"]["last"] == "101.5" and update["data"]["bid"] == "100.5"  # exact decimal strings
        assert update["seq"] == first["seq"] + 1
        await ws.send(type="unsubscribe", channels=["ticker:BTC/USDT"])
        await ws.expect_type("unsubscribed", channel="ticker:BTC/USDT")
        await publish(runtime, "ticker", "BTC-USDT", ticker("102"))
        await ws.send(type="ping")
        await ws.expect_type("pong")
        assert not [m for m in ws.seen if m["type"] == "ticker" and m["data"]["last"] == "102"]


async def test_trades_and_candles_are_delivered_in_order(address: str, client: httpx.AsyncClient,
                                                         runtime: Runtime) -> None:
    token, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("trades:BTC/USDT", "candles:BTC/USDT:1m")
        await ws.expect_type("subscribed", channel="trades:BTC/USDT")
        await ws.expect_type("subscribed", channel="candles:BTC/USDT:1m")
        for i in range(20):
            await publish(runtime, "trade", "BTC-USDT", {"venue": "paper", "symbol": "BTC/USDT", "id": str(i),
                                                         "price": Decimal("100.1"), "quantity": "0.5", "side": "buy",
                                                         "ts": "2026-01-01T00:00:00+00:00"})
        await publish(runtime, "candle", "BTC-USDT", {"symbol": "BTC/USDT", "timeframe": "1m", "close": "100.1",
                                                      "closed": False}, "1m")
        trades = [await ws.expect_type("trade") for _ in range(20)]
        assert [t["data"]["id"] for t in trades] == [str(i) for i in range(20)]
        assert [t["seq"] for t in trades] == list(range(trades[0]["seq"], trades[0]["seq"] + 20))
        assert trades[0]["data"]["price"] == "100.1"
        candle = await ws.expect_type("candle")
        assert candle["channel"] == "candles:BTC/USDT:1m" and candle["data"]["close"] == "100.1"


async def test_orderbook_snapshot_then_deltas_rebuild_the_book_and_resync(address: str, client: httpx.AsyncClient,
                                                                         runtime: Runtime) -> None:
    token, _ = await register(client)
    books = [
        book(1, [("100", "1"), ("99", "2")], [("101", "1"), ("102", "3")]),
        book(2, [("100", "1.5"), ("99", "2")], [("101", "1"), ("102", "3")]),
        book(3, [("99", "2"), ("98", "4")], [("101", "1"), ("103", "1")]),
        book(4, [("99", "2"), ("98", "4")], [("101", "1"), ("103", "1")]),  # no visible change
        book(5, [("99.5", "1"), ("99", "2"), ("98", "4")], [("101.0", "0.5"), ("103", "1")]),
    ]
    await publish(runtime, "book", "BTC-USDT", books[0])
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("orderbook:BTC/USDT")
        await ws.expect_type("subscribed")
        snap = await ws.expect_type("snapshot")
        assert snap["seq"] == 1 and snap["data"]["bids"] == [["100", "1"], ["99", "2"]]
        bids, asks = dict(map(tuple, snap["data"]["bids"])), dict(map(tuple, snap["data"]["asks"]))
        for b in books[1:]:
            await publish(runtime, "book", "BTC-USDT", b)
            await ws.send(type="ping")
            await ws.expect_type("pong")  # one book at a time: no conflation in this test
        deltas = [m for m in ws.seen if m["type"] == "delta"]
        assert [d["seq"] for d in deltas] == [2, 3, 4]  # the unchanged book sent nothing
        for d in deltas:
            bids, asks = apply_delta(bids, d["data"]["bids"]), apply_delta(asks, d["data"]["asks"])
        assert bids == {"99.5": "1", "99": "2", "98": "4"} and asks == {"101": "0.5", "103": "1"}
        await ws.send(type="resync", channel="orderbook:BTC/USDT")
        again = await ws.expect_type("snapshot")
        assert again["seq"] == 5 and again["data"]["bids"] == [["99.5", "1"], ["99", "2"], ["98", "4"]]


async def test_subscription_limit_follows_the_users_own_tighter_limit(address: str, client: httpx.AsyncClient) -> None:
    token, _ = await register(client)
    resp = await client.put("/api/users/me/settings", json={"limits": {"websocket_subscriptions": 2}},
                            headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        assert ws.seen[-1]["subscription_limit"] == 2
        await ws.subscribe("ticker:BTC/USDT", "trades:BTC/USDT", "orderbook:BTC/USDT")
        await ws.expect_type("subscribed", channel="ticker:BTC/USDT")
        await ws.expect_type("subscribed", channel="trades:BTC/USDT")
        error = await ws.expect_type("error")
        assert error["code"] == "subscription_limit" and error["channel"] == "orderbook:BTC/USDT"
        assert error["limit"] == 2


async def test_symbols_are_checked_and_snapshots_come_from_the_market_service(
        address: str, client: httpx.AsyncClient, runtime: Runtime) -> None:
    market = runtime.services["market"]
    symbol = market.instruments()[0].symbol
    now = datetime.now(UTC)
    # what a feed owner (another replica) publishes: the service caches it from the bus
    await runtime.bus.publish(payloads.ticker_event(Ticker(
        venue=market.venue, symbol=symbol, bid=Decimal("99.5"), ask=Decimal("100.5"), last=Decimal("100"),
        open_24h=None, high_24h=None, low_24h=None, volume_24h=Decimal("12"), change_24h_pct=None, ts=now)))
    await runtime.bus.publish(payloads.book_event(OrderBook(
        venue=market.venue, symbol=symbol, seq=7, bids=((Decimal("99.5"), Decimal("2")),),
        asks=((Decimal("100.5"), Decimal("3")),), ts=now)))
    deadline = time.monotonic() + 5
    while market.ticker(symbol) is None or market.order_book(symbol) is None:
        assert time.monotonic() < deadline, "the market service never cached the published events"
        await asyncio.sleep(0.01)
    token, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("ticker:NOPE/USDT", f"ticker:{symbol}", f"orderbook:{symbol}")
        error = await ws.expect_type("error")
        assert error["code"] == "unknown_symbol" and error["channel"] == "ticker:NOPE/USDT"
        tick = await ws.expect_type("ticker", timeout=10)  # the cached ticker, without waiting for the next
        assert tick["channel"] == f"ticker:{symbol}" and tick["data"]["last"] == "100"
        snap = await ws.expect_type("snapshot", timeout=10)
        assert snap["channel"] == f"orderbook:{symbol}" and snap["seq"] == 1
        assert snap["data"]["bids"] == [["99.5", "2"]] and snap["data"]["asks"] == [["100.5", "3"]]


# --- heartbeats and pushes -------------------------------------------------------------------

async def test_server_pings_and_broadcasts_reach_the_users_connections(address: str, client: httpx.AsyncClient,
                                                                       runtime: Runtime) -> None:
    token, user_id = await register(client)
    other, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        ws, ws2, stranger = (await authed(address, token, stack), await authed(address, token, stack),
                             await authed(address, other, stack))
        ping = await ws.expect_type("ping", timeout=3)
        assert ping["ts"]
        await ws.send(type="pong")
        await runtime.services["streaming"].broadcast_to_users({"title": "maintenance at 02:00"}, [user_id])
        for conn in (ws, ws2):
            assert (await conn.expect_type("broadcast"))["data"] == {"title": "maintenance at 02:00"}
        await stranger.send(type="ping", ts="x")
        await stranger.expect_type("pong")
        assert not [m for m in stranger.seen if m["type"] == "broadcast"]


async def test_connected_clients_gauge_and_sent_counter(address: str, client: httpx.AsyncClient,
                                                        runtime: Runtime) -> None:
    async with connect(f"ws://{address}/api/ws") as raw:
        await raw.recv()
        metrics = (await client.get("/metrics")).text
        assert "tradepilot_ws_clients 1.0" in metrics
    metrics = (await client.get("/metrics")).text
    sent = [line for line in metrics.splitlines() if line.startswith("tradepilot_ws_messages_sent_total")]
    assert sent and float(sent[0].split()[-1]) >= 1
