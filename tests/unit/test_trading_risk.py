"""Pre-trade risk checks, one refusal each, and the orders that pass."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from tradepilot.trading.risk import (AccountSnapshot, MarketSnapshot, OrderIntent, RiskLimits, RiskRejected,
                                     check_pre_trade)

D = Decimal
ACCOUNT = AccountSnapshot(free_quote=D("10000"), free_base=D("0.5"), position=D("0.5"), open_orders=3,
                          realised_today=D("-20"))
MARKET = MarketSnapshot(last=D("100"), best_bid=D("99.9"), best_ask=D("100.1"))
LIMITS = RiskLimits(max_open_orders=50, max_order_notional=D("5000"), max_position_notional=D("8000"),
                    daily_loss_limit=D("500"))
BUY = OrderIntent(side="buy", type="limit", quantity=D("10"), limit_price=D("100"))
SELL = OrderIntent(side="sell", type="market", quantity=D("0.5"))


def refused(order: OrderIntent = BUY, account: AccountSnapshot = ACCOUNT, market: MarketSnapshot = MARKET,
            limits: RiskLimits = LIMITS, cost: Decimal = D("1001")) -> RiskRejected:
    with pytest.raises(RiskRejected) as caught:
        check_pre_trade(order, account, market, limits, cost=cost)
    assert caught.value.status == 422
    return caught.value


def test_orders_within_every_limit_pass() -> None:
    check_pre_trade(BUY, ACCOUNT, MARKET, LIMITS, cost=D("1001"))
    check_pre_trade(SELL, ACCOUNT, MARKET, LIMITS, cost=D("0"))
    check_pre_trade(replace(SELL, reduce_only=True), ACCOUNT, MARKET, LIMITS, cost=D("0"))


def test_buying_power_is_checked_to_the_last_digit() -> None:
    check_pre_trade(BUY, ACCOUNT, MARKET, replace(LIMITS, max_order_notional=None, max_position_notional=None),
                    cost=D("10000"))
    error = refused(cost=D("10000.000000000000000001"), limits=replace(LIMITS, max_order_notional=None,
                                                                       max_position_notional=None))
    assert error.code == "insufficient_funds" and error.extra["available"] == "10000"


def test_no_shorts_on_spot() -> None:
    error = refused(replace(SELL, quantity=D("0.50001")), cost=D("0"))
    assert error.code == "insufficient_position" and error.extra == {"requested": "0.50001", "available": "0.5"}


@pytest.mark.parametrize(("change", "code"), [
    ({"account": replace(ACCOUNT, trading_halted=True)}, "trading_halted"),
    ({"account": replace(ACCOUNT, realised_today=D("-500"))}, "daily_loss_limit_reached"),
    ({"account": replace(ACCOUNT, open_orders=50)}, "open_orders_limit"),
    ({"cost": D("5000.01")}, "order_notional_above_limit"),
    ({"order": replace(BUY, quantity=D("80"), limit_price=D("100")), "cost": D("4000"),
      "limits": replace(LIMITS, max_order_notional=None)}, "position_above_limit"),
    ({"order": replace(BUY, limit_price=D("110.01"))}, "price_outside_collar"),
    ({"order": OrderIntent(side="sell", type="limit", quantity=D("0.1"), limit_price=D("89.99"))},
     "price_outside_collar"),
    ({"order": replace(BUY, reduce_only=True)}, "reduce_only_would_increase"),
])
def test_each_limit_refuses_with_its_code(change: dict, code: str) -> None:
    assert refused(**change).code == code


def test_the_collar_allows_prices_away_from_the_market_but_not_through_it() -> None:
    # a buy far below the market or a sell far above it is a patient order, not a fat finger
    check_pre_trade(replace(BUY, limit_price=D("50")), ACCOUNT, MARKET, LIMITS, cost=D("500"))
    check_pre_trade(OrderIntent(side="sell", type="limit", quantity=D("0.1"), limit_price=D("500")),
                    ACCOUNT, MARKET, LIMITS, cost=D("0"))
    check_pre_trade(replace(BUY, limit_price=D("110")), ACCOUNT, MARKET, LIMITS, cost=D("1101"))


def test_a_loss_below_the_daily_limit_still_trades_and_gains_never_block() -> None:
    check_pre_trade(BUY, replace(ACCOUNT, realised_today=D("-499.99")), MARKET, LIMITS, cost=D("1001"))
    check_pre_trade(BUY, replace(ACCOUNT, realised_today=D("100000")), MARKET, LIMITS, cost=D("1001"))
