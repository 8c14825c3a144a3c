"""Issue 9 §3 against `make run` (migrate, demo-user, serve with the simulated market and its
back-filled history), on the real clock: the demo user's signal webhook receives a
TradingView-style alert; a signal of their own at the market is triggered by the next closed
1m bar and scored at its horizon by the follower; the performance figures stand beside the
random-entry baseline; signals are generated from a strategy (and from the model, or 503
``model_not_ready`` while the first training runs); another user sees none of it."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

import httpx
import pytest

from tests.e2e.servers import make_run
from tests.e2e.test_orders_make_run import _wait_book
from tests.helpers import PASSWORD

pytestmark = pytest.mark.slow


def _until(check, what: str, timeout: float) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1.0)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.timeout(900)
def test_make_run_signals_webhook_follower_performance_and_generation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, demo = make_run(tmp_path, signals_tracker_seconds="1")
    try:
        server.wait_ready(timeout=240)  # start-up on a loaded machine
        token = httpx.post(server.url + "/api/auth/login",
                           json={"email": demo.email, "password": demo.password}).json()["access_token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            _wait_book(http)
            _until(lambda: len(http.get("/api/market/candles/BTC-USDT", params={"timeframe": "1m", "limit": 100})
                               .json()["items"]) >= 60, "the back-filled 1m history", 180)

            # the webhook: its secret URL works without any other credential
            hook = http.post("/api/signals/webhook")
            assert hook.status_code == 201, hook.text
            alert = {"symbol": "ETH/USDT", "side": "sell", "strength": 0.6, "timeframe": "1m", "horizon": 2,
                     "reason": "TradingView: bearish engulfing"}
            received = httpx.post(server.url + hook.json()["url_path"], json=alert, timeout=30)
            assert received.status_code == 201, received.text
            assert received.json()["source"] == "webhook"
            wrong = httpx.post(server.url + hook.json()["url_path"][:-4] + "xxxx", json=alert, timeout=30)
            assert wrong.status_code == 404 and wrong.json()["code"] == "webhook_not_found"

            # a signal at the market: triggered on the next closed bar, scored one bar later
            mine = http.post("/api/signals", json={"symbol": "BTC/USDT", "side": "buy", "strength": 0.7,
                                                   "timeframe": "1m", "horizon": 1, "reason": "e2e"})
            assert mine.status_code == 201, mine.text
            signal_id = mine.json()["id"]
            scored = _until(lambda: (s := http.get(f"/api/signals/{signal_id}").json())["horizon_return"] is not None
                            and s, "the follower to score the signal", 240)
            assert scored["status"] == "triggered" and scored["outcome"] == "horizon"  # type: ignore[index]
            candles = http.get("/api/market/candles/BTC-USDT", params={"timeframe": "1m", "limit": 10}).json()["items"]
            when = _utc(scored["triggered_at"])  # type: ignore[index]
            [bar] = [c for c in candles if _utc(c["open_time"]) == when]
            assert Decimal(scored["trigger_price"]) == Decimal(bar["open"])  # type: ignore[index]
            assert Decimal(scored["exit_price"]) == Decimal(bar["close"])  # type: ignore[index]

            perf = http.get("/api/signals/performance", params={"samples": 5})
            assert perf.status_code == 200, perf.text
            figures = perf.json()
            assert figures["by_source"]["user"]["count"] >= 1
            assert figures["baseline"]["by_source"]["user"]["count"] == 5 * figures["by_source"]["user"]["count"]

            # generated from a strategy (a signal or the reason there is none) and from the model
            generated = http.post("/api/ai/generate-signals", json={
                "source": "strategy", "strategy": "sma_cross", "params": {"fast": 2, "slow": 5},
                "symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1m"})
            assert generated.status_code == 201, generated.text
            answer = generated.json()
            assert len(answer["items"]) + len(answer["skipped"]) == 2
            assert all(s["source"] == "strategy" for s in answer["items"])
            model = http.post("/api/ai/generate-signals", json={"source": "model", "symbols": ["BTC/USDT"],
                                                                "timeframe": "1h", "horizon": 1})
            assert model.status_code in (201, 503), model.text
            if model.status_code == 503:
                assert model.json()["code"] == "model_not_ready" and "Retry-After" in model.headers

            listed = http.get("/api/signals", params={"limit": 100}).json()["items"]
            assert {received.json()["id"], signal_id} <= {s["id"] for s in listed}

        # another user: none of these signals, and 404 for one of them
        email = "e2e-other@example.com"
        registered = httpx.post(server.url + "/api/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        other = httpx.post(server.url + "/api/auth/login", json={"email": email, "password": PASSWORD})
        other_auth = {"Authorization": f"Bearer {other.json()['access_token']}"}
        assert httpx.get(server.url + f"/api/signals/{signal_id}", headers=other_auth).status_code == 404
        assert httpx.get(server.url + "/api/signals", headers=other_auth).json()["items"] == []
    finally:
        server.stop()
