"""`make run`'s steps, then the demo user trades on the paper account, deposits, and reads every
analytics endpoint: the figures agree with the trading API's own view of the account.

Several days of history with a deposit in between are covered on the test clock in
tests/integration/test_analytics.py; a real server runs on the real clock, so here the history
is today alone (the account was opened today) and the checks are about consistency."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.e2e.servers import make_run
from tests.e2e.test_orders_make_run import _wait_book

pytestmark = pytest.mark.slow

ENDPOINTS = ("performance", "risk-metrics", "drawdown", "sharpe-ratio", "portfolio-allocation", "exposure")


def test_make_run_server_answers_analytics_after_trades_and_a_deposit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, demo = make_run(tmp_path)
    try:
        server.wait_ready(timeout=90)
        token = httpx.post(server.url + "/api/auth/login",
                           json={"email": demo.email, "password": demo.password}).json()["access_token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            _wait_book(http)
            [account] = [a for a in http.get("/api/trading/accounts").json()["items"] if a["is_default"]]
            for body in ({"side": "buy", "quantity": "0.1"}, {"side": "sell", "quantity": "0.05"}):
                placed = http.post("/api/trading/orders", json={"symbol": "BTC/USDT", "type": "market", **body})
                assert placed.status_code == 201 and placed.json()["status"] == "filled", placed.text
            deposit = http.post(f"/api/trading/accounts/{account['id']}/deposits",
                                json={"asset": "USDT", "amount": "1000"})
            assert deposit.status_code == 201, deposit.text

            answers = {path: http.get(f"/api/analytics/{path}") for path in ENDPOINTS}
            for path, answer in answers.items():
                assert answer.status_code == 200, (path, answer.text)
                assert answer.json()["currency"] == "USDT" and answer.json()["accounts"] == [account["id"]]
            perf = answers["performance"].json()
            [today] = perf["equity_curve"]
            # the starting balance and the deposit are today's flows; none of it is profit
            assert Decimal(today["net_flows"]) == Decimal(account["starting_balance"]) + 1000
            assert perf["method"]["annualization"] == 365
            [btc] = perf["by_symbol"]
            assert btc["name"] == "BTC/USDT" and btc["fills"] >= 2 and perf["trades"]["count"] >= 1
            balances = {b["asset"]: Decimal(b["total"])
                        for b in http.get(f"/api/trading/accounts/{account['id']}").json()["balances"]}
            assert Decimal(today["cash"]) == balances["USDT"]

            allocation = answers["portfolio-allocation"].json()
            weights = {row["asset"]: row["weight"] for row in allocation["by_asset"]}
            assert set(weights) == {"USDT", "BTC"} and sum(weights.values()) == pytest.approx(1.0)
            exposure = answers["exposure"].json()
            assert exposure["gross_ratio"] == pytest.approx(float(Decimal(exposure["gross"]) / Decimal(exposure["equity"])))
            assert 0 < exposure["gross_ratio"] < 1 and exposure["largest_weight"] == pytest.approx(1.0)
            theirs = http.get("/api/analytics/drawdown", params={"account_id": "00000000-0000-4000-8000-000000000000"})
            assert theirs.status_code == 404 and theirs.json()["code"] == "account_not_found"
    finally:
        server.stop()
