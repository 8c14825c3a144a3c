"""Shared helpers of the strategies API tests: a configuration body, real candles in the store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.helpers import bearer
from tests.market_support import COINBASE_1H
from tradepilot.market.importer import import_file
from tradepilot.runtime import Runtime

# the Coinbase BTC-USD 1h slice: 720 bars, 2017-07-01T11:00Z .. 2017-07-31T10:00Z (tests/data/market/README.md)
PERIOD = {"start": "2017-07-01T00:00:00Z", "end": "2017-08-01T00:00:00Z"}
SMA = {"name": "SMA 10/30", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "symbols": ["BTC/USDT"],
       "timeframe": "1h"}


async def import_btc_1h(runtime: Runtime) -> None:
    """The real hourly slice as BTC/USDT of the configured (simulated) venue, 1h only."""
    store = runtime.services["market"].candles
    await asyncio.to_thread(import_file, store, COINBASE_1H, symbol="BTC/USDT", timeframe="1h", derive=False)


async def create_strategy(client: httpx.AsyncClient, tokens: dict, body: dict[str, Any] | None = None) -> dict:
    resp = await client.post("/api/strategies", json=body or SMA, headers=bearer(tokens))
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]
