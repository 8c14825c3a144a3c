"""`make run`'s steps with the default market: live prices second to second, candles filling,
and the simulated market's two years of 1m history back-filled in under a minute."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from tests.e2e.servers import make_run
from tradepilot.config import Settings

pytestmark = pytest.mark.slow


def test_make_run_serves_a_live_simulated_market(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, demo = make_run(tmp_path, market_backfill_days=str(Settings.model_fields["market_backfill_days"].default))
    # ^ the default: 730 days
    try:
        server.wait_ready()  # /health answers while the back-fill runs (in a thread)
        ready = time.monotonic()
        for _ in range(5):  # and keeps answering promptly while two years of bars are being written
            before = time.monotonic()
            assert httpx.get(server.url + "/health", timeout=5).status_code == 200
            assert time.monotonic() - before < 2
            time.sleep(0.2)
        tokens = httpx.post(server.url + "/api/auth/login", json={"email": demo.email, "password": demo.password}).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        api = httpx.Client(base_url=server.url, headers=auth, timeout=10)

        def prices() -> dict[str, str | None]:
            return {p["symbol"]: p["price"] for p in api.get("/api/market/prices").json()["items"]}

        deadline = time.monotonic() + 30
        while None in prices().values():
            assert time.monotonic() < deadline, "no prices"
            time.sleep(0.2)
        # prices change second to second
        seen = [prices()]
        for _ in range(3):
            time.sleep(1.0)
            seen.append(prices())
        for before, after in zip(seen, seen[1:], strict=False):
            assert before != after, seen
        # the open 1m candle fills as trades arrive
        def open_bar() -> dict:
            items = api.get("/api/market/candles/BTC-USDT", params={"timeframe": "1m", "limit": 2}).json()["items"]
            return items[-1]

        first = open_bar()
        deadline = time.monotonic() + 10
        while True:
            now = open_bar()
            if now["open_time"] != first["open_time"] or Decimal(now["volume"]) > Decimal(first["volume"]):
                break
            assert time.monotonic() < deadline, "the candle did not fill"
            time.sleep(0.3)
        assert now["closed"] is False
        book = api.get("/api/market/orderbook/BTC%2FUSDT", params={"depth": 50}).json()
        assert len(book["bids"]) == 50 and Decimal(book["bids"][0][0]) < Decimal(book["asks"][0][0])
        # two years of daily bars appear (the back-fill of 730 days of 1m bars, within a minute)
        deadline = ready + 60
        while True:
            days = api.get("/api/market/candles/BTC-USDT", params={"timeframe": "1d", "limit": 1000}).json()["items"]
            oldest = datetime.fromisoformat(days[0]["open_time"].replace("Z", "+00:00")) if days else None
            if oldest is not None and oldest <= datetime.now(timezone.utc) - timedelta(days=729):
                break
            assert time.monotonic() < deadline, f"back-fill not done within a minute ({len(days)} days)"
            time.sleep(1.0)
        assert 730 <= len(days) <= 732
        gaps = api.get("/api/market/gaps/BTC-USDT", params={"timeframe": "1d"}).json()["items"]
        assert gaps == []
        api.close()
        stopping = time.monotonic()
    finally:
        server.stop()
    # a stop in the middle of the back-fill is prompt (the history resumes at the next start)
    # (uvicorn re-raises the SIGTERM it handled: -15 is its normal exit; a kill would be -9)
    assert server.proc.returncode in (0, -15) and time.monotonic() - stopping < 10, server.log.read_text()[-3000:]
