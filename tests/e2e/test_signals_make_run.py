"""Issue 9 §3 against `make run` (migrate, demo-user, serve with the simulated market and its
back-filled history), on the real clock: the demo user's signal webhook receives a
TradingView-style alert; a signal of their own at the market is triggered by the next closed
1m bar and scored at its horizon by the follower; one waiting for a far entry is listed active
until cancelled; the performance figures stand beside the random-entry baseline; signals are
generated from a strategy and from the direction model — real Coinbase BTC/USD hourly candles
imported with `tradepilot data import`, the model trained with `tradepilot ai train direction`
(both in the background while the follower works); another user sees none of it."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import make_run, server_env, tradepilot
from tests.e2e.test_orders_make_run import _wait_book
from tests.helpers import PASSWORD
from tests.market_support import DATA

pytestmark = pytest.mark.slow

HOURLY = DATA / "coinbase_btc_usd_1h" / "BTC_USD-1h-first3000.csv"  # a slice of ../shared/data's Coinbase file
SETTINGS = {"signals_tracker_seconds": "1", "ai_direction_train_on_start": "false"}  # the CLI trains


def _import_and_train(tmp_path: Path, failures: list[BaseException]) -> None:
    """What an operator does: import the real hourly candles, then train the direction model."""
    env = server_env(database_url=f"sqlite+aiosqlite:///{tmp_path / 'tradepilot.db'}", data_dir=str(tmp_path / "var"),
                     **SETTINGS)
    try:
        tradepilot(["data", "import", str(HOURLY), "--symbol", "BTC/USDT", "--timeframe", "1h", "--no-derive"], env,
                   tmp_path)
        tradepilot(["ai", "train", "direction", "--symbol", "BTC/USDT", "--timeframe", "1h", "--horizon", "1"],
                   env, tmp_path)
    except BaseException as exc:  # noqa: BLE001  (re-raised by the test's thread)
        failures.append(exc)


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
    server, demo = make_run(tmp_path, **SETTINGS)
    failures: list[BaseException] = []
    operator = threading.Thread(target=_import_and_train, args=(tmp_path, failures), daemon=True)
    operator.start()
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

            # a buy waiting for a far entry stays active until cancelled; a triggered one cannot be
            waiting = http.post("/api/signals", json={"symbol": "BTC/USDT", "side": "buy", "strength": 0.5,
                                                      "entry": "1", "timeframe": "1m", "horizon": 30})
            assert waiting.status_code == 201, waiting.text
            waiting_id = waiting.json()["id"]
            active = http.get("/api/signals/active", params={"symbol": "BTC-USDT"})
            assert active.status_code == 200, active.text
            assert waiting_id in {s["id"] for s in active.json()["items"]}
            assert signal_id not in {s["id"] for s in active.json()["items"]}  # triggered: no longer active
            cancelled = http.put(f"/api/signals/{waiting_id}/status", json={"status": "cancelled"})
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
            assert waiting_id not in {s["id"] for s in http.get("/api/signals/active").json()["items"]}
            late = http.put(f"/api/signals/{signal_id}/status", json={"status": "cancelled"})
            assert late.status_code == 409 and late.json()["code"] == "signal_not_active", late.text

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
            operator.join(timeout=240)
            assert not operator.is_alive() and not failures, failures
            model = http.post("/api/ai/generate-signals", json={"source": "model", "symbols": ["BTC/USDT"],
                                                                "timeframe": "1h", "horizon": 1})
            assert model.status_code == 201, model.text
            [forecast] = model.json()["items"]
            assert forecast["source"] == "model" and forecast["status"] == "active"
            assert forecast["strength"] == pytest.approx(abs(2 * forecast["details"]["probability_up"] - 1), abs=1e-5)
            assert forecast["details"]["training_window"]["first_bar"] == "2017-07-01T11:00:00Z"
            assert forecast["details"]["beats_baselines"] is not None and "P(up)" in forecast["reason"]

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
