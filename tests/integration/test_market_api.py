"""/api/market against a running app (simulated venue), on SQLite and PostgreSQL.

Candles and analytics are checked on real data imported into the store, against calculations
done here independently (plain Python, and TA-Lib for the ATR).
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from decimal import Decimal

import httpx
import numpy as np
import pytest
import talib

from tests.helpers import bearer, new_user
from tests.market_support import COINBASE_1H, COINBASE_BTC_1M, COINBASE_ETH_1M, candle_rows
from tests.support import make_settings
from tradepilot.config import Settings
from tradepilot.market.importer import import_file
from tradepilot.market.payloads import rfc3339


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(database_url, data_dir=tmp_path / "var", market_feed_owner=True)


@pytest.fixture
async def auth(client: httpx.AsyncClient) -> dict[str, str]:
    _, tokens = await new_user(client)
    return bearer(tokens)


@pytest.fixture
def market(runtime):  # type: ignore[no-untyped-def]
    return runtime.services["market"]


async def test_market_endpoints_need_a_user(client: httpx.AsyncClient) -> None:
    for path in ("/api/market/instruments", "/api/market/prices", "/api/market/candles/BTC-USDT",
                 "/api/market/orderbook/BTC-USDT", "/api/market/volatility?symbol=BTC/USDT"):
        resp = await client.get(path)
        assert resp.status_code == 401 and resp.json()["code"] == "not_authenticated", path


async def test_instruments_prices_books_and_trades(client: httpx.AsyncClient, auth, market) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/market/instruments", headers=auth)
    assert resp.status_code == 200
    items = {i["symbol"]: i for i in resp.json()["items"]}
    assert set(items) == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"}
    assert items["BTC/USDT"] == {"venue": "simulated", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT",
                                 "tick_size": "0.01", "step_size": "0.00001", "min_notional": "5",
                                 "status": "trading"}
    await market.wait_for_prices(20)
    for _ in range(2000):  # a ticker of any symbol came first; the BTC book follows within a tick
        if market.order_book("BTC/USDT") is not None:
            break
        await asyncio.sleep(0.01)
    prices = (await client.get("/api/market/prices?symbols=BTC/USDT,eth-usdt", headers=auth)).json()["items"]
    assert [p["symbol"] for p in prices] == ["BTC/USDT", "ETH/USDT"]
    for p in prices:
        if p["bid"] is not None:
            assert Decimal(p["bid"]) < Decimal(p["ask"]) and isinstance(p["price"], str)
    # every spelling of a symbol in a path works; an unknown one is 404
    for form in ("BTC-USDT", "BTC%2FUSDT", "btc-usdt"):
        resp = await client.get(f"/api/market/orderbook/{form}?depth=5", headers=auth)
        assert resp.status_code == 200, (form, resp.text)
        book = resp.json()
        assert book["symbol"] == "BTC/USDT" and len(book["bids"]) == len(book["asks"]) == 5
        assert Decimal(book["bids"][0][0]) < Decimal(book["asks"][0][0])
    resp = await client.get("/api/market/orderbook/DOGE-USDT", headers=auth)
    assert resp.status_code == 404 and resp.json()["code"] == "unknown_symbol"
    assert (await client.get("/api/market/prices?symbols=NOPE/USDT", headers=auth)).status_code == 404
    assert (await client.get("/api/market/orderbook/BTC-USDT?depth=51", headers=auth)).status_code == 422
    for _ in range(100):  # the first trades follow the first book within a tick
        trades = (await client.get("/api/market/trades/BTC-USDT?limit=5", headers=auth)).json()["items"]
        if trades:
            break
        await asyncio.sleep(0.05)
    assert 1 <= len(trades) <= 5 and all(t["side"] in ("buy", "sell") for t in trades)
    assert [int(t["id"]) for t in trades] == sorted((int(t["id"]) for t in trades), reverse=True)
    assert market.last_price("BTC/USDT") is not None


async def test_imported_candles_come_back_unchanged(client: httpx.AsyncClient, auth, market) -> None:  # type: ignore[no-untyped-def]
    rows = candle_rows(COINBASE_1H)
    result = await asyncio.to_thread(import_file, market.candles, COINBASE_1H, symbol="BTC/USDT", timeframe="1h")
    assert result.bars == len(rows) == 720 and result.derived["1d"] >= 30
    start, end = rows[0].time, rows[-1].time + timedelta(hours=1)
    got, cursor = [], None
    while True:  # page through with next_cursor
        params = {"timeframe": "1h", "start": rfc3339(start), "end": rfc3339(end), "limit": 300}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/market/candles/BTC%2FUSDT", params=params, headers=auth)).json()
        got += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(got) == 720
    for row, item in zip(rows, got, strict=True):
        assert item["open_time"] == row.timestamp
        for name in ("open", "high", "low", "close", "volume"):
            assert Decimal(item[name]) == row.value(name), (row.timestamp, name)
        assert item["closed"] is True
    # the derived daily bars are the aggregation of the hours
    day = rows[13].time.replace(hour=0)
    hours = [r for r in rows if r.time.date() == day.date()]
    daily = (await client.get("/api/market/candles/BTC-USDT", params={
        "timeframe": "1d", "start": rfc3339(day), "limit": 1}, headers=auth)).json()["items"][0]
    assert Decimal(daily["high"]) == max(h.value("high") for h in hours)
    assert Decimal(daily["volume"]) == sum(h.value("volume") for h in hours)
    history = (await client.get("/api/market/prices/history", params={
        "symbol": "BTC-USDT", "timeframe": "1h", "start": rfc3339(start), "limit": 3}, headers=auth)).json()
    assert [Decimal(p["price"]) for p in history["items"]] == [r.value("close") for r in rows[:3]]


async def test_bad_timeframes_and_ranges_are_422(client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/market/candles/BTC-USDT?timeframe=2h", headers=auth)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "timeframe"
    resp = await client.get("/api/market/candles/BTC-USDT?start=2024-01-02T00:00:00Z&end=2024-01-01T00:00:00Z",
                            headers=auth)
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_range"
    resp = await client.get("/api/market/candles/BTC-USDT?start=yesterday", headers=auth)
    assert resp.status_code == 422
    resp = await client.get("/api/market/volatility?symbol=BTC-USDT&window=5&atr_period=9", headers=auth)
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_window"
    resp = await client.get("/api/market/volatility?symbol=BTC-USDT&end=2001-01-01T00:00:00Z", headers=auth)
    assert resp.status_code == 422 and resp.json()["code"] == "insufficient_data"


async def test_volatility_matches_an_independent_calculation(client: httpx.AsyncClient, auth, market) -> None:  # type: ignore[no-untyped-def]
    rows = candle_rows(COINBASE_1H)
    await asyncio.to_thread(import_file, market.candles, COINBASE_1H, symbol="BTC/USDT", timeframe="1h")
    window, atr_period = 48, 14
    end = rows[400].time  # exclusive: the window is the 49 bars before it
    bars = rows[400 - window - 1:400]
    resp = await client.get("/api/market/volatility", params={
        "symbol": "BTC-USDT", "timeframe": "1h", "window": window, "atr_period": atr_period, "end": rfc3339(end)},
        headers=auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    o, h, lo, c = ([float(getattr(b, k)) for b in bars] for k in ("open", "high", "low", "close"))
    r = [math.log(c[i] / c[i - 1]) for i in range(1, len(c))]
    mean = sum(r) / len(r)
    cc = math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1))
    hl = [math.log(h[i] / lo[i]) ** 2 for i in range(1, len(bars))]
    co = [math.log(c[i] / o[i]) ** 2 for i in range(1, len(bars))]
    parkinson = math.sqrt(sum(hl) / (4 * len(hl) * math.log(2)))
    gk = math.sqrt(sum(0.5 * a - (2 * math.log(2) - 1) * b for a, b in zip(hl, co, strict=True)) / len(hl))
    atr = talib.ATR(np.array(h), np.array(lo), np.array(c), timeperiod=atr_period)[-1]
    assert body["observations"] == window and body["periods_per_year"] == 8760
    assert body["close_to_close"]["per_period"] == pytest.approx(cc, rel=1e-9)
    assert body["close_to_close"]["annualised"] == pytest.approx(cc * math.sqrt(8760), rel=1e-9)
    assert body["parkinson"]["per_period"] == pytest.approx(parkinson, rel=1e-9)
    assert body["garman_klass"]["per_period"] == pytest.approx(gk, rel=1e-9)
    assert body["atr"]["value"] == pytest.approx(atr, rel=1e-9)
    assert body["atr"]["percent_of_price"] == pytest.approx(100 * atr / c[-1], rel=1e-9)


async def test_volume_and_vwap_match_an_independent_calculation(client: httpx.AsyncClient, auth, market) -> None:  # type: ignore[no-untyped-def]
    rows = candle_rows(COINBASE_1H)
    await asyncio.to_thread(import_file, market.candles, COINBASE_1H, symbol="ETH/USDT", timeframe="1h")
    end = rows[200].time
    resp = await client.get("/api/market/volume", params={
        "symbol": "ETH/USDT", "timeframe": "1h", "window": 24, "end": rfc3339(end)}, headers=auth)
    body = resp.json()
    window = rows[176:200]
    assert [p["open_time"] for p in body["periods"]] == [r.timestamp for r in window]
    assert Decimal(body["total_volume"]) == sum(r.value("volume") for r in window)
    num = sum((r.value("high") + r.value("low") + r.value("close")) / 3 * r.value("volume") for r in window)
    assert abs(Decimal(body["vwap"]) - num / sum(r.value("volume") for r in window)) < Decimal("1e-9")
    avg = sum(r.value("volume") for r in window[:-1]) / 23
    assert body["relative_volume"] == pytest.approx(float(window[-1].value("volume") / avg), rel=1e-12)


async def test_correlations_and_gaps_on_real_1m_data(client: httpx.AsyncClient, auth, market) -> None:  # type: ignore[no-untyped-def]
    btc, eth = candle_rows(COINBASE_BTC_1M), candle_rows(COINBASE_ETH_1M)
    await asyncio.to_thread(import_file, market.candles, COINBASE_BTC_1M, symbol="BTC/USDT", timeframe="1m")
    await asyncio.to_thread(import_file, market.candles, COINBASE_ETH_1M, symbol="ETH/USDT", timeframe="1m")
    end = btc[-1].time + timedelta(minutes=1)
    window = 600
    resp = await client.get("/api/market/correlations", params={
        "symbols": "BTC-USDT,ETH/USDT", "timeframe": "1m", "window": window, "end": rfc3339(end)}, headers=auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()

    def returns(rows):  # type: ignore[no-untyped-def]
        rows = [r for r in rows if r.time < end][-(window + 1):]
        return {b.time: math.log(b.value("close") / a.value("close"))
                for a, b in zip(rows, rows[1:], strict=False) if b.time - a.time == timedelta(minutes=1)}

    rb, re_ = returns(btc), returns(eth)
    common = sorted(set(rb) & set(re_))
    x, y = [rb[t] for t in common], [re_[t] for t in common]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    expected = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / math.sqrt(
        sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert body["symbols"] == ["BTC/USDT", "ETH/USDT"] and body["observations"] == len(common)
    assert body["matrix"][0][1] == pytest.approx(expected, abs=1e-9) and body["matrix"][1][0] == body["matrix"][0][1]
    assert body["matrix"][0][0] == pytest.approx(1.0)
    # gaps: the minutes missing from the Coinbase file
    resp = await client.get("/api/market/gaps/BTC-USDT", params={
        "timeframe": "1m", "start": btc[0].timestamp, "end": rfc3339(end)}, headers=auth)
    gaps = resp.json()["items"]
    expected_missing = sum(int((b.time - a.time) / timedelta(minutes=1)) - 1
                           for a, b in zip(btc, btc[1:], strict=False))
    assert gaps and sum(g["missing_bars"] for g in gaps) == expected_missing
