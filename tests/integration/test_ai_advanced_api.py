"""POST /api/ai/optimize-portfolio, /generate-strategy and /risk-assessment on real candles:
Bitstamp daily closes of BTC, ETH and LTC (imported as BTC/USDT, ETH/USDT, SOL/USDT, as
tests/integration/test_portfolio_optimize.py does) and Coinbase BTC/USD hourly bars; another
series gives another optimisation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.ai_series import write_tilted
from tests.helpers import bearer, new_user
from tests.integration.orders_support import Market, balances, default_account
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.market.importer import import_file
from tradepilot.runtime import Runtime

DATA = Path(__file__).parents[1] / "data" / "market"
FILES = {"BTC/USDT": "BTC_USD", "ETH/USDT": "ETH_USD", "SOL/USDT": "LTC_USD"}
SYMBOLS = list(FILES)
HOURLY = DATA / "coinbase_btc_usd_1h" / "BTC_USD-1h-first3000.csv"


@pytest.fixture
def clock() -> TestClock:
    return TestClock(datetime(2018, 11, 10, 12, 0, tzinfo=UTC))  # the day after the last daily close


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def candles(runtime: Runtime) -> None:
    store = runtime.services["market"].candles
    for symbol, name in FILES.items():
        await asyncio.to_thread(import_file, store, DATA / "bitstamp_multi_1d" / f"{name}-1d-2017-11-09_2018-11-09.csv",
                                symbol=symbol, timeframe="1d", derive=False)


@pytest.fixture
async def books(runtime: Runtime) -> None:
    """Books and last trades near the last daily closes, so the rebalance can price and fill."""
    for symbol, (bid, ask) in {"BTC/USDT": ("6399", "6400"), "ETH/USDT": ("211.9", "212"),
                               "SOL/USDT": ("50.9", "51")}.items():
        market = Market(runtime, symbol)
        await market.book([(bid, "1000")], [(ask, "1000")])
        await market.trade(ask, "0.01")


async def test_optimize_portfolio_plans_the_orders_and_places_them_only_when_asked(
        client: httpx.AsyncClient, runtime: Runtime, candles: None, books: None) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    account = await default_account(client, tokens)
    body = {"symbols": SYMBOLS, "method": "risk_parity", "lookback_days": 366, "cash_weight": "0.1"}
    plan = await client.post("/api/ai/optimize-portfolio", json=body, headers=auth)
    assert plan.status_code == 200, plan.text
    answer = plan.json()
    # the optimisation is POST /api/portfolio/optimize's, figure for figure
    direct = await client.post("/api/portfolio/optimize", json={k: body[k] for k in ("symbols", "method",
                                                                                   "lookback_days")}, headers=auth)
    assert answer["optimization"] == direct.json()
    target = {a: Decimal(w) for a, w in answer["target_allocation"].items()}
    assert sum(target.values()) == 1 and target["USDT"] == Decimal("0.1")
    assert target["BTC"] == Decimal(answer["optimization"]["target_allocation"]["BTC"]) * Decimal("0.9")
    rebalance = answer["rebalance"]
    assert rebalance["dry_run"] and not rebalance["executed"] and rebalance["account_id"] == account
    assert {o["symbol"] for o in rebalance["orders"]} == set(SYMBOLS) and all(o["side"] == "buy"
                                                                                for o in rebalance["orders"])
    assert all(o["order"] is None for o in rebalance["orders"])
    assert set(await balances(client, tokens, account)) == {"USDT"}  # nothing was placed

    # executing needs the trade scope
    key = (await client.post("/api/users/me/api-keys", json={"name": "reader", "scopes": ["read"]},
                             headers=auth)).json()["key"]
    refused = await client.post("/api/ai/optimize-portfolio", json={**body, "execute": True},
                                headers={"X-API-Key": key})
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    readable = await client.post("/api/ai/optimize-portfolio", json=body, headers={"X-API-Key": key})
    assert readable.status_code == 200

    headers = {**auth, "Idempotency-Key": "opt-1"}
    done = await client.post("/api/ai/optimize-portfolio", json={**body, "execute": True}, headers=headers)
    assert done.status_code == 200, done.text
    executed = done.json()["rebalance"]
    assert executed["executed"] and all(o["status_code"] == 201 and o["order"]["status"] == "filled"
                                        for o in executed["orders"])
    held = await balances(client, tokens, account)
    assert {"BTC", "ETH", "SOL", "USDT"} <= set(held)
    replay = await client.post("/api/ai/optimize-portfolio", json={**body, "execute": True}, headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json() == done.json()
    assert await balances(client, tokens, account) == held  # no second set of orders

    # the user's holdings now drive the risk assessment
    risk = await client.post("/api/ai/risk-assessment", json={"lookback_days": 366}, headers=auth)
    assert risk.status_code == 200, risk.text
    assessed = risk.json()
    assert assessed["source"] == "holdings" and set(assessed["weights"]) == set(SYMBOLS)
    assert sum(assessed["weights"].values()) == pytest.approx(1, abs=1e-5)
    assert 0 < assessed["value_at_risk"]["historical"] <= assessed["conditional_value_at_risk"]["historical"]
    assert assessed["observations"] == 365 and assessed["correlation"]["mean_pairwise"] > 0.3  # crypto moves together


async def test_optimize_portfolio_refuses_bad_bodies_and_other_users_accounts(
        client: httpx.AsyncClient, candles: None, books: None) -> None:
    _, tokens = await new_user(client)
    _, other = await new_user(client)
    theirs = await default_account(client, other)
    auth = bearer(tokens)
    body = {"symbols": SYMBOLS, "method": "hrp", "lookback_days": 366}
    not_mine = await client.post("/api/ai/optimize-portfolio", json={**body, "account_id": theirs}, headers=auth)
    assert not_mine.status_code == 404 and not_mine.json()["code"] == "account_not_found"
    unknown = await client.post("/api/ai/optimize-portfolio", json={**body, "symbols": ["BTC/USDT", "NOPE/USDT"]},
                                headers=auth)
    assert unknown.status_code == 404
    for bad in ({**body, "cash_weight": "1"}, {**body, "method": None}, {**body, "execute": "maybe"},
                {**body, "lookback_days": 5}, {**body, "surprise": 1}):
        answer = await client.post("/api/ai/optimize-portfolio", json=bad, headers=auth)
        assert answer.status_code == 422, (bad, answer.text)
    no_prices = await client.post("/api/ai/optimize-portfolio", json={**body, "symbols": ["BTC/USDT", "BNB/USDT"]},
                                  headers=auth)
    assert no_prices.status_code == 422 and no_prices.json()["code"] == "missing_prices"


async def test_risk_assessment_of_given_weights_and_of_nothing(client: httpx.AsyncClient, candles: None) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    nothing = await client.post("/api/ai/risk-assessment", json={}, headers=auth)
    assert nothing.status_code == 422 and nothing.json()["code"] == "no_holdings"
    one = await client.post("/api/ai/risk-assessment", json={"weights": {"BTC-USDT": 1.0}, "lookback_days": 366},
                            headers=auth)
    assert one.status_code == 200, one.text
    mixed = await client.post("/api/ai/risk-assessment", headers=auth, json={
        "weights": {"BTC/USDT": 0.5, "ETH/USDT": 0.5}, "lookback_days": 366, "level": 0.99})
    a, b = one.json(), mixed.json()
    assert a["source"] == "given" and a["concentration"]["herfindahl"] == 1.0
    assert b["concentration"]["effective_holdings"] == pytest.approx(2) and b["level"] == 0.99
    assert a["value_at_risk"] != b["value_at_risk"] and a["volatility"] != b["volatility"]
    unknown = await client.post("/api/ai/risk-assessment", json={"weights": {"NOPE/USDT": 1}}, headers=auth)
    assert unknown.status_code == 404
    for bad in ({"weights": {"BTC/USDT": 2}}, {"level": 1.5}, {"lookback_days": 1}):
        assert (await client.post("/api/ai/risk-assessment", json=bad, headers=auth)).status_code == 422, bad
    assert (await client.post("/api/ai/risk-assessment", json={})).status_code == 401


async def test_generate_strategy_on_real_hourly_bars(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    await asyncio.to_thread(import_file, runtime.services["market"].candles, HOURLY, symbol="BTC/USDT",
                            timeframe="1h", derive=False)
    answer = await client.post("/api/ai/generate-strategy", json={"symbol": "BTC-USDT", "bars": 3000}, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["symbol"] == "BTC/USDT" and body["regime"] in ("trending", "ranging", "volatile")
    assert body["family"] == {"trending": "trend_following", "ranging": "mean_reversion",
                              "volatile": "volatility_breakout"}[body["regime"]]
    assert body["fit_window"]["bars"] + body["test_window"]["bars"] == 3000
    assert body["fit_window"]["end"] < body["test_window"]["start"] == body["out_of_sample"]["start"]
    assert "buy_and_hold" in body["out_of_sample"] and body["candidates_tried"] > 1
    catalog = {s["name"] for s in (await client.get("/api/strategies/catalog", headers=auth)).json()["strategies"]}
    assert body["strategy"] in catalog
    saved = await client.post("/api/strategies", headers=auth, json={
        "name": "generated", "strategy": body["strategy"], "params": body["params"], "symbols": ["BTC/USDT"],
        "timeframe": "1h"})
    assert saved.status_code == 201, saved.text  # the configuration is usable as is

    fewer = await client.post("/api/ai/generate-strategy", json={"symbol": "BTC/USDT", "bars": 2000}, headers=auth)
    assert fewer.status_code == 200 and fewer.json()["out_of_sample"] != body["out_of_sample"]
    short = await client.post("/api/ai/generate-strategy", json={"symbol": "BTC/USDT", "timeframe": "4h"},
                              headers=auth)
    assert short.status_code == 422 and short.json()["code"] == "insufficient_data"
    unknown = await client.post("/api/ai/generate-strategy", json={"symbol": "NOPE/USDT"}, headers=auth)
    assert unknown.status_code == 404
    bad = await client.post("/api/ai/generate-strategy", json={"symbol": "BTC/USDT", "bars": 10}, headers=auth)
    assert bad.status_code == 422


async def test_optimize_portfolio_follows_the_series(client: httpx.AsyncClient, runtime: Runtime, candles: None,
                                                     books: None) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    body = {"symbols": SYMBOLS, "method": "max_sharpe", "lookback_days": 366, "cash_weight": "0.1"}
    before = await client.post("/api/ai/optimize-portfolio", json=body, headers=auth)
    assert before.status_code == 200, before.text
    # SOL/USDT's daily bars again, with a steady rise of 0.5% a day added: a better asset on paper
    daily = DATA / "bitstamp_multi_1d" / "LTC_USD-1d-2017-11-09_2018-11-09.csv"
    await write_tilted(runtime.services["market"].candles, daily, "SOL/USDT", "1d", per_bar=0.005)
    after = await client.post("/api/ai/optimize-portfolio", json=body, headers=auth)
    assert after.status_code == 200, after.text
    one, two = before.json(), after.json()
    assert two["optimization"]["expected_return"] > one["optimization"]["expected_return"]
    weight = lambda answer, asset: Decimal(answer["target_allocation"][asset])
    assert weight(two, "SOL") > weight(one, "SOL") and weight(two, "USDT") == weight(one, "USDT") == Decimal("0.1")
    assert two["optimization"]["target_allocation"] != one["optimization"]["target_allocation"]
    planned = lambda answer: {o["symbol"]: Decimal(o["quantity"]) for o in answer["rebalance"]["orders"]}
    assert planned(two)["SOL/USDT"] > planned(one)["SOL/USDT"]  # more SOL to buy at the same price
