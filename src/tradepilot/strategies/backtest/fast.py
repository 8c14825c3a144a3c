"""The vectorised fast path: a signal strategy on one symbol, simulated trade by trade.

Instead of visiting every bar, it jumps from one entry signal to the exit that ends the trade:
the next exit signal (sold at the following open) or, with protective exits, the first bar
whose open or range reaches the stop-loss / trailing stop / take-profit — found with numpy
over the bars the trade spans. Python runs once per trade, numpy once per bar. The fills it
produces are exactly those the event-driven broker produces for the same signals (the fill
rules of ``fills.py``: market at the next open ± slippage, stops at their level or the gapped
open, take-profit at its price as maker, stops before take-profits inside one bar, trailing
levels from the highs of the bars before). ``tests/unit/test_backtest_paths.py`` checks it.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np

from tradepilot.strategies.backtest.config import BacktestConfig
from tradepilot.strategies.backtest.fills import FillTable
from tradepilot.strategies.base import Signals
from tradepilot.strategies.bars import Bars


def _exit_scan(bars: Bars, f: int, last: int, after: int | None, entry: float, s: Signals, slippage: float
               ) -> tuple[int, float, bool, str] | None:
    """The first protective exit of a position entered at bar ``f``'s open for ``entry``,
    held through bar ``last`` (its exit signal's bar) and sold at bar ``after``'s open:
    (bar, price, maker, role), or None."""
    end = last + 1 if after is None else after + 1
    o, h, lo = bars.open[f:end], bars.high[f:end], bars.low[f:end]
    m = end - f
    sl_level = entry * (1 - s.stop_loss) if s.stop_loss else -math.inf
    stop = np.full(m, sl_level)
    trailing = None
    if s.trailing_stop:
        mark = np.empty(m)
        mark[0] = entry
        if m > 1:
            np.maximum(np.maximum.accumulate(h[:-1]), entry, out=mark[1:])
        trailing = mark * (1 - s.trailing_stop)
        np.maximum(stop, trailing, out=stop)
    tp = entry * (1 + s.take_profit) if s.take_profit else math.inf
    held = m if after is None else m - 1  # the bar of the signal sale: only its open counts
    gap_stop = o <= stop
    gap_tp = o >= tp
    inside_stop = lo[:held] <= stop[:held]
    inside_tp = h[:held] >= tp
    hits = gap_stop | gap_tp
    hits[:held] |= inside_stop | inside_tp
    first = int(np.argmax(hits))
    if not hits[first]:
        return None
    j = f + first
    role = "stop_loss" if trailing is None or stop[first] == sl_level else "trailing_stop"
    if gap_stop[first]:  # both stops gapped: the stop-loss was placed first, it fills first
        role = "stop_loss" if s.stop_loss and o[first] <= sl_level else "trailing_stop"
        return j, float(o[first]) * (1 - slippage), False, role
    if gap_tp[first]:
        return j, tp, True, "take_profit"
    if inside_stop[first]:
        return j, float(stop[first]) * (1 - slippage), False, role
    return j, tp, True, "take_profit"


def simulate(bars: Bars, signals: Signals, config: BacktestConfig) -> FillTable:
    """The fills of ``signals`` on ``bars`` (long-only, one position at a time)."""
    n = len(bars)
    entries = np.flatnonzero(signals.entries[: n - 1]).tolist()  # an entry needs a next bar
    exits = np.flatnonzero(signals.exits).tolist()
    opens = bars.open
    slip, step = config.slippage, config.quantity_step
    taker, maker = config.taker_fee, config.maker_fee
    protective = signals.has_protective_exits
    cash = config.initial_cash
    ids: list[int] = []
    sides: list[int] = []
    at: list[int] = []
    prices: list[float] = []
    quantities: list[float] = []
    fees: list[float] = []
    makers: list[bool] = []
    roles: list[str] = []
    order_id = 0
    start = 0
    while True:
        k = bisect_left(entries, start)
        if k == len(entries):
            break
        f = entries[k] + 1
        price = float(opens[f]) * (1 + slip)
        unit = price * (1 + taker)
        quantity = min(signals.size * cash, cash) / unit
        if step > 0:
            quantity = math.floor(quantity / step) * step
        order_id += 1
        if quantity <= 0:
            start = f
            continue
        fee = price * quantity * taker
        cash -= price * quantity + fee
        ids.append(order_id), sides.append(1), at.append(f), prices.append(price), quantities.append(quantity)
        fees.append(fee), makers.append(False), roles.append("order")
        x = bisect_left(exits, f)
        last = exits[x] if x < len(exits) else n - 1
        after = last + 1 if x < len(exits) and last + 1 < n else None
        hit = _exit_scan(bars, f, last, after, price, signals, slip) if protective else None
        if hit is not None:
            j, exit_price, is_maker, role = hit
        elif after is not None:
            j, exit_price, is_maker, role = after, float(opens[after]) * (1 - slip), False, "order"
        else:
            break
        order_id += 1
        fee = exit_price * quantity * (maker if is_maker else taker)
        cash += exit_price * quantity - fee
        ids.append(order_id), sides.append(-1), at.append(j), prices.append(exit_price), quantities.append(quantity)
        fees.append(fee), makers.append(is_maker), roles.append(role)
        start = j
    index = np.array(at, dtype=np.int64)
    side = np.array(sides, dtype=np.int8)
    role_column = np.array(roles, dtype=object)
    tags = np.where(side > 0, "entry", np.where(role_column == "order", "exit", "entry")).astype(object)
    return FillTable(np.array(ids, dtype=np.int64), np.full(len(index), bars.symbol, dtype=object), side, index,
                     bars.time[index], np.array(prices), np.array(quantities), np.array(fees),
                     np.array(makers, dtype=bool), role_column, tags)
