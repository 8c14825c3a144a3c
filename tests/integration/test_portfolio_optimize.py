"""POST /api/portfolio/optimize on candles imported into the candle store: real Bitstamp daily
closes (tests/data/market/bitstamp_multi_1d/) of BTC, ETH and LTC, imported as the simulated
venue's BTC/USDT, ETH/USDT and SOL/USDT (LTC is not listed there; only the prices matter)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.helpers import bearer, new_user
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.market.importer import import_file
from tradepilot.runtime import Runtime

DATA = Path(__file__).parents[1] / "data" / "market" / "bitstamp_multi_1d"
FILES = {"BTC/USDT": "BTC_USD", "ETH/USDT": "ETH_USD", "SOL/USDT": "LTC_USD"}
OPTIMIZE = "/api/portfolio/optimize"
SYMBOLS = list(FILES)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(datetime(2018, 11, 10, 12, 0, tzinfo=UTC))  # the day after the last close


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def candles(runtime: Runtime) -> None:
    store = runtime.services["market"].candles
    for symbol, name in FILES.items():
        await asyncio.to_thread(import_file, store, DATA / f"{name}-1d-2017-11-09_2018-11-09.csv", symbol=symbol,
                                timeframe="1d", derive=False)


@pytest.mark.parametrize("method", ["max_sharpe", "min_volatility", "risk_parity", "hrp"])
async def test_optimize_returns_bounded_weights_summing_to_one(client: httpx.AsyncClient, candles: None,
                                                               method: str) -> None:
    _, tokens = await new_user(client)
    answer = await client.post(OPTIMIZE, json={"symbols": SYMBOLS, "method": method, "lookback_days": 366,
                                               "bounds": {"min": 0.1, "max": 0.6}}, headers=bearer(tokens))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    weights = body["weights"]
    assert set(weights) == set(SYMBOLS) and sum(weights.values()) == pytest.approx(1, abs=1e-12)
    assert all(0.1 - 1e-12 <= w <= 0.6 + 1e-12 for w in weights.values())
    assert body["method"] == method and body["bounds"] == {s: [0.1, 0.6] for s in SYMBOLS}
    assert body["inputs"] == {"symbols": SYMBOLS, "timeframe": "1d", "start": "2017-11-09T00:00:00Z",
                              "end": "2018-11-09T00:00:00Z", "observations": 365, "lookback_days": 366}
    assert body["conventions"]["annualization"] == 365 and body["conventions"]["risk_free_rate"] == 0
    assert body["sharpe_ratio"] == pytest.approx(body["expected_return"] / body["volatility"])
    allocation = body["target_allocation"]
    assert set(allocation) == {"BTC", "ETH", "SOL"} and sum(Decimal(w) for w in allocation.values()) == 1


async def test_risk_tolerance_maps_to_a_method_and_efficient_return_meets_its_target(
        client: httpx.AsyncClient, candles: None) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    for tolerance, method in (("conservative", "min_volatility"), ("moderate", "risk_parity"),
                              ("aggressive", "max_sharpe")):
        body = (await client.post(OPTIMIZE, json={"symbols": SYMBOLS, "risk_tolerance": tolerance},
                                  headers=auth)).json()
        assert body["method"] == method and body["risk_tolerance"] == tolerance
    target = (await client.post(OPTIMIZE, json={"symbols": SYMBOLS, "method": "efficient_return",
                                                "target_return": 0.45,
                                                "bounds": {"SOL/USDT": {"max": 0.5}}}, headers=auth)).json()
    assert target["expected_return"] >= 0.45 - 1e-8 and target["weights"]["SOL/USDT"] <= 0.5 + 1e-12


async def test_optimize_errors(client: httpx.AsyncClient, candles: None) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)

    async def code(body: dict) -> tuple[int, str]:
        answer = await client.post(OPTIMIZE, json=body, headers=auth)
        return answer.status_code, answer.json()["code"]

    assert await code({"symbols": ["BTC/USDT", "DOGE/USDT"], "method": "hrp"}) == (404, "unknown_symbol")
    assert await code({"symbols": ["BTC/USDT", "BNB/USDT"], "method": "hrp"}) == (422, "missing_prices")
    assert await code({"symbols": SYMBOLS, "method": "hrp", "bounds": {"min": 0.4, "max": 1}}) == \
        (422, "infeasible_bounds")
    assert await code({"symbols": SYMBOLS, "method": "efficient_return", "target_return": 9}) == \
        (422, "target_return_unreachable")
    assert await code({"symbols": SYMBOLS, "method": "max_sharpe", "risk_free_rate": 0.99}) == \
        (422, "no_positive_excess_return")
    assert await code({"symbols": SYMBOLS, "method": "hrp", "risk_tolerance": "moderate"}) == \
        (422, "validation_error")
    assert await code({"symbols": SYMBOLS, "method": "efficient_return"}) == (422, "validation_error")


async def test_too_little_history_is_refused(client: httpx.AsyncClient, candles: None, clock: TestClock) -> None:
    clock.advance(-345 * 24 * 3600)  # now 2017-11-30: the closes start on 2017-11-09
    _, tokens = await new_user(client)
    answer = await client.post(OPTIMIZE, json={"symbols": SYMBOLS, "method": "hrp", "lookback_days": 60},
                               headers=bearer(tokens))
    assert answer.status_code == 422 and answer.json()["code"] == "insufficient_history", answer.text
    assert answer.json()["available"] == 20 and answer.json()["required"] == 30
