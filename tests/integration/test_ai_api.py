"""/api/ai: the built-in models with their scores, market analysis on real candles, and the
sentiment of stored texts (in the analysis too)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx

from tests.ai_series import write_pattern_bars
from tests.helpers import bearer, new_user
from tests.integration.strategies_support import import_btc_1h
from tests.market_support import COINBASE_1H
from tradepilot.ai.models_catalog import sentiment_model
from tradepilot.ai.sentiment_store import store_texts
from tradepilot.market.importer import import_file
from tradepilot.runtime import Runtime


async def test_models_are_listed_with_their_scores_beside_their_baselines(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    resp = await client.get("/api/ai/models", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    models = {m["name"]: m for m in resp.json()["items"]}
    assert {"regime-logistic", "sentiment-tfidf-vader", "chart-patterns", "candlesticks-talib"} <= set(models)
    sentiment = models["sentiment-tfidf-vader"]
    assert sentiment["scores"]["macro_f1"] > sentiment["baselines"]["VADER"]["macro_f1"]
    assert models["regime-logistic"]["scores"]["held_out_accuracy"] >= 0.9
    assert (await client.get("/api/ai/models")).status_code == 401


async def test_market_analysis_reports_facts_measured_on_the_stored_candles(client: httpx.AsyncClient,
                                                                           runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    await import_btc_1h(runtime)
    resp = await client.post("/api/ai/analyze-market", json={"symbols": ["BTC-USDT"], "timeframe": "1h"},
                             headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    (item,) = resp.json()["items"]
    assert item["symbol"] == "BTC/USDT" and item["bars"] == 720
    assert item["as_of"] == "2017-07-31T10:00:00Z"
    assert item["trend"]["direction"] in ("up", "down", "sideways")
    assert item["regime"]["label"] in ("trending", "ranging", "volatile")
    assert all(level["price"] < item["last_price"] for level in item["support"])
    assert item["summary"].startswith("BTC/USDT on 1h") and item["summary_source"] == "template"

    fewer = await client.post("/api/ai/analyze-market", json={"symbols": ["BTC/USDT"], "bars": 300},
                              headers=bearer(tokens))
    assert fewer.status_code == 200
    changed = fewer.json()["items"][0]
    assert changed["bars"] == 300
    window = ("trend_t", "efficiency", "variance_ratio", "autocorrelation", "kurtosis")  # the same last 120 bars ...
    assert all(changed["regime"]["features"][k] == item["regime"]["features"][k] for k in window)
    assert changed["regime"]["features"]["vol_ratio"] != item["regime"]["features"]["vol_ratio"]  # ... other history
    assert changed["volatility"]["atr_percentile"] != item["volatility"]["atr_percentile"]


async def test_analysis_refuses_unknown_symbols_short_histories_and_bad_bodies(client: httpx.AsyncClient,
                                                                              runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    unknown = await client.post("/api/ai/analyze-market", json={"symbols": ["NOPE/USDT"]}, headers=bearer(tokens))
    assert unknown.status_code == 404
    await asyncio.to_thread(import_file, runtime.services["market"].candles, COINBASE_1H, symbol="ETH/USDT",
                            timeframe="1h", derive=False)
    short = await client.post("/api/ai/analyze-market", json={"symbols": ["ETH/USDT"], "timeframe": "4h"},
                              headers=bearer(tokens))
    assert short.status_code == 422 and short.json()["code"] == "insufficient_data"
    for body in ({"symbols": []}, {"symbols": ["BTC/USDT"], "timeframe": "2h"}, {"symbols": ["BTC/USDT"], "bars": 10},
                 {"symbols": ["BTC/USDT"], "extra": 1}):
        bad = await client.post("/api/ai/analyze-market", json=body, headers=bearer(tokens))
        assert bad.status_code == 422, (body, bad.text)


async def test_texts_are_scored_kept_per_symbol_once_and_summed_up_over_time(client: httpx.AsyncClient,
                                                                            runtime: Runtime) -> None:
    user, tokens = await new_user(client)
    now = runtime.clock.now()
    texts = [{"text": "$BTC rallies to a record as buyers pile in", "published_at": (now - timedelta(days=2)).isoformat()},
             {"text": "Bitcoin plunges after exchange hack, analysts downgrade outlook", "symbols": ["BTC-USDT"],
              "published_at": (now - timedelta(days=1)).isoformat()},
             {"text": "Central bank holds rates steady"}]
    resp = await client.post("/api/ai/sentiment", json={"texts": texts}, headers=bearer(tokens))
    assert resp.status_code == 201, resp.text
    items = resp.json()["items"]
    assert [i["symbols"] for i in items] == [["BTC/USDT"], ["BTC/USDT"], []]  # the cashtag, the named symbol
    assert items[0]["label"] == "bullish" and items[1]["label"] == "bearish" and not any(i["duplicate"] for i in items)
    again = await client.post("/api/ai/sentiment", json={"texts": texts[:1]}, headers=bearer(tokens))
    assert again.json()["items"][0]["duplicate"] is True

    history = await client.get("/api/ai/sentiment", params={"symbol": "BTC-USDT", "interval": "1d"},
                               headers=bearer(tokens))
    assert history.status_code == 200, history.text
    body = history.json()
    assert body["symbol"] == "BTC/USDT" and body["overall"]["texts"] == 2  # stored once
    assert [p["texts"] for p in body["items"]] == [1, 1]
    assert body["items"][0]["score"] > 0 > body["items"][1]["score"]
    general = (await client.get("/api/ai/sentiment", headers=bearer(tokens))).json()
    assert general["symbol"] is None and general["overall"]["texts"] == 1

    _, other = await new_user(client)  # another user's texts are their own
    assert (await client.get("/api/ai/sentiment", params={"symbol": "BTC/USDT"},
                             headers=bearer(other))).json()["overall"]["texts"] == 0
    assert user["id"]


async def test_sentiment_refuses_bad_input_and_stores_nothing(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    for body in ({"texts": []}, {"texts": [{"text": ""}]}, {"texts": [{"text": "x" * 2001}]},
                 {"texts": [{"text": "ok", "source": "bad source!"}]}, {"texts": [{"text": "ok"}] * 101}):
        resp = await client.post("/api/ai/sentiment", json=body, headers=bearer(tokens))
        assert resp.status_code == 422, (body, resp.text)
    unknown = await client.post("/api/ai/sentiment", json={"texts": [{"text": "fine", "symbols": ["NOPE/USDT"]},
                                                                     {"text": "also fine"}]}, headers=bearer(tokens))
    assert unknown.status_code == 404
    assert (await client.get("/api/ai/sentiment", headers=bearer(tokens))).json()["overall"]["texts"] == 0
    bad_range = await client.get("/api/ai/sentiment", params={"start": "2026-01-02T00:00:00Z",
                                                              "end": "2026-01-01T00:00:00Z"}, headers=bearer(tokens))
    assert bad_range.status_code == 422 and bad_range.json()["code"] == "invalid_range"


async def test_analysis_carries_the_sentiment_of_the_symbols_texts_as_get_sentiment_reports_it(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    await import_btc_1h(runtime)
    body = {"symbols": ["BTC/USDT"], "timeframe": "1h"}

    async def analysed() -> dict:
        resp = await client.post("/api/ai/analyze-market", json=body, headers=bearer(tokens))
        assert resp.status_code == 200, resp.text
        return resp.json()["items"][0]  # type: ignore[no-any-return]

    async def overall() -> dict:
        resp = await client.get("/api/ai/sentiment", params={"symbol": "BTC/USDT"}, headers=bearer(tokens))
        return resp.json()["overall"]  # type: ignore[no-any-return]

    none = await analysed()
    assert none["sentiment"] is None and none["sentiment_reason"] == "no_texts"
    assert "Sentiment" not in none["summary"]

    now = runtime.clock.now()
    texts = [{"text": "$BTC rallies to a record as buyers pile in"},
             {"text": "Bitcoin surges as institutional demand beats forecasts", "symbols": ["BTC/USDT"],
              "published_at": (now - timedelta(days=3)).isoformat()},
             {"text": "Bitcoin plunges after exchange hack, analysts downgrade outlook", "symbols": ["BTC/USDT"],
              "published_at": (now - timedelta(days=40)).isoformat()},  # older than the window
             {"text": "Ethereum plunges after exchange hack", "symbols": ["ETH/USDT"]},  # another symbol
             {"text": "Central bank holds rates steady"}]  # a general text
    assert (await client.post("/api/ai/sentiment", json={"texts": texts}, headers=bearer(tokens))).status_code == 201
    _, other = await new_user(client)  # another user's texts are not this user's sentiment
    await client.post("/api/ai/sentiment", json={"texts": [{"text": "$BTC crashes, traders panic and sell"}]},
                      headers=bearer(other))

    bullish = await analysed()
    mood = bullish["sentiment"]
    assert bullish["sentiment_reason"] is None and mood["texts"] == 2 and mood["label"] == "bullish"
    assert {k: mood[k] for k in ("texts", "score", "label", "bearish", "neutral", "bullish")} == await overall()
    assert mood["end"] >= now.isoformat()[:19] and mood["start"] < mood["end"]
    assert f"Sentiment over the last 30 days (2 texts) is bullish (mean score {mood['score']:+.2f}" in bullish["summary"]
    assert bullish["trend"] == none["trend"]  # the same candles: only the sentiment moved

    # an operator feed's text (no user) counts for every user, and changes the figures
    async with runtime.db.transaction() as session:
        await store_texts(session, sentiment_model(), None, [
            ("Bitcoin crashes as exchange collapses and regulators crack down", {"BTC/USDT"}, now, "feed:news")], now)
    changed = await analysed()
    assert changed["sentiment"]["texts"] == 3 and changed["sentiment"]["score"] < mood["score"]
    assert changed["sentiment"]["bearish"] == mood["bearish"] + 1
    assert {k: changed["sentiment"][k] for k in ("texts", "score", "label", "bearish", "neutral", "bullish")} \
        == await overall()
    assert changed["summary"] != bullish["summary"]


async def test_analysis_patterns_and_candlesticks_follow_the_series(client: httpx.AsyncClient,
                                                                   runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    store = runtime.services["market"].candles
    head_and_shoulders = await write_pattern_bars(store, "ETH/USDT", n_patterns=2, seed=1)
    triangle = await write_pattern_bars(store, "SOL/USDT", n_patterns=3, seed=2)
    resp = await client.post("/api/ai/analyze-market", json={"symbols": ["ETH/USDT", "SOL/USDT"], "bars": 2000},
                             headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    eth, sol = resp.json()["items"]
    # the pattern injected last in each series is the one found in the recent bars, where it was put
    assert [(p["kind"], p["direction"]) for p in eth["patterns"]] == [(head_and_shoulders[-1].kind,
                                                                     head_and_shoulders[-1].direction)]
    assert [(p["kind"], p["direction"]) for p in sol["patterns"]] == [(triangle[-1].kind, triangle[-1].direction)]
    assert eth["patterns"][0]["confirmed"] <= eth["as_of"] and sol["patterns"][0]["confirmed"] <= sol["as_of"]
    latest = f"Latest confirmed pattern: {triangle[-1].kind.replace('_', ' ')}"
    assert latest in sol["summary"] and latest not in eth["summary"]
    # TA-Lib's candlesticks of each series' last three bars
    assert eth["candlesticks"] and sol["candlesticks"] and eth["candlesticks"] != sol["candlesticks"]
    last = datetime.fromisoformat(sol["as_of"])
    assert {datetime.fromisoformat(c["time"]) for c in sol["candlesticks"]} <= {last - timedelta(hours=h)
                                                                                 for h in (0, 1, 2)}

    # the same symbol with another series: other patterns and candlesticks
    await write_pattern_bars(store, "ETH/USDT", n_patterns=3, seed=2)
    again = (await client.post("/api/ai/analyze-market", json={"symbols": ["ETH/USDT"], "bars": 2000},
                               headers=bearer(tokens))).json()["items"][0]
    assert again["patterns"] != eth["patterns"] and again["candlesticks"] != eth["candlesticks"]
    assert [p["kind"] for p in again["patterns"]] == [triangle[-1].kind]
