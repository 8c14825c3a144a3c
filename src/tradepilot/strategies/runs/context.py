"""The live side of :class:`StrategyContext`: what a strategy reads and asks for on one bar.

The strategy's callbacks are synchronous, the trading service is not: the runner reads what
the context shows (the bars window, the account's free cash and positions, the run's open
orders) *before* calling the strategy, and the context only collects what the strategy asks
for (orders, cancels). The runner then places them through the trading service in one fenced
transaction. Order ids the strategy sees are the run's own numbers (1, 2, 3…), mapped to the
platform's order ids in the run's persisted state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from tradepilot.core.money import EXACT
from tradepilot.market.types import Instrument
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import OrderRequest
from tradepilot.trading.order_schemas import OrderCreate

QUOTE_DECIMALS = Decimal("0.00000001")


class UnsupportedOrder(ValueError):
    """An order a live run cannot place as asked (the run fails with this message)."""


@dataclass
class LiveContext:
    symbols: Sequence[str]
    windows: dict[str, Bars]
    positions: dict[str, float]
    free_cash: float
    open_orders: dict[str, set[str]]  # symbol → types of the run's open orders
    next_id: int
    submitted: list[tuple[int, OrderRequest]] = field(default_factory=list)
    cancels: list[int] = field(default_factory=list)

    def bars(self, symbol: str) -> Bars:
        return self.windows[symbol]

    def position(self, symbol: str) -> float:
        return self.positions.get(symbol, 0.0)

    @property
    def cash(self) -> float:
        return self.free_cash

    def submit(self, order: OrderRequest) -> int:
        order_id = self.next_id
        self.next_id += 1
        self.submitted.append((order_id, order))
        return order_id

    def cancel(self, order_id: int) -> bool:
        self.cancels.append(order_id)
        return True

    def has_open_orders(self, symbol: str) -> bool:
        return bool(self.open_orders.get(symbol)) or any(o.symbol == symbol for _, o in self.submitted)

    def has_pending_market_order(self, symbol: str) -> bool:
        return "market" in self.open_orders.get(symbol, set()) or any(
            o.symbol == symbol and o.type == "market" for _, o in self.submitted)


def _floor(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return EXACT.divide(value, step).quantize(Decimal(1), rounding=ROUND_FLOOR, context=EXACT) * step


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def order_body(request: OrderRequest, *, instrument: Instrument, account_id: object, client_order_id: str,
               reference_price: Decimal, free_cash: Decimal, position: Decimal, taker_fee: Decimal,
               market_buy_margin: Decimal | None = None) -> OrderCreate | None:
    """The trading service's order for a strategy's request; None when it sizes to nothing
    (a sale with nothing held, a buy with no cash). Sizes are floored to the instrument's step.

    ``market_buy_margin`` (live accounts, which take no ``quote_quantity``): a market buy sized
    by cash is sized in base quantity at the last close, leaving that fraction of the spend
    for the exchange's book moving (the reservation's own slippage buffer)."""
    if any(x is not None for x in (request.stop_loss, request.take_profit, request.trailing_stop)):
        raise UnsupportedOrder("protective exits (stop_loss, take_profit, trailing_stop) on an order are not "
                               "supported in live runs yet")
    price = None if request.price is None else _floor(_dec(request.price), instrument.tick_size)
    stop = None if request.stop_price is None else _floor(_dec(request.stop_price), instrument.tick_size)
    common: dict[str, Any] = {"symbol": instrument.symbol, "side": request.side, "type": request.type,
                              "account_id": account_id, "client_order_id": client_order_id, "price": price,
                              "stop_price": stop}
    if request.quantity is not None:
        quantity = _floor(_dec(request.quantity), instrument.step_size)
        if request.side == "sell":
            quantity = min(quantity, _floor(position, instrument.step_size))
        return OrderCreate(**common, quantity=quantity) if quantity > 0 else None  # type: ignore[arg-type]
    if request.side == "sell":  # the whole position
        quantity = _floor(position, instrument.step_size)
        return OrderCreate(**common, quantity=quantity) if quantity > 0 else None  # type: ignore[arg-type]
    spend = free_cash * _dec(request.fraction) if request.fraction is not None else (
        _dec(request.notional) if request.notional is not None else None)
    if spend is None:
        raise UnsupportedOrder("a buy needs quantity, fraction or notional")
    spend = min(spend, free_cash)
    if request.type == "market" and market_buy_margin is None:  # spend it, the fee included
        quote = EXACT.divide(spend, 1 + max(taker_fee, Decimal(0))).quantize(QUOTE_DECIMALS, rounding=ROUND_FLOOR)
        return OrderCreate(**common, quote_quantity=quote) if quote > 0 else None  # type: ignore[arg-type]
    level = price or stop or reference_price
    if level <= 0:
        return None  # no price to size it by yet
    margin = 1 + (market_buy_margin if request.type == "market" and market_buy_margin is not None else Decimal(0))
    quantity = _floor(EXACT.divide(spend, level * (1 + max(taker_fee, Decimal(0))) * margin), instrument.step_size)
    return OrderCreate(**common, quantity=quantity) if quantity > 0 else None  # type: ignore[arg-type]
