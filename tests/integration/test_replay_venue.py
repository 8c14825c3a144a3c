"""The replay venue selected by configuration, like any other: the app serves the recording."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests import support
from tests.helpers import bearer, new_user
from tradepilot.config import Settings
from tradepilot.market.feeds.replay import ReplayFeed
from tradepilot.market.types import OrderBook, Trade

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "market" / "binance_spot_capture" / "btcusdt_20240808_first90s.gz"

pytestmark = pytest.mark.skipif("market_replay_paths" not in Settings.model_fields,
                                reason="Settings has no TRADEPILOT_MARKET_REPLAY_* fields yet")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return support.make_settings(database_url, data_dir=tmp_path / "var", market_feed="replay", market_feed_owner=True,
                                 market_replay_paths=[str(CAPTURE)], market_replay_speed=0.0,
                                 market_replay_loop=False, market_replay_rebase_time=False)


async def test_the_app_serves_the_replayed_capture(client: httpx.AsyncClient) -> None:
    expected = [e async for e in ReplayFeed.from_paths([CAPTURE], speed=0, depth=10).events()]
    last_book = [e for e in expected if isinstance(e, OrderBook)][-1]
    last_trades = [e for e in expected if isinstance(e, Trade)][-5:]
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    instruments = (await client.get("/api/market/instruments", headers=auth)).json()["items"]
    assert [(i["venue"], i["symbol"], i["tick_size"], i["step_size"]) for i in instruments] == [
        ("replay", "BTC/USDT", "0.01", "0.00001")]
    book: dict = {}
    for _ in range(200):  # at speed 0 the whole recording plays within moments
        resp = await client.get("/api/market/orderbook/BTC-USDT?depth=10", headers=auth)
        book = resp.json() if resp.status_code == 200 else {}
        if book.get("seq") == last_book.seq:
            break
        await asyncio.sleep(0.05)
    assert book.get("seq") == last_book.seq, book
    assert [(Decimal(p), Decimal(q)) for p, q in book["bids"]] == list(last_book.bids)
    assert [(Decimal(p), Decimal(q)) for p, q in book["asks"]] == list(last_book.asks)
    trades = (await client.get("/api/market/trades/BTC-USDT?limit=5", headers=auth)).json()["items"]
    assert [t["id"] for t in trades] == [t.id for t in reversed(last_trades)]
