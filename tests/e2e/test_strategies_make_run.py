"""Issue 8's "Done when": `make run`'s steps (migrate, demo-user, serve with the simulated
market and its back-filled history), then the demo user logs in, creates an SMA-crossover
configuration, backtests it on the back-filled history (a job → metrics and a chart), starts it
on the paper account, sees its orders and fills, and stops it.

The live half runs on the real clock: 1m bars close once a minute, so the configuration is
switched to SMA 1/2 on 1m (it crosses whenever a falling minute is followed by a rising one,
usually within a few minutes) before it is started."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.servers import make_run
from tests.e2e.test_orders_make_run import _wait_book

pytestmark = pytest.mark.slow


def _until(check, what: str, timeout: float) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1.0)


@pytest.mark.timeout(1200)
def test_make_run_backtest_then_paper_run_of_an_sma_crossover(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, demo = make_run(tmp_path, strategy_runs_poll_seconds="2")
    try:
        server.wait_ready(timeout=90)
        token = httpx.post(server.url + "/api/auth/login",
                           json={"email": demo.email, "password": demo.password}).json()["access_token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            _wait_book(http)
            _until(lambda: len(http.get("/api/market/candles/BTC-USDT", params={"timeframe": "5m", "limit": 200})
                               .json()["items"]) >= 150, "the back-filled 5m history", 180)
            body = {"name": "SMA 10/30", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30, "size": 0.2},
                    "symbols": ["BTC/USDT"], "timeframe": "5m"}
            created = http.post("/api/strategies", json=body)
            assert created.status_code == 201, created.text
            strategy = created.json()

            # the backtest: a job of the core, its metrics and its chart
            end = datetime.now(UTC).replace(second=0, microsecond=0)
            accepted = http.post(f"/api/strategies/{strategy['id']}/backtest",
                                 json={"start": (end - timedelta(hours=20)).isoformat(), "end": end.isoformat()})
            assert accepted.status_code == 202, accepted.text
            url = f"/api/strategies/{strategy['id']}/backtests/{accepted.json()['backtest_id']}"
            done = _until(lambda: (b := http.get(url).json())["status"] in ("succeeded", "failed") and b,
                          "the backtest job", 180)
            assert done["status"] == "succeeded", done  # type: ignore[index]
            summary = done["summary"]  # type: ignore[index]
            assert summary["bars"] >= 200 and "sharpe" in summary and "max_drawdown" in summary, summary
            job = http.get(f"/api/jobs/{accepted.json()['job_id']}").json()
            assert job["status"] == "succeeded" and job["progress"] == 1.0
            png = http.get(done["report"]["png"])  # type: ignore[index]
            assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

            # the same configuration, live on the paper account
            replaced = http.put(f"/api/strategies/{strategy['id']}",
                                json={**body, "params": {"fast": 1, "slow": 2, "size": 0.2}, "timeframe": "1m"})
            assert replaced.status_code == 200, replaced.text
            started = http.post(f"/api/strategies/{strategy['id']}/start")
            assert started.status_code == 201, started.text
            run = started.json()
            [account] = [a for a in http.get("/api/trading/accounts").json()["items"] if a["is_default"]]
            assert run["status"] == "running" and run["account_id"] == account["id"]

            def strategy_orders() -> list[dict]:
                items = http.get("/api/trading/orders", params={"account_id": account["id"]}).json()["items"]
                return [o for o in items if o["strategy_run_id"] == run["id"]]

            [order] = _until(strategy_orders, "the run's first order", 900)  # type: ignore[misc]
            assert order["side"] == "buy" and order["status"] == "filled" and order["strategy_id"] == strategy["id"]
            fills = http.get("/api/trading/fills", params={"order_id": order["id"]}).json()["items"]
            assert fills and sum(float(f["quantity"]) for f in fills) == pytest.approx(float(order["filled_quantity"]))
            [listed] = http.get(f"/api/strategies/{strategy['id']}/runs").json()["items"]
            assert listed["orders_placed"] >= 1 and listed["pnl"]["fills"] >= 1

            stopped = http.post(f"/api/strategies/{strategy['id']}/stop")
            assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
            assert http.get(f"/api/strategies/{strategy['id']}").json()["status"] == "stopped"
    finally:
        server.stop()
