"""POST /api/ai/generate-signals: from the direction model trained by its job on real candles
(503 ``model_not_ready`` before), and from a signal strategy's decision on constructed bars;
another candle series gives other signals from both."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import httpx
import pytest

from tests.integration.signals_support import HOUR, SIGNALS, T0, bars, key_user, store
from tests.integration.test_ai_predictions import BTC_3000, TARGET, _import, _train
from tradepilot.ai.direction_registry import direction_registry
from tradepilot.ai.market_candles import candles_of
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.jobs.models import JobStatus
from tradepilot.market.importer import read_bars
from tradepilot.market.types import Bar
from tradepilot.runtime import Runtime

GENERATE = "/api/ai/generate-signals"


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings.model_copy(update={"signals_tracker_seconds": 3600.0}), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def test_from_the_trained_direction_model(client: httpx.AsyncClient, runtime: Runtime) -> None:
    auth = await key_user(client)
    await asyncio.to_thread(_import, runtime.services["market"].candles)
    body = {"source": "model", "symbols": ["BTC-USDT"], "timeframe": "1h", "horizon": 1}
    before = await client.post(GENERATE, json=body, headers=auth)
    assert before.status_code == 503 and before.json()["code"] == "model_not_ready"
    assert int(before.headers["Retry-After"]) > 0
    assert (await client.get(SIGNALS, headers=auth)).json()["items"] == []  # nothing half-written

    job = await _train(runtime, {"targets": [TARGET]})
    assert job.status == JobStatus.SUCCEEDED, job.error
    answer = await client.post(GENERATE, json=body, headers=auth)
    assert answer.status_code == 201, answer.text
    [signal] = answer.json()["items"]
    prediction = (await client.get("/api/ai/predictions", params={"symbol": "BTC/USDT", "timeframe": "1h",
                                                                    "horizon": 1}, headers=auth)).json()
    p = prediction["probability_up"]
    details = signal["details"]
    assert signal["source"] == "model" and signal["status"] == "active" and signal["horizon"] == 1
    assert details["probability_up"] == pytest.approx(p, abs=1e-6)
    assert signal["side"] == ("buy" if p >= 0.5 else "sell")
    assert signal["strength"] == pytest.approx(abs(2 * p - 1), abs=1e-6)
    # the model's measured out-of-sample scores beside its baselines', as the predictions give them
    assert details["scores"] == prediction["scores"] and details["baselines"] == prediction["baselines"]
    assert details["beats_baselines"] == prediction["beats_baselines"]
    assert f"P(up) {p:.3f}" in signal["reason"]
    # stop and target from the forecast's 10–90 % interval around the last close
    last = prediction["last_close"]
    stop, target = float(signal["stop_loss"]), float(signal["take_profit"])
    low, high = prediction["interval"]["low"], prediction["interval"]["high"]
    if signal["side"] == "buy":
        assert stop == pytest.approx(last * (1 + low), abs=0.02) and target == pytest.approx(last * (1 + high), abs=0.02)
    else:
        assert stop == pytest.approx(last * (1 + high), abs=0.02) and target == pytest.approx(last * (1 + low), abs=0.02)
    stored = (await client.get(f"{SIGNALS}/{signal['id']}", headers=auth)).json()
    assert stored["details"] == details

    picky = await client.post(GENERATE, json={**body, "min_strength": 1.0}, headers=auth)
    assert picky.status_code == 201 and picky.json()["items"] == []
    assert picky.json()["skipped"][0]["reason"].startswith("below min_strength")


async def test_from_a_strategy_on_the_latest_bars(client: httpx.AsyncClient, runtime: Runtime) -> None:
    auth = await key_user(client)
    # closes 10, 9, ... 5, then 10: SMA(2) crosses above SMA(3) on the last closed bar
    closes = ["10", "9", "8", "7", "6", "5", "10"]
    start = T0 - len(closes) * HOUR
    await store(runtime, bars([(c, str(int(c) + 1), str(int(c) - 1), c) for c in closes], start=start))
    await store(runtime, bars([(c, str(int(c) + 1), str(int(c) - 1), c) for c in reversed(closes)], "ETH/USDT",
                              start=start))
    body = {"source": "strategy", "strategy": "sma_cross", "params": {"fast": 2, "slow": 3, "stop_loss": 0.1,
                                                                       "take_profit": 0.2},
            "symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1h", "horizon": 5, "expires_in_bars": 2}
    answer = await client.post(GENERATE, json=body, headers=auth)
    assert answer.status_code == 201, answer.text
    result = answer.json()
    [signal] = result["items"]
    assert (signal["symbol"], signal["side"], signal["source"], signal["strength"]) == ("BTC/USDT", "buy",
                                                                                       "strategy", 1.0)
    assert (signal["stop_loss"], signal["take_profit"]) == ("9", "12")  # 10 × (1 − 0.1), 10 × (1 + 0.2)
    assert signal["expires_at"].startswith((T0 + timedelta(hours=2)).isoformat()[:19])
    assert "sma_cross" in signal["reason"] and signal["details"]["rule"] == "entry"
    assert signal["details"]["params"]["fast"] == 2
    # ETH (10, 5, 6, ... 10): SMA(2) stays above SMA(3) on the last two bars: no crossing, no signal
    assert [s["symbol"] for s in result["skipped"]] == ["ETH/USDT"]
    assert result["skipped"][0]["reason"].startswith("no signal")

    for bad, code in (({"strategy": "nope"}, "unknown_strategy"),
                      ({"params": {"fast": 5, "slow": 3}}, "invalid_strategy_params"),
                      ({"strategy": "grid", "params": {"lower": 5, "upper": 15}}, "strategy_not_signal_based")):
        refused = await client.post(GENERATE, json={**body, **bad}, headers=auth)
        assert refused.status_code == 422 and refused.json()["code"] == code, refused.text
    missing = await client.post(GENERATE, json={**body, "strategy": None}, headers=auth)
    assert missing.status_code == 422
    unknown = await client.post(GENERATE, json={**body, "symbols": ["NOPE/USDT"]}, headers=auth)
    assert unknown.status_code == 404
    assert len((await client.get(SIGNALS, headers=auth)).json()["items"]) == 1


def _retimed(source: list[Bar], onto: list[Bar]) -> list[Bar]:
    """``source``'s prices on ``onto``'s open times: another series in the same place."""
    return [dataclasses.replace(b, open_time=t.open_time) for b, t in zip(source, onto, strict=True)]


async def test_another_candle_series_gives_other_signals(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """The same model, the same strategy, the same request: other candles, other signals."""
    auth = await key_user(client)
    await asyncio.to_thread(_import, runtime.services["market"].candles)
    job = await _train(runtime, {"targets": [TARGET]})
    assert job.status == JobStatus.SUCCEEDED, job.error
    body = {"source": "model", "symbols": ["BTC/USDT"], "timeframe": "1h", "horizon": 1}
    first = await client.post(GENERATE, json=body, headers=auth)
    assert first.status_code == 201, first.text

    # the last 200 bars (all the forecast reads) replaced by real bars of another month of the file
    rows = read_bars(BTC_3000, "BTC/USDT", "1h")
    other = _retimed(rows[1000:1200], rows[-200:])
    await store(runtime, other)
    second = await client.post(GENERATE, json=body, headers=auth)
    assert second.status_code == 201, second.text
    [a], [b] = first.json()["items"], second.json()["items"]
    assert a["details"]["as_of"] == b["details"]["as_of"]  # the same bar, other prices
    assert b["details"]["last_close"] == float(rows[1199].close) != a["details"]["last_close"]
    assert b["details"]["probability_up"] != a["details"]["probability_up"]
    assert (b["stop_loss"], b["take_profit"], b["reason"]) != (a["stop_loss"], a["take_profit"], a["reason"])
    registry = direction_registry(runtime)
    model = registry.load(registry.key(runtime.services["market"].venue, "BTC/USDT", "1h", 1))
    assert model is not None
    assert b["details"]["probability_up"] == pytest.approx(model.predict(candles_of(other)).probability_up, abs=1e-6)

    # a strategy: SMA(2) crosses above SMA(3) on the last bar of one series, below on the other
    strategy = {"source": "strategy", "strategy": "sma_cross", "params": {"fast": 2, "slow": 3},
                "symbols": ["ETH/USDT"], "timeframe": "1h"}
    answers = []
    for closes in (["10", "9", "8", "7", "6", "5", "10"], ["5", "6", "7", "8", "9", "10", "5"]):
        start = T0 - len(closes) * HOUR
        await store(runtime, bars([(c, str(int(c) + 1), str(int(c) - 1), c) for c in closes], "ETH/USDT", start))
        answer = await client.post(GENERATE, json=strategy, headers=auth)
        assert answer.status_code == 201, answer.text
        [signal] = answer.json()["items"]
        answers.append(signal)
    buy, sell = answers
    assert (buy["side"], buy["details"]["rule"], buy["details"]["last_close"]) == ("buy", "entry", 10.0)
    assert (sell["side"], sell["details"]["rule"], sell["details"]["last_close"]) == ("sell", "exit", 5.0)
    assert buy["reason"] != sell["reason"]
