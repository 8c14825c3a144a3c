"""`make run`'s steps with an LLM provider configured by environment (a local chat-completions
server): the demo user sees the provider among the models, asks a custom prompt with the
market context and their position injected, has the analysis summary written by the LLM,
and reads the audit of both calls."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from tests.e2e.servers import make_run
from tests.e2e.test_orders_make_run import _wait_book
from tests.fakes.chat_completions import ChatCompletionsServer

pytestmark = pytest.mark.slow

KEY = "sk-e2e-local-0123456789"


def test_make_run_server_asks_the_configured_llm_with_market_context(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chat = ChatCompletionsServer().start_in_thread()
    provider = {"name": "local", "base_url": chat.base_url, "model": "e2e-chat", "timeout_seconds": 10}
    server, demo = make_run(tmp_path, llm_providers=json.dumps([provider]), llm_api_keys=json.dumps({"local": KEY}),
                            market_backfill_days="9")  # 216 hourly bars: enough for the indicators (200)
    try:
        server.wait_ready(timeout=180)  # the back-fill is written at start; CI machines are loaded
        token = httpx.post(server.url + "/api/auth/login",
                           json={"email": demo.email, "password": demo.password}).json()["access_token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            _wait_book(http)
            models = http.get("/api/ai/models").json()["items"]
            assert [m["parameters"]["model"] for m in models if m["name"] == "llm:local"] == ["e2e-chat"]
            placed = http.post("/api/trading/orders", json={"symbol": "BTC/USDT", "type": "market", "side": "buy",
                                                            "quantity": "0.1"})
            assert placed.status_code == 201, placed.text

            asked = http.post("/api/ai/custom-prompt", json={"prompt": "Should I worry about my BTC position?",
                                                             "symbols": ["BTC/USDT"]})
            assert asked.status_code == 200, asked.text
            body = asked.json()
            (sent,) = chat.requests
            assert sent.headers["Authorization"] == f"Bearer {KEY}" and sent.body["model"] == "e2e-chat"
            assert sent.body["messages"][-1] == {"role": "user", "content": "Should I worry about my BTC position?"}
            context = json.loads(sent.body["messages"][1]["content"].split("\n", 1)[1])
            (btc,) = context["markets"]
            assert Decimal(btc["last_price"]) > 0 and 0 < btc["indicators"]["rsi_14"] < 100
            (position,) = context["portfolio"]["positions"]
            assert position["symbol"] == "BTC/USDT" and Decimal(position["quantity"]) == Decimal("0.1")
            assert "BTC/USDT at" in body["answer"] and body["quota"]["used"] == 1

            chosen = http.put("/api/ai/models/active", json={"task": "summary", "model": "llm:local"})
            assert chosen.status_code == 200, chosen.text
            analysed = http.post("/api/ai/analyze-market", json={"symbols": ["BTC/USDT"], "bars": 200})
            assert analysed.status_code == 200, analysed.text
            (item,) = analysed.json()["items"]
            assert item["summary_source"] == "llm:local" and "e2e-chat" in item["summary"]
            assert item["prediction"] is None or 0 < item["prediction"]["probability_up"] < 1

            audit = http.get("/api/ai/llm-calls").json()["items"]
            assert [(c["purpose"], c["outcome"]) for c in audit] == [("summary", "ok"), ("custom_prompt", "ok")]
            assert KEY not in json.dumps(audit)
    finally:
        server.stop()
        chat.stop_thread()
