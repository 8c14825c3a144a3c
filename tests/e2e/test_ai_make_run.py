"""`make run`'s steps, real candles imported from ../shared/data/ (Coinbase BTC/USD hourly,
Bitstamp BTC / ETH / LTC daily), then every AI endpoint against the running server: models,
market analysis, predictions (503 until the CLI trains the model, then a forecast), sentiment,
portfolio optimisation with its rebalancing orders, strategy generation and risk assessment.

The daily LTC/USD closes stand in for SOL/USDT (the simulated venue does not list LTC; only
the prices matter). No simulated back-fill, so the stored history is the imported one."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import make_run, server_env, tradepilot
from tests.e2e.test_orders_make_run import _wait_book

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
SHARED = ROOT.parent / "shared" / "data" / "market"
HOURLY = SHARED / "coinbase_btc_usd_1h" / "BTC_USD-1h.csv"
DAILY = {"BTC/USDT": "BTC_USD-1d.csv", "ETH/USDT": "ETH_USD-1d.csv", "SOL/USDT": "LTC_USD-1d.csv"}
SETTINGS = {"market_backfill_days": "0", "ai_direction_train_on_start": "false",
            "market_symbols": "BTC/USDT,ETH/USDT,SOL/USDT"}


def _import(tmp_path: Path, env: dict[str, str]) -> None:
    tradepilot(["data", "import", str(HOURLY), "--symbol", "BTC/USDT", "--timeframe", "1h", "--no-derive"], env,
               tmp_path)
    for symbol, name in DAILY.items():
        tradepilot(["data", "import", str(SHARED / "bitstamp_multi_1d" / name), "--symbol", symbol, "--timeframe", "1d",
                    "--no-derive"], env, tmp_path)


@pytest.mark.skipif(not HOURLY.exists(), reason="../shared/data is not beside the checkout")
def test_make_run_server_answers_every_ai_endpoint_on_real_data(tmp_path: Path) -> None:
    server, demo = make_run(tmp_path, **SETTINGS)
    env = server_env(database_url=f"sqlite+aiosqlite:///{tmp_path / 'tradepilot.db'}", data_dir=str(tmp_path / "var"),
                     **SETTINGS)
    _import(tmp_path, env)
    try:
        server.wait_ready(timeout=90)
        token = httpx.post(server.url + "/api/auth/login",
                           json={"email": demo.email, "password": demo.password}).json()["access_token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            models = http.get("/api/ai/models")
            assert models.status_code == 200, models.text
            names = {m["name"] for m in models.json()["items"]}
            assert {"regime-logistic", "sentiment-tfidf-vader", "chart-patterns"} <= names

            analysis = http.post("/api/ai/analyze-market", json={"symbols": ["BTC/USDT"], "timeframe": "1h"})
            assert analysis.status_code == 200, analysis.text
            (facts,) = analysis.json()["items"]
            assert facts["as_of"] == "2019-10-17T09:00:00Z" and facts["bars"] == 1000  # the imported bars
            assert facts["regime"]["label"] in ("trending", "ranging", "volatile") and facts["summary"]

            params = {"symbol": "BTC/USDT", "timeframe": "1h", "horizon": 1}
            waiting = http.get("/api/ai/predictions", params=params)
            assert waiting.status_code == 503 and waiting.json()["code"] == "model_not_ready"
            assert int(waiting.headers["Retry-After"]) > 0
            tradepilot(["ai", "train", "direction", "--symbol", "BTC/USDT", "--timeframe", "1h", "--horizon", "1"],
                       env, tmp_path)
            prediction = http.get("/api/ai/predictions", params=params)
            assert prediction.status_code == 200, prediction.text
            forecast = prediction.json()
            assert 0 < forecast["probability_up"] < 1 and forecast["as_of"] == "2019-10-17T09:00:00Z"
            assert forecast["interval"]["low"] < forecast["interval"]["high"]
            assert set(forecast["baselines"]) == {"linear", "always_up", "last_direction"}
            assert forecast["model"]["bars"] > 19_000 and forecast["model"]["test_bars"] > 1000

            texts = [{"text": "$BTC rallies to a record as buyers pile in"},
                     {"text": "Ethereum plunges after exchange hack, analysts downgrade outlook",
                      "symbols": ["ETH/USDT"]}]
            scored = http.post("/api/ai/sentiment", json={"texts": texts})
            assert scored.status_code == 201, scored.text
            assert [i["label"] for i in scored.json()["items"]] == ["bullish", "bearish"]
            history = http.get("/api/ai/sentiment", params={"symbol": "BTC/USDT"})
            assert history.status_code == 200 and history.json()["overall"]["texts"] == 1

            strategy = http.post("/api/ai/generate-strategy", json={"symbol": "BTC/USDT", "bars": 3000})
            assert strategy.status_code == 200, strategy.text
            generated = strategy.json()
            assert generated["fit_window"]["end"] < generated["test_window"]["start"]
            assert generated["test_window"]["end"] == "2019-10-17T09:00:00Z"
            assert "buy_and_hold" in generated["out_of_sample"]

            _wait_book(http)
            for symbol in ("ETH/USDT", "SOL/USDT"):
                _wait_for_book(http, symbol)
            body = {"symbols": list(DAILY), "method": "max_sharpe", "lookback_days": 3650, "cash_weight": "0.2"}
            plan = http.post("/api/ai/optimize-portfolio", json=body)
            assert plan.status_code == 200, plan.text
            planned = plan.json()
            optimization = planned["optimization"]
            assert optimization["inputs"]["start"] == "2017-11-09T00:00:00Z"  # ETH's first daily close
            assert optimization["sharpe_ratio"] == pytest.approx(optimization["expected_return"]
                                                                 / optimization["volatility"])
            assert sum(Decimal(w) for w in planned["target_allocation"].values()) == 1
            assert planned["rebalance"]["dry_run"] and planned["rebalance"]["orders"]
            done = http.post("/api/ai/optimize-portfolio", json={**body, "execute": True},
                             headers={"Idempotency-Key": "ai-e2e-1"})
            assert done.status_code == 200, done.text
            assert all(o["status_code"] == 201 for o in done.json()["rebalance"]["orders"])

            risk = http.post("/api/ai/risk-assessment", json={"lookback_days": 3650})
            assert risk.status_code == 200, risk.text
            assessed = risk.json()
            assert assessed["source"] == "holdings" and assessed["observations"] > 700
            assert 0 < assessed["value_at_risk"]["historical"] <= assessed["conditional_value_at_risk"]["historical"]
    finally:
        server.stop()


def _wait_for_book(http: httpx.Client, symbol: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (http.get(f"/api/market/orderbook/{symbol}").json().get("asks")):
        assert time.monotonic() < deadline, f"no {symbol} book from the simulated market"
        time.sleep(0.1)
