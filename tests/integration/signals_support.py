"""Helpers of the signals tests: constructed bars in the candle store, the follower, the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from tests.helpers import bearer, new_user
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.market.types import Bar
from tradepilot.runtime import Runtime

SIGNALS = "/api/signals"
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the test clock's start
HOUR = timedelta(hours=1)


@asynccontextmanager
async def strategy_runs_app(settings: Settings, clock: TestClock) -> AsyncIterator[Any]:
    """The app with strategy runs looking for closed bars every 0.1 s and the signal follower idle."""
    application = create_app(settings.model_copy(update={"strategy_runs_poll_seconds": 0.1,
                                                         "signals_tracker_seconds": 3600.0}), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


def bars(rows: list[tuple[str, str, str, str]], symbol: str = "BTC/USDT", start: datetime = T0) -> list[Bar]:
    """1h bars from (open, high, low, close) rows, the first opening at ``start``."""
    return [Bar(symbol, "1h", start + i * HOUR, Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(10))
            for i, (o, h, lo, c) in enumerate(rows)]


async def store(runtime: Runtime, series: list[Bar]) -> None:
    candles = runtime.services["market"].candles
    await asyncio.to_thread(candles.write, series[0].symbol, series[0].timeframe, series)


async def follow(runtime: Runtime) -> int:
    """One step of the signal follower (under its lease), as its timer would run it."""
    tracker = runtime.services["signals_tracker"]
    await asyncio.wait_for(tracker.ready.wait(), 10)
    return await tracker.step()  # type: ignore[no-any-return]


async def create(client: httpx.AsyncClient, headers: dict, **body: object) -> dict:
    answer = await client.post(SIGNALS, json={"symbol": "BTC/USDT", **body}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def fetch(client: httpx.AsyncClient, headers: dict, signal_id: str) -> dict:
    answer = await client.get(f"{SIGNALS}/{signal_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def key_user(client: httpx.AsyncClient, scopes: tuple[str, ...] = ("read", "trade")) -> dict[str, str]:
    """A new user's API-key headers: unlike a 15-minute access token they outlive the test clock's hours."""
    _, tokens = await new_user(client)
    answer = await client.post("/api/users/me/api-keys", json={"name": "signals", "scopes": list(scopes)},
                               headers=bearer(tokens))
    assert answer.status_code == 201, answer.text
    return {"X-API-Key": answer.json()["key"]}
