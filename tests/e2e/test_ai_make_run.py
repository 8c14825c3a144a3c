"""`make run`'s steps, real candles imported from ../shared/data/ (Coinbase BTC/USD hourly,
Bitstamp BTC / ETH / LTC daily), then every AI endpoint against the running server: models,
market analysis, predictions (503 until the CLI trains the model, then a forecast), custom
prompts (503 ``llm_not_configured``: no LLM here), sentiment — texts posted and an operator RSS
feed served locally, both in GET /sentiment and in the analysis —, portfolio optimisation with
its rebalancing orders, strategy generation and risk assessment.

The daily LTC/USD closes stand in for SOL/USDT (the simulated venue does not list LTC; only
the prices matter). No simulated back-fill, so the stored history is the imported one."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
FEED_SCHEDULE = "ai.fetch_feeds.quarter_hourly"
RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Bitcoin wire</title><link>http://example.test/</link>
<item><guid>btc-1</guid><title>Bitcoin surges as institutional demand beats forecasts</title></item>
<item><guid>btc-2</guid><title>Bitcoin plunges after exchange hack, analysts downgrade outlook</title></item>
</channel></rss>"""


class _Feed(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(RSS)))
        self.end_headers()
        self.wfile.write(RSS)


def _serve_feed() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _fire_feeds_now(database: Path) -> None:
    """Bring the feeds' next quarter-hour forward: the schedule's next firing moved into the
    past is a missed one, which the server's scheduler fires at its next tick (once)."""
    with sqlite3.connect(database, timeout=30) as db:
        moved = db.execute("UPDATE schedule SET next_fire_at = '2000' || substr(next_fire_at, 5) WHERE name = ?",
                           (FEED_SCHEDULE,)).rowcount
    assert moved == 1


def _wait_for_texts(http: httpx.Client, symbol: str, count: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (overall := http.get("/api/ai/sentiment", params={"symbol": symbol}).json()["overall"])["texts"] < count:
        assert time.monotonic() < deadline, f"the feed's texts did not arrive: {overall}"
        time.sleep(0.5)
    return overall  # type: ignore[no-any-return]


def _import(tmp_path: Path, env: dict[str, str]) -> None:
    tradepilot(["data", "import", str(HOURLY), "--symbol", "BTC/USDT", "--timeframe", "1h", "--no-derive"], env,
               tmp_path)
    for symbol, name in DAILY.items():
        tradepilot(["data", "import", str(SHARED / "bitstamp_multi_1d" / name), "--symbol", symbol, "--timeframe", "1d",
                    "--no-derive"], env, tmp_path)


def _clear_of_an_hour_boundary(budget: timedelta = timedelta(minutes=3)) -> None:
    """Wait for the next UTC hour if it is less than ``budget`` away. The server's simulated
    market closes a live 1h bar of BTC/USDT at every hour; the checks on the imported hourly
    series (its last bar, 1,000 bars) need none to close while this test runs (~35 s)."""
    now = datetime.now(UTC)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if next_hour - now < budget:
        time.sleep((next_hour - now).total_seconds() + 2)


@pytest.mark.skipif(not HOURLY.exists(), reason="../shared/data is not beside the checkout")
def test_make_run_server_answers_every_ai_endpoint_on_real_data(tmp_path: Path) -> None:
    _clear_of_an_hour_boundary()
    feed = _serve_feed()
    feeds = json.dumps([{"name": "btc-wire", "url": f"http://127.0.0.1:{feed.server_address[1]}/rss",
                         "symbols": ["BTC/USDT"]}])
    server, demo = make_run(tmp_path, ai_feeds=feeds, **SETTINGS)
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

            no_llm = http.post("/api/ai/custom-prompt", json={"prompt": "How does BTC look?", "symbols": ["BTC/USDT"]})
            assert no_llm.status_code == 503 and no_llm.headers["content-type"].startswith("application/problem+json")
            assert no_llm.json()["code"] == "llm_not_configured" and no_llm.json()["status"] == 503

            eth = {"symbols": ["ETH/USDT"], "timeframe": "1d", "bars": 300}  # no feed names ETH
            quiet = http.post("/api/ai/analyze-market", json=eth).json()["items"][0]
            assert quiet["sentiment"] is None and quiet["sentiment_reason"] == "no_texts"
            _fire_feeds_now(tmp_path / "tradepilot.db")  # the operator's feed: two BTC headlines
            feed_texts = _wait_for_texts(http, "BTC/USDT", 2)
            assert feed_texts["bullish"] == 1 and feed_texts["bearish"] == 1
            texts = [{"text": "$BTC rallies to a record as buyers pile in"},
                     {"text": "Ethereum plunges after exchange hack, analysts downgrade outlook",
                      "symbols": ["ETH/USDT"]}]
            scored = http.post("/api/ai/sentiment", json={"texts": texts})
            assert scored.status_code == 201, scored.text
            assert [i["label"] for i in scored.json()["items"]] == ["bullish", "bearish"]
            history = http.get("/api/ai/sentiment", params={"symbol": "BTC/USDT"})
            assert history.status_code == 200 and history.json()["overall"]["texts"] == 3  # the feed's and mine
            overall = history.json()["overall"]
            again = http.post("/api/ai/analyze-market", json={"symbols": ["BTC/USDT"], "timeframe": "1h"})
            assert again.status_code == 200, again.text
            mood = again.json()["items"][0]["sentiment"]
            assert {k: mood[k] for k in overall} == overall and mood["bullish"] == 2
            assert "Sentiment over the last 30 days (3 texts)" in again.json()["items"][0]["summary"]
            bearish = http.post("/api/ai/analyze-market", json=eth).json()["items"][0]["sentiment"]
            assert bearish["texts"] == 1 and bearish["label"] == "bearish"

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
        feed.shutdown()
        feed.server_close()


def _wait_for_book(http: httpx.Client, symbol: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (http.get(f"/api/market/orderbook/{symbol}").json().get("asks")):
        assert time.monotonic() < deadline, f"no {symbol} book from the simulated market"
        time.sleep(0.1)
