"""Valuing holdings: direct and inverse markets, cash, unpriced assets, exact weights."""

from __future__ import annotations

from decimal import Decimal

from tradepilot.trading.valuation import Holding, price_in, value_holdings

D = Decimal
PRICES = {"BTC/USDT": D("65000.5"), "ETH/USDT": D("3000"), "USDT/EUR": D("0.8")}


def last(symbol: str) -> Decimal | None:
    return PRICES.get(symbol)


def test_prices_direct_inverse_cash_and_missing() -> None:
    assert price_in("BTC", "USDT", last) == D("65000.5")
    assert price_in("USDT", "USDT", last) == 1
    assert price_in("EUR", "USDT", last) == D("1.25")  # through USDT/EUR
    assert price_in("DOGE", "USDT", last) is None


def test_values_weights_and_unpriced_assets() -> None:
    valuation = value_holdings([Holding("USDT", D("1000.1")), Holding("BTC", D("0.1")), Holding("ETH", D("2")),
                                Holding("DOGE", D("500")), Holding("SOL", D("0"))], "USDT", last)
    assert valuation.total == D("1000.1") + D("6500.05") + D("6000")
    assert valuation.cash == D("1000.1")
    assert [h.asset for h in valuation.holdings] == ["BTC", "ETH", "USDT", "DOGE"]  # by value, unpriced last
    btc = valuation.holdings[0]
    assert btc.value == D("6500.05") and btc.weight == D("0.48147984")
    assert valuation.unpriced == ["DOGE"] and valuation.holdings[-1].value is None
    assert abs(sum(h.weight for h in valuation.holdings if h.weight is not None) - 1) < D("0.00000005")


def test_empty_and_cash_only() -> None:
    assert value_holdings([], "USDT", last).total == 0
    only_cash = value_holdings([Holding("USDT", D("0.000000000000000001"))], "USDT", last)
    assert only_cash.total == D("1E-18") and only_cash.holdings[0].weight == 1
