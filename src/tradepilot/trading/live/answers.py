"""The exchange's answers, checked at the boundary before anything is written.

ccxt is told to keep numbers as the strings the exchange sent (``exchange.number = str``), so
they become exact ``Decimal`` here, never via a float. An answer that cannot be true — a
number that is NaN, infinite, negative, beyond ``Numeric(36,18)``, a fill larger than the
order, a missing field — raises :class:`MalformedAnswer`: a lie from the venue (or a broken
proxy) must never reach the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tradepilot.core.money import EXACT, PrecisionLossError, check_fits
from tradepilot.trading.live.errors import MalformedAnswer

ZERO = Decimal(0)

# ccxt's unified order statuses → ours (an "open" order is new or partly filled, by its fills)
_STATUS = {"closed": "filled", "canceled": "canceled", "expired": "expired", "rejected": "rejected"}


@dataclass(frozen=True, slots=True)
class VenueTrade:
    """One execution of an order on the exchange."""

    id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str | None
    maker: bool
    order_id: str | None = None  # the exchange's id of the order it executed


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the exchange reports it (exact amounts, our status names)."""

    exchange_id: str
    client_order_id: str | None
    status: str  # new | partially_filled | filled | canceled | expired | rejected
    quantity: Decimal
    filled: Decimal
    trades: tuple[VenueTrade, ...]  # may be empty: fetched separately (myTrades)
    # what reconciliation needs to record an order it did not place (``source: external``)
    symbol: str | None = None
    side: str | None = None  # buy | sell
    type: str | None = None  # market | limit (other types are recorded under their ccxt name)
    price: Decimal | None = None
    time_in_force: str | None = None  # gtc | ioc | fok

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")


def amount(value: Any, what: str, *, positive: bool = False) -> Decimal:
    """An exact, finite, non-negative amount that fits a money column (``positive``: > 0)."""
    if value is None or isinstance(value, (bool, float)):
        raise MalformedAnswer(f"the exchange sent no usable {what}")
    try:
        number = Decimal(str(value).strip())
        number = check_fits(number)
    except (InvalidOperation, PrecisionLossError):
        raise MalformedAnswer(f"the exchange sent an impossible {what}: {str(value)[:40]!r}") from None
    if number < 0 or (positive and number == 0):
        raise MalformedAnswer(f"the exchange sent a {'non-positive' if positive else 'negative'} {what}")
    return number


def text(value: Any, what: str) -> str:
    if value is None or not str(value).strip():
        raise MalformedAnswer(f"the exchange sent no {what}")
    return str(value).strip()[:64]


def parse_trade(raw: Mapping[str, Any]) -> VenueTrade:
    fee = raw.get("fee") or {}
    fee_cost = fee.get("cost")
    return VenueTrade(id=text(raw.get("id"), "trade id"), price=amount(raw.get("price"), "trade price", positive=True),
                      quantity=amount(raw.get("amount"), "trade quantity", positive=True),
                      fee=ZERO if fee_cost is None else amount(fee_cost, "fee"),
                      fee_asset=None if fee_cost is None else text(fee.get("currency"), "fee currency"),
                      maker=raw.get("takerOrMaker") == "maker",
                      order_id=None if raw.get("order") is None else str(raw["order"]))


def parse_order(raw: Mapping[str, Any]) -> VenueOrder:
    """A ccxt unified order → :class:`VenueOrder`, or :class:`MalformedAnswer`."""
    if not isinstance(raw, Mapping):
        raise MalformedAnswer("the exchange's order answer is not an object")
    quantity = amount(raw.get("amount"), "order quantity", positive=True)
    filled = amount(raw.get("filled"), "filled quantity")
    if filled > quantity:
        raise MalformedAnswer("the exchange reports more filled than ordered")
    for optional in ("cost", "average", "price"):  # not used, but a lie in them taints the whole answer
        if raw.get(optional) is not None:
            amount(raw[optional], f"order {optional}")
    unified = raw.get("status")
    if unified not in ("open", *_STATUS):
        raise MalformedAnswer(f"the exchange sent an unknown order status {str(unified)[:20]!r}")
    status = _STATUS.get(unified) or ("partially_filled" if filled > 0 else "new")
    if status == "filled" and filled != quantity:
        raise MalformedAnswer("the exchange reports a filled order with a quantity left")
    trades = tuple(parse_trade(t) for t in raw.get("trades") or ())
    if trades:
        total = ZERO
        for trade in trades:
            total = EXACT.add(total, trade.quantity)
        if total != filled:
            raise MalformedAnswer("the order's fills do not add up to its filled quantity")
    client = raw.get("clientOrderId")
    side = raw.get("side")
    if side is not None and side not in ("buy", "sell"):
        raise MalformedAnswer(f"the exchange sent an unknown order side {str(side)[:20]!r}")
    price = None if raw.get("price") is None else amount(raw["price"], "order price")
    tif = raw.get("timeInForce")
    return VenueOrder(exchange_id=text(raw.get("id"), "order id"),
                      client_order_id=None if client is None else str(client), status=status,
                      quantity=quantity, filled=filled, trades=trades,
                      symbol=None if raw.get("symbol") is None else text(raw["symbol"], "symbol"), side=side,
                      type=None if raw.get("type") is None else text(raw["type"], "order type").lower()[:24],
                      price=price or None,  # a market order's price is 0 on Binance
                      time_in_force=None if tif is None else str(tif).lower()[:8])


def parse_balances(raw: Mapping[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    """ccxt's balance structure → ``{asset: (free, locked)}`` of the assets held (non-zero)."""
    free, used = raw.get("free"), raw.get("used")
    if not isinstance(free, Mapping) or not isinstance(used, Mapping):
        raise MalformedAnswer("the exchange's balance answer has no free/used amounts")
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for asset in sorted(set(free) | set(used)):
        name = text(asset, "asset").upper()
        f, u = amount(free.get(asset, "0"), f"{name} free balance"), amount(used.get(asset, "0"), f"{name} locked balance")
        if f or u:
            out[name] = (f, u)
    return out
