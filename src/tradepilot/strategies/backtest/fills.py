"""The fill rules, as pure functions of one order and one bar — shared by both paths.

An order placed on bar ``t``'s close *arrives* at bar ``t + 1``'s open. Then, per bar:

=================== ================================================ =====================
order               fills when                                       at (maker/taker)
=================== ================================================ =====================
market              at the open                                      open ± slippage (taker)
limit, arriving     the open is at or through its price              the open (taker)
limit, resting      low ≤ price (buy) / high ≥ price (sell)          its price (maker)
stop / trailing     open through the level (gap)                     open ± slippage (taker)
                    else high ≥ level (buy) / low ≤ level (sell)     level ± slippage (taker)
=================== ================================================ =====================

Each fill has a *phase*: 0 = at the open (known to come first), 1 = somewhere inside the
bar. Bars do not say in which order the high and the low came, so inside a bar stops are
assumed to fill before limits — the adverse move first. That is the conservative rule for a
stop-loss and a take-profit that are both inside one bar: **the stop-loss wins**. A
take-profit that the open already reached is a phase-0 fill and wins over a stop-loss that
is only reached later in the bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Side = Literal["buy", "sell"]
AT_OPEN, INTRABAR = 0, 1


@dataclass(slots=True)
class SimOrder:
    """An order inside the backtester (mutable: its fills and state change as bars pass)."""

    id: int
    symbol: str
    side: Side
    type: str  # market | limit | stop | stop_limit | trailing_stop
    created: int  # index of the bar on whose close it was placed (-1: before the first bar)
    quantity: float | None = None
    fraction: float | None = None
    notional: float | None = None
    price: float | None = None
    stop_price: float | None = None
    trail: float | None = None
    water: float = 0.0
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    role: str = "order"  # order | stop_loss | take_profit | trailing_stop
    tag: str = ""
    status: str = "open"  # open | filled | canceled
    reason: str = ""
    triggered: bool = False
    filled: float = 0.0
    notional_filled: float = 0.0
    fees: float = 0.0
    closed_at: int | None = None
    sized: bool = False  # quantity fixed at the first fill (fraction, notional, sell-all)
    active_from: int = 0  # first bar it may fill on (a triggered stop-limit rests from the next)
    arrives: bool = True  # placed on a close, it meets the next open as a new order; placed on a
    # fill inside a bar (protective exits, on_fill), it was resting when that open came

    @property
    def is_stop(self) -> bool:
        return self.type in ("stop", "trailing_stop") or (self.type == "stop_limit" and not self.triggered)


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: int
    symbol: str
    side: Side
    index: int
    time: int
    price: float
    quantity: float
    fee: float
    maker: bool
    role: str
    tag: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An order that the bar reaches: when (phase), at what price, as maker or taker."""

    phase: int
    price: float
    maker: bool
    order: SimOrder = field(compare=False)
    trigger_only: bool = False  # a stop-limit triggered but not fillable: it becomes a resting limit


def _limit(o: SimOrder, open_: float, high: float, low: float, arriving: bool) -> tuple[int, float, bool] | None:
    p = o.price
    assert p is not None
    buy = o.side == "buy"
    if arriving and (open_ <= p if buy else open_ >= p):
        return AT_OPEN, open_, False
    if buy and low <= p:
        return (AT_OPEN if open_ <= p else INTRABAR), p, True
    if not buy and high >= p:
        return (AT_OPEN if open_ >= p else INTRABAR), p, True
    return None


def _stop(level: float, buy: bool, open_: float, high: float, low: float, slippage: float) -> tuple[int, float] | None:
    if buy:
        if open_ >= level:
            return AT_OPEN, open_ * (1 + slippage)
        if high >= level:
            return INTRABAR, level * (1 + slippage)
    else:
        if open_ <= level:
            return AT_OPEN, open_ * (1 - slippage)
        if low <= level:
            return INTRABAR, level * (1 - slippage)
    return None


def evaluate(o: SimOrder, open_: float, high: float, low: float, arriving: bool, slippage: float) -> Candidate | None:
    """Whether and how bar (open, high, low) fills order ``o`` (see the module's table).

    Pure: nothing in ``o`` changes. A stop-limit that triggers fills at its trigger price
    when its limit allows that price; otherwise the candidate is ``trigger_only`` and the
    caller turns it into a limit resting from the next bar (the path after the trigger is
    unknown inside the bar).
    """
    buy = o.side == "buy"
    if o.type == "market":
        return Candidate(AT_OPEN, open_ * (1 + slippage) if buy else open_ * (1 - slippage), False, o)
    if o.type == "limit" or (o.type == "stop_limit" and o.triggered):
        hit = _limit(o, open_, high, low, arriving and o.type == "limit")
        return None if hit is None else Candidate(hit[0], hit[1], hit[2], o)
    assert o.stop_price is not None
    stop = _stop(o.stop_price, buy, open_, high, low, slippage if o.type != "stop_limit" else 0.0)
    if stop is None:
        return None
    if o.type != "stop_limit":
        return Candidate(stop[0], stop[1], False, o)
    limit = o.price
    assert limit is not None
    trigger_price = open_ if stop[0] == AT_OPEN else o.stop_price
    if (trigger_price <= limit) if buy else (trigger_price >= limit):
        return Candidate(stop[0], trigger_price, False, o)
    return Candidate(stop[0], math.nan, False, o, trigger_only=True)


def intrabar_key(c: Candidate) -> tuple[int, float, int]:
    """Order of the fills inside one bar: stops first (the adverse move is assumed to come
    first); among sell stops the higher level first (falling prices reach it first), among
    buy stops the lower; then limits; ties in order of placement."""
    if c.order.is_stop:
        level = c.order.stop_price or 0.0
        return 0, (-level if c.order.side == "sell" else level), c.order.id
    return 1, 0.0, c.order.id


@dataclass(frozen=True, slots=True)
class FillTable:
    """Fills as columns: what the fast path produces without building an object per fill,
    and what the ledger reads. ``side`` is +1 for a buy, −1 for a sell."""

    order_id: np.ndarray
    symbol: np.ndarray  # str
    side: np.ndarray  # int8
    index: np.ndarray
    time: np.ndarray
    price: np.ndarray
    quantity: np.ndarray
    fee: np.ndarray
    maker: np.ndarray
    role: np.ndarray  # str
    tag: np.ndarray  # str

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def of(cls, fills: list[Fill]) -> FillTable:
        column = lambda name, dtype: np.array([getattr(f, name) for f in fills], dtype=dtype)  # noqa: E731
        return cls(column("order_id", np.int64), column("symbol", object),
                   np.array([1 if f.side == "buy" else -1 for f in fills], dtype=np.int8), column("index", np.int64),
                   column("time", np.int64), column("price", np.float64), column("quantity", np.float64),
                   column("fee", np.float64), column("maker", bool), column("role", object), column("tag", object))

    def rows(self) -> list[Fill]:
        return [Fill(int(o), str(s), "buy" if d > 0 else "sell", int(i), int(t), float(p), float(q), float(f), bool(m),
                     str(r), str(g))
                for o, s, d, i, t, p, q, f, m, r, g in zip(self.order_id, self.symbol, self.side, self.index, self.time,
                                                           self.price, self.quantity, self.fee, self.maker, self.role,
                                                           self.tag, strict=True)]
