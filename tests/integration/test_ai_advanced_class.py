"""``AdvancedAI`` for callers that are not HTTP routes: each method answers from the module it
delegates to, and a different input series gives a different answer."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import bearer, new_user
from tests.integration.orders_support import Market, balances, default_account
from tests.pattern_series import series_with_patterns
from tests.unit.test_ai_strategy_generation import bars_from_moves, regime_series
from tradepilot.ai.advanced import AdvancedAI, MarketConditions, advanced_ai
from tradepilot.ai.direction_registry import direction_registry
from tradepilot.ai.direction_training import Target, train_direction
from tradepilot.core.errors import NotFound, ServiceUnavailable, Unprocessable
from tradepilot.identity.principal import AuthUser
from tradepilot.market.importer import import_file
from tradepilot.runtime import Runtime
from tradepilot.strategies.bars import Bars


def pattern_bars(seed: int) -> Bars:
    high, low, close, _ = series_with_patterns(12, seed)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return Bars.from_arrays("X/USDT", 1_600_000_000_000 + 3_600_000 * np.arange(close.size), open_,
                            np.maximum(high, open_), np.minimum(low, open_), close)


async def test_every_method_delegates_and_follows_its_input(runtime: Runtime) -> None:
    ai = advanced_ai(runtime)
    assert ai is advanced_ai(runtime) and isinstance(ai, AdvancedAI)

    patterns = await ai.pattern_recognition(pattern_bars(1), candlesticks_since=0)
    kinds = {p["kind"] for p in patterns["chart_patterns"]}
    assert len(kinds) >= 3 and patterns["candlesticks"]  # injected patterns found, TA-Lib's candlesticks too
    other = await ai.pattern_recognition(pattern_bars(2), candlesticks_since=0)
    assert other["chart_patterns"] != patterns["chart_patterns"] and other["candlesticks"] != patterns["candlesticks"]

    mood = await ai.sentiment_analysis(["Shares surge after earnings beat forecasts"],
                                       [{"text": "Bitcoin plunges after exchange hack, analysts downgrade outlook"}])
    assert mood["news"]["items"][0]["label"] == "bullish" and mood["social"]["items"][0]["label"] == "bearish"
    assert mood["overall"]["texts"] == 2
    flipped = await ai.sentiment_analysis(["Shares plunge after earnings miss forecasts"], [])
    assert flipped["news"]["score"] < mood["news"]["score"] and flipped["social"]["texts"] == 0

    trending = await ai.generate_trading_strategy(bars_from_moves(regime_series("trending", 3)))
    ranging = await ai.generate_trading_strategy(bars_from_moves(regime_series("ranging", 3)))
    assert (trending.family, ranging.family) == ("trend_following", "mean_reversion")

    space = {"fast": {"low": 5, "high": 20, "step": 5}, "slow": {"low": 30, "high": 90, "step": 30}}
    one = await ai.optimize_parameters(bars_from_moves(regime_series("trending", 4)), "ema_cross", space,
                                       sampler="grid", n_trials=12, windows=2)
    two = await ai.optimize_parameters(bars_from_moves(regime_series("trending", 5)), "ema_cross", space,
                                       sampler="grid", n_trials=12, windows=2)
    assert len(one["windows"]) == 2 and one["best_params"]["fast"] in (5, 10, 15, 20)
    assert one["windows"][0]["out_of_sample"]["start"] > one["windows"][0]["in_sample"]["end"]
    assert one["aggregate"] != two["aggregate"]

    with pytest.raises(ServiceUnavailable) as waiting:
        await ai.predict_price_movement("BTC/USDT")
    assert waiting.value.code == "model_not_ready"


async def test_portfolio_rebalancing_and_risk_go_through_the_portfolio_manager(runtime: Runtime,
                                                                              client: httpx.AsyncClient) -> None:
    user, _ = await new_user(client)
    principal = AuthUser(id=uuid.UUID(user["id"]), email=user["email"], role="user", plan="free",
                         scopes=frozenset({"read", "trade"}))
    ai = AdvancedAI(runtime)
    with pytest.raises(Unprocessable) as nothing:
        await ai.risk_assessment(principal.id)
    assert nothing.value.code == "no_holdings"  # a new account holds cash only
    with pytest.raises(ServiceUnavailable) as no_price:
        await ai.portfolio_rebalancing(principal, {"BTC": Decimal("0.5"), "USDT": Decimal("0.5")})
    assert no_price.value.code == "market_data_unavailable"  # planned from live prices, and there are none here
    with pytest.raises(NotFound):
        await ai.closed_bars(MarketConditions("NOPE/USDT"))


async def test_price_movement_comes_from_the_trained_model_and_follows_the_series(runtime: Runtime) -> None:
    store = runtime.services["market"].candles
    hourly = Path(__file__).parents[1] / "data" / "market" / "coinbase_btc_usd_1h"
    await asyncio.to_thread(import_file, store, hourly / "BTC_USD-1h-first720.csv", symbol="BTC/USDT",
                            timeframe="1h", derive=False)
    await asyncio.to_thread(import_file, store, hourly / "BTC_USD-1h-first3000.csv", symbol="ETH/USDT",
                            timeframe="1h", derive=False)  # other bars under another name: another series
    ai = advanced_ai(runtime)
    registry, now = direction_registry(runtime), runtime.clock.now()
    for symbol in ("BTC/USDT", "ETH/USDT"):
        await asyncio.to_thread(train_direction, store, registry, Target(symbol, "1h", 1), now)
    btc = await ai.predict_price_movement("BTC/USDT")
    eth = await ai.predict_price_movement("ETH-USDT")
    assert 0 < btc["probability_up"] < 1 and btc["model"]["test_bars"] > 0
    assert eth["symbol"] == "ETH/USDT" and eth["probability_up"] != btc["probability_up"]
    assert eth["scores"] != btc["scores"] and eth["interval"] != btc["interval"]


async def test_portfolio_rebalancing_plans_and_places_the_orders_of_the_target(runtime: Runtime,
                                                                              client: httpx.AsyncClient) -> None:
    user, tokens = await new_user(client)
    principal = AuthUser(id=uuid.UUID(user["id"]), email=user["email"], role="user", plan="free",
                         scopes=frozenset({"read", "trade"}))
    for symbol, (bid, ask) in {"BTC/USDT": ("59990", "60000"), "ETH/USDT": ("2999", "3000")}.items():
        market = Market(runtime, symbol)
        await market.book([(bid, "10")], [(ask, "10")])
        await market.trade(ask, "0.01")
    ai = AdvancedAI(runtime)
    target = {"BTC": Decimal("0.5"), "ETH": Decimal("0.2"), "USDT": Decimal("0.3")}

    planned = await ai.portfolio_rebalancing(principal, target)
    assert planned.outcomes is None and planned.plan.total_value == Decimal(10000)  # the paper account's cash
    orders = {o.symbol: o for o in planned.plan.orders}
    assert set(orders) == {"BTC/USDT", "ETH/USDT"} and all(o.side == "buy" for o in orders.values())
    assert orders["BTC/USDT"].estimated_price == Decimal(60000) and orders["ETH/USDT"].estimated_price == Decimal(3000)
    assert Decimal(4900) < orders["BTC/USDT"].estimated_notional <= Decimal(5000)  # half, less the fee
    assert Decimal(1950) < orders["ETH/USDT"].estimated_notional <= Decimal(2000)
    # the same plan as the portfolio manager's route, which it delegates to
    body = {"target_allocation": {k: str(v) for k, v in target.items()}}
    routed = (await client.post("/api/portfolio/rebalance", json=body, headers=bearer(tokens))).json()
    assert {o["symbol"]: Decimal(o["quantity"]) for o in routed["orders"]} == \
        {s: o.quantity for s, o in orders.items()}
    account = await default_account(client, tokens)
    assert set(await balances(client, tokens, account)) == {"USDT"}  # a dry run places nothing

    other = await ai.portfolio_rebalancing(principal, {"BTC": Decimal("0.1"), "USDT": Decimal("0.9")})
    assert [(o.symbol, o.side) for o in other.plan.orders] == [("BTC/USDT", "buy")]
    assert other.plan.orders[0].quantity < orders["BTC/USDT"].quantity  # another target, another plan

    done = await ai.portfolio_rebalancing(principal, target, dry_run=False)
    assert done.outcomes is not None and [o.status_code for o in done.outcomes] == [201, 201]
    assert all(o.order is not None and o.order.status == "filled" for o in done.outcomes)
    held = await balances(client, tokens, account)
    assert Decimal(held["BTC"][0]) == orders["BTC/USDT"].quantity and Decimal(held["ETH"][0]) == \
        orders["ETH/USDT"].quantity
    settled = await ai.portfolio_rebalancing(principal, target)
    assert not settled.plan.needs_rebalance and settled.plan.orders == []  # at the target now: nothing to do
