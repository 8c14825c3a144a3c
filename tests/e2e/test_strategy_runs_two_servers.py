"""Two server processes sharing PostgreSQL and Redis, one strategy running: exactly one process
runs it (lease ``strategy-run:<id>``), and after the holder is SIGKILLed the other takes the
run over from its last processed bar, without a duplicate order.

Neither server runs the market feed: the test publishes the book on the Redis bus (as a feed
owner on a third replica would) and writes closed 1m bars into the shared candle store (as the
owner flushes them), in the past on the real clock so that they are closed already.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.e2e.servers import Server, server_env, tradepilot
from tests.integration.strategy_runs_support import DOWN, HISTORY, SMA_FAST, UP
from tests.support import make_settings, worker_id
from tradepilot.core.lease_models import LeaseRow
from tradepilot.market import payloads
from tradepilot.market.store import CandleStore
from tradepilot.market.types import Bar, OrderBook, Trade
from tradepilot.runtime import Runtime, build_runtime
from tradepilot.strategies.runs.models import StrategyRun
from tradepilot.strategies.runs.runner import lease_name
from tradepilot.trading.order_models import Order

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

VENUE, SYMBOL = "simulated", "BTC/USDT"


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _bar(at: datetime, close: str) -> Bar:
    price = Decimal(close)
    return Bar(symbol=SYMBOL, timeframe="1m", open_time=at, open=price, high=price + 5, low=price - 5, close=price,
               volume=Decimal(3))


async def _publish_market(runtime: Runtime, servers: list[Server], http: httpx.AsyncClient, auth: dict) -> None:
    await runtime.bus.publish(payloads.book_event(OrderBook(
        venue=VENUE, symbol=SYMBOL, seq=int(time.time()), bids=((Decimal(59990), Decimal(5)),),
        asks=((Decimal(60000), Decimal(5)),), ts=datetime.now(UTC))))
    await runtime.bus.publish(payloads.trade_event(Trade(
        venue=VENUE, symbol=SYMBOL, id=f"e2e-{uuid.uuid4().hex[:8]}", price=Decimal(60000), quantity=Decimal(1),
        side="sell", ts=datetime.now(UTC))))
    for server in servers:
        async def has_book(url: str = server.url) -> bool:
            resp = await http.get(f"{url}/api/market/orderbook/{SYMBOL}", headers=auth)
            return resp.status_code == 200
        await _until(has_book, f"the book on {server.url}")


async def _holder_pid(runtime: Runtime, run_id: str) -> int:
    async with runtime.db.session() as session:
        lease = await session.scalar(select(LeaseRow).where(LeaseRow.name == lease_name(run_id)))
    return int(lease.holder.split(":")[1]) if lease is not None else 0


async def _run(runtime: Runtime, run_id: str) -> StrategyRun:
    async with runtime.db.session() as session:
        row = await session.get(StrategyRun, uuid.UUID(run_id))
        assert row is not None
        return row


async def _orders(runtime: Runtime, run_id: str) -> list[Order]:
    async with runtime.db.session() as session:
        return list(await session.scalars(select(Order).where(Order.strategy_run_id == uuid.UUID(run_id))
                                          .order_by(Order.client_order_id)))


async def _scenario(servers: list[Server], settings: Any, store: CandleStore) -> None:
    runtime = build_runtime(settings)
    await runtime.bus.start()
    email, password = f"runs-{uuid.uuid4().hex[:8]}@example.com", "two servers run once"
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)  # closed long ago
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.post(servers[0].url + "/api/auth/register",
                                    json={"email": email, "password": password})).status_code == 201
            login = await http.post(servers[0].url + "/api/auth/login", json={"email": email, "password": password})
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            await _publish_market(runtime, servers, http, auth)
            await asyncio.to_thread(store.write, SYMBOL, "1m",
                                    [_bar(t0 + timedelta(minutes=i), c) for i, c in enumerate(HISTORY)])
            last_history = t0 + timedelta(minutes=len(HISTORY) - 1)
            api = servers[1].url + "/api/strategies"
            strategy = (await http.post(api, json=SMA_FAST, headers=auth)).json()
            resp = await http.post(f"{api}/{strategy['id']}/start", headers=auth)
            assert resp.status_code == 201, resp.text
            run_id = resp.json()["id"]
            assert datetime.fromisoformat(resp.json()["last_bar_at"]) == last_history

            pids = {s.proc.pid for s in servers}

            async def held_by_one() -> bool:
                return await _holder_pid(runtime, run_id) in pids

            await _until(held_by_one, "one server to hold the run")
            holder_pid = await _holder_pid(runtime, run_id)
            [holder] = [s for s in servers if s.proc.pid == holder_pid]
            [other] = [s for s in servers if s is not holder]

            await asyncio.to_thread(store.write, SYMBOL, "1m", [_bar(last_history + timedelta(minutes=1), UP)])

            async def bought() -> bool:
                return (await _run(runtime, run_id)).last_bar_at == last_history + timedelta(minutes=1)

            await _until(bought, "the run to process the UP bar")
            [buy] = await _orders(runtime, run_id)
            assert buy.side == "buy" and buy.status == "filled"
            await asyncio.sleep(1.5)  # both processes poll meanwhile: still one order, still one holder
            assert len(await _orders(runtime, run_id)) == 1 and await _holder_pid(runtime, run_id) == holder_pid

            holder.proc.send_signal(signal.SIGKILL)
            holder.proc.wait(timeout=10)
            await asyncio.to_thread(store.write, SYMBOL, "1m", [_bar(last_history + timedelta(minutes=2), DOWN)])

            async def taken_over() -> bool:
                return await _holder_pid(runtime, run_id) == other.proc.pid

            await _until(taken_over, "the survivor to take the run's lease over")

            async def sold() -> bool:
                return (await _run(runtime, run_id)).last_bar_at == last_history + timedelta(minutes=2)

            await _until(sold, "the survivor to process the DOWN bar")
            orders = await _orders(runtime, run_id)
            assert [o.side for o in orders] == ["buy", "sell"], [(o.side, o.client_order_id) for o in orders]
            assert orders[0].id == buy.id and orders[1].quantity == buy.filled_quantity
            run = await _run(runtime, run_id)
            assert run.status == "running" and run.orders_placed == 2 and run.orders_rejected == 0
            listed = (await http.get(f"{other.url}/api/strategies/{strategy['id']}/runs", headers=auth)).json()
            assert listed["items"][0]["orders_placed"] == 2 and listed["items"][0]["pnl"]["fills"] == 2
            stopped = await http.post(f"{other.url}/api/strategies/{strategy['id']}/stop", headers=auth)
            assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    finally:
        await runtime.bus.stop()
        if runtime.redis is not None:
            await runtime.redis.aclose()
        await runtime.db.dispose()


@pytest.mark.timeout(300)
def test_one_strategy_runs_in_exactly_one_of_two_servers_and_survives_its_holder_being_killed(
        tmp_path, postgres_database, redis_url) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(postgres_database.truncate())
    prefix = f"tpe2e:{worker_id()}:{time.time_ns()}:"
    data_dir = tmp_path / "var"
    env = server_env(database_url=postgres_database.url, redis_url=redis_url, redis_prefix=prefix,
                     market_feed_owner="false", lease_ttl_seconds="2", strategy_runs_poll_seconds="0.5",
                     rate_limit_enabled="false", data_dir=str(data_dir))
    tradepilot(["migrate"], env, tmp_path)
    servers = [Server(env, tmp_path), Server(env, tmp_path)]
    try:
        for server in servers:
            server.wait_ready(timeout=90)
        settings = make_settings(postgres_database.url, redis_url=redis_url, redis_prefix=prefix, data_dir=data_dir)
        store = CandleStore.for_settings(settings, VENUE)
        asyncio.run(_scenario(servers, settings, store))
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.stop()
