"""What holdings are worth in one currency, from the market's last prices. Exact decimals.

An asset is valued through the market of the venue: directly (``ETH/USDT`` values ETH in
USDT), inversely (``USDT/BTC`` would value USDT in BTC), or not at all — an asset with no
market is reported with ``value=None`` and left out of the total and the weights, rather
than being guessed at. The valuation currency itself is cash, valued at 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from tradepilot.core.money import EXACT, MAX_SCALE

ZERO = Decimal(0)
_WEIGHT_PLACES = Decimal(10) ** -8  # weights are ratios for display: 8 places are plenty

PriceLookup = Callable[[str], Decimal | None]  # symbol -> last price, or None when unknown


@dataclass(frozen=True, slots=True)
class Holding:
    asset: str
    quantity: Decimal  # free + locked: reserved funds are still yours


@dataclass(frozen=True, slots=True)
class ValuedHolding:
    asset: str
    quantity: Decimal
    price: Decimal | None  # in the valuation currency
    value: Decimal | None
    weight: Decimal | None  # of the valued total


@dataclass(frozen=True, slots=True)
class Valuation:
    currency: str
    total: Decimal
    cash: Decimal  # the valuation currency held
    holdings: list[ValuedHolding]
    unpriced: list[str]  # assets held that no market values


def price_in(asset: str, currency: str, last_price: PriceLookup) -> Decimal | None:
    """One unit of ``asset`` in ``currency``, through a direct or an inverse market."""
    if asset == currency:
        return Decimal(1)
    direct = last_price(f"{asset}/{currency}")
    if direct is not None and direct > 0:
        return direct
    inverse = last_price(f"{currency}/{asset}")
    if inverse is not None and inverse > 0:
        return _round(EXACT.divide(Decimal(1), inverse))
    return None


def value_holdings(holdings: Iterable[Holding], currency: str, last_price: PriceLookup) -> Valuation:
    priced: list[tuple[Holding, Decimal | None, Decimal | None]] = []
    for holding in holdings:
        if holding.quantity == 0:
            continue
        price = price_in(holding.asset, currency, last_price)
        value = _round(EXACT.multiply(holding.quantity, price)) if price is not None else None
        priced.append((holding, price, value))
    total = ZERO
    for _, _, value in priced:
        if value is not None:
            total = EXACT.add(total, value)
    out = [ValuedHolding(asset=h.asset, quantity=h.quantity, price=p, value=v,
                         weight=None if v is None or total == 0 else
                         EXACT.divide(v, total).quantize(_WEIGHT_PLACES, context=EXACT))
           for h, p, v in sorted(priced, key=lambda row: (row[2] is None, -(row[2] or ZERO), row[0].asset))]
    cash = next((h.quantity for h, _, _ in priced if h.asset == currency), ZERO)
    return Valuation(currency=currency, total=total, cash=cash, holdings=out,
                     unpriced=[h.asset for h, p, _ in priced if p is None])


def holdings_from_balances(balances: Mapping[str, tuple[Decimal, Decimal]]) -> list[Holding]:
    """``{asset: (free, locked)}`` as holdings of their total."""
    return [Holding(asset=asset, quantity=EXACT.add(free, locked)) for asset, (free, locked) in balances.items()]


def _round(value: Decimal) -> Decimal:
    """Values keep the 18 places a money column holds (a quotient may have more)."""
    return value.quantize(Decimal(10) ** -MAX_SCALE, context=EXACT)
