"""The event-driven backtest: a simulated broker that runs any strategy bar by bar.

It implements :class:`~tradepilot.strategies.base.StrategyContext`, so an
:class:`EventStrategy` trades here exactly as it would through the trading service. Per bar:
(1) the open orders are matched against the bar (``fills.py``: fills at the open first, then
inside the bar), (2) trailing stops follow the bar's high, (3) the strategy's ``on_bar`` sees
the closed bar and may place orders, which arrive at the next bar's open.

One cash balance serves every symbol. Spot: a buy never spends more than the cash (its size is
cut to what the cash pays, fee included), a sell never exceeds the position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from tradepilot.strategies.backtest.config import BacktestConfig
from tradepilot.strategies.backtest.fills import INTRABAR, Candidate, Fill, SimOrder, evaluate, intrabar_key
from tradepilot.strategies.base import EventStrategy, FillEvent, OrderRequest
from tradepilot.strategies.bars import Bars

Progress = Callable[[float], None]
_CHUNK = 65_536
_EXIT_ROLES = ("stop_loss", "take_profit", "trailing_stop")


class Broker:
    """Simulated account and venue for one backtest (also the strategy's context)."""

    def __init__(self, bars: Sequence[Bars], config: BacktestConfig) -> None:
        self.config = config
        self._bars = {b.symbol: b for b in bars}
        self.symbols = tuple(self._bars)
        self._ohlcv = {b.symbol: (b.open.tolist(), b.high.tolist(), b.low.tolist(), b.volume.tolist(), b.time)
                       for b in bars}
        self._cash = config.initial_cash
        self._positions = dict.fromkeys(self.symbols, 0.0)
        self._used_volume: dict[str, float] = dict.fromkeys(self.symbols, 0.0)
        self._open: list[SimOrder] = []
        self._pending_market = dict.fromkeys(self.symbols, 0)
        self.orders: list[SimOrder] = []
        self.fills: list[Fill] = []
        self._next_id = 1
        self._index = -1
        self._strategy: EventStrategy | None = None
        self._matching = False

    # -- StrategyContext ----------------------------------------------------------------

    def bars(self, symbol: str) -> Bars:
        return self._bars[symbol]

    def position(self, symbol: str) -> float:
        return self._positions[symbol]

    @property
    def cash(self) -> float:
        return self._cash

    def has_open_orders(self, symbol: str) -> bool:
        return any(o.symbol == symbol for o in self._open)

    def has_pending_market_order(self, symbol: str) -> bool:
        return self._pending_market[symbol] > 0

    def submit(self, order: OrderRequest) -> int:
        if order.symbol not in self._bars:
            raise ValueError(f"unknown symbol {order.symbol!r}; this backtest trades {', '.join(self.symbols)}")
        kind = order.type
        if kind in ("limit", "stop_limit") and order.price is None:
            raise ValueError(f"a {kind} order needs a price")
        if kind in ("stop", "stop_limit") and order.stop_price is None:
            raise ValueError(f"a {kind} order needs a stop_price")
        if order.side == "buy" and (order.quantity, order.fraction, order.notional).count(None) != 2:
            raise ValueError("a buy needs exactly one of quantity, fraction, notional")
        return self._add(SimOrder(self._next_id, order.symbol, order.side, kind, self._index, order.quantity,
                                  order.fraction, order.notional, order.price, order.stop_price,
                                  stop_loss=order.stop_loss, take_profit=order.take_profit,
                                  trailing_stop=order.trailing_stop, tag=order.tag, arrives=not self._matching)).id

    def cancel(self, order_id: int) -> bool:
        for o in self._open:
            if o.id == order_id:
                self._close(o, "canceled", "canceled_by_strategy")
                return True
        return False

    # -- the run ------------------------------------------------------------------------

    def run(self, strategy: EventStrategy, progress: Progress | None = None) -> None:
        self._strategy = strategy
        strategy.on_start(self)
        n = len(next(iter(self._bars.values())))
        on_bar = strategy.on_bar
        for start in range(0, n, _CHUNK):
            for i in range(start, min(start + _CHUNK, n)):
                if self._open:
                    self._match(i)
                self._index = i
                on_bar(self, i)
            if progress is not None:
                progress(min(start + _CHUNK, n) / n)
        strategy.on_stop(self)

    # -- matching -----------------------------------------------------------------------

    def _add(self, order: SimOrder) -> SimOrder:
        self._next_id += 1
        self.orders.append(order)
        self._open.append(order)
        if order.type == "market":
            self._pending_market[order.symbol] += 1
        return order

    def _close(self, o: SimOrder, status: str, reason: str = "") -> None:
        o.status, o.reason, o.closed_at = status, reason, self._index
        self._open.remove(o)
        if o.type == "market":
            self._pending_market[o.symbol] -= 1
        if status == "canceled" and self._strategy is not None and o.role == "order":
            self._strategy.on_order(self, o.id, status, reason)

    def _match(self, i: int) -> None:
        self._index = i
        self._matching = True
        try:
            self._match_bar(i)
        finally:
            self._matching = False

    def _match_bar(self, i: int) -> None:
        for symbol in self.symbols:
            self._used_volume[symbol] = 0.0
        slip = self.config.slippage
        at_open: list[Candidate] = []
        for o in list(self._open):
            if o.active_from > i:
                continue
            opens, highs, lows, _, _ = self._ohlcv[o.symbol]
            arriving = o.created == i - 1 and o.arrives
            c = evaluate(o, opens[i], highs[i], lows[i], arriving, slip)
            if c is not None and c.phase != INTRABAR:
                at_open.append(c)
        for c in at_open:  # in order of placement
            if c.order.status == "open":
                self._fill(c, i)
        inside = []
        for o in list(self._open):
            opens, highs, lows, _, _ = self._ohlcv[o.symbol]
            born_now = o.created == i  # a protective exit armed by a fill earlier in this bar
            if o.active_from > i or o.type == "market":
                continue
            c = evaluate(o, opens[i], highs[i], lows[i], False, slip)
            if c is not None and (c.phase == INTRABAR or born_now):
                inside.append(c)
        for c in sorted(inside, key=intrabar_key):
            if c.order.status == "open":
                self._fill(c, i)
        for o in self._open:
            if o.type == "trailing_stop":
                o.water = max(o.water, self._ohlcv[o.symbol][1][i])
                o.stop_price = o.water * (1 - (o.trail or 0.0))

    def _quantity(self, o: SimOrder, price: float, fee_rate: float) -> tuple[float, str]:
        """How much ``o`` may fill now, and why it is zero when it is."""
        step = self.config.quantity_step
        held = self._positions[o.symbol]
        if o.side == "sell":
            wanted = (o.quantity - o.filled) if o.quantity is not None else held
            quantity = min(wanted, held)
            if quantity <= 0:
                return 0.0, "no_position"
        else:
            unit = price * (1 + fee_rate)
            if o.quantity is not None:
                wanted = o.quantity - o.filled
            elif o.fraction is not None:
                equity = self._cash + sum(q * self._ohlcv[s][0][self._index] for s, q in self._positions.items() if q)
                wanted = o.fraction * equity / unit
            else:
                wanted = (o.notional or 0.0) / unit
            quantity = min(wanted, self._cash / unit)
            if step > 0:
                quantity = math.floor(quantity / step) * step
            if quantity <= 0:
                return 0.0, "insufficient_funds"
        if not o.sized and o.quantity is None:
            o.quantity, o.sized = quantity, True
        cap = self.config.volume_cap
        if cap is not None:
            room = cap * self._ohlcv[o.symbol][3][self._index] - self._used_volume[o.symbol]
            if step > 0 and room < quantity:
                room = math.floor(room / step) * step
            quantity = min(quantity, max(room, 0.0))
            if quantity <= 0:
                return 0.0, "volume"
        return quantity, ""

    def _fill(self, c: Candidate, i: int) -> None:
        o, price = c.order, c.price
        if o.type == "stop_limit":
            o.triggered = True
            if c.trigger_only:
                o.active_from = i + 1  # a limit now, resting from the next bar
                return
        fee_rate = self.config.maker_fee if c.maker else self.config.taker_fee
        quantity, why = self._quantity(o, price, fee_rate)
        if quantity <= 0:
            if why != "volume":
                self._close(o, "canceled", why)
            return
        fee = price * quantity * fee_rate
        symbol = o.symbol
        if o.side == "buy":
            self._cash -= price * quantity + fee
            self._positions[symbol] += quantity
        else:
            self._cash += price * quantity - fee
            self._positions[symbol] -= quantity
            if self._positions[symbol] < 1e-12 * quantity:
                self._positions[symbol] = 0.0
        self._used_volume[symbol] += quantity
        o.filled += quantity
        o.notional_filled += price * quantity
        o.fees += fee
        fill = Fill(o.id, symbol, o.side, i, int(self._ohlcv[symbol][4][i]), price, quantity, fee, c.maker, o.role,
                    o.tag)
        self.fills.append(fill)
        if o.quantity is not None and o.filled >= o.quantity * (1 - 1e-12):
            self._close(o, "filled")
        if o.role in _EXIT_ROLES:
            for sibling in [x for x in self._open if x.symbol == symbol and x.role in _EXIT_ROLES]:
                self._close(sibling, "canceled", "oco_sibling_filled")
        if o.side == "buy" and (o.stop_loss or o.take_profit or o.trailing_stop):
            self._arm_exits(o, price)
        if self._positions[symbol] == 0.0:
            for x in [x for x in self._open if x.symbol == symbol and x.role in _EXIT_ROLES]:
                self._close(x, "canceled", "position_closed")
        if self._strategy is not None:
            self._strategy.on_fill(self, FillEvent(o.id, symbol, o.side, price, quantity, fee, fill.time, o.role,
                                                   o.tag))

    def _arm_exits(self, entry: SimOrder, price: float) -> None:
        """(Re)place the position's protective exits, sized to the whole position when they fill
        and priced from the entry's average fill price."""
        symbol = entry.symbol
        water = price
        for x in [x for x in self._open if x.symbol == symbol and x.role in _EXIT_ROLES]:
            water = max(water, x.water)
            self._close(x, "canceled", "replaced")
        single_fill = entry.notional_filled == price * entry.filled
        basis = price if single_fill else entry.notional_filled / entry.filled  # no round-off for one fill
        if entry.stop_loss:
            self._add(SimOrder(self._next_id, symbol, "sell", "stop", self._index, stop_price=basis * (1 - entry.stop_loss),
                               role="stop_loss", arrives=False, tag=entry.tag))
        if entry.take_profit:
            self._add(SimOrder(self._next_id, symbol, "sell", "limit", self._index,
                               price=basis * (1 + entry.take_profit), role="take_profit", arrives=False, tag=entry.tag))
        if entry.trailing_stop:
            self._add(SimOrder(self._next_id, symbol, "sell", "trailing_stop", self._index, trail=entry.trailing_stop,
                               water=water, stop_price=water * (1 - entry.trailing_stop), role="trailing_stop", arrives=False,
                               tag=entry.tag))
