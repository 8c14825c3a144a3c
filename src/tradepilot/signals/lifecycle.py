"""What the market did to a signal: a pure function of the signal and the closed bars after it.

Rules (docs/signals.md), on closed bars only — a bar is judged once it has ended:

* **entry** — the first bar opening at or after the signal's creation whose range holds the
  entry price (``low <= entry <= high``) triggers it at the entry price; without an entry
  price (``at market``) the first such bar triggers it at its open.
* **expiry** — no trigger among the bars that opened before ``expires_at``, and the bar holding
  the expiry has closed (a bar that opened before it may still reach the entry): expired.
* **stop / target** — from the trigger bar on, within ``horizon`` bars: a buy stops when a
  bar's low reaches the stop, hits its target when the high reaches the target (a sell
  mirrors it); both in one bar count as the stop (the cautious reading of an unknown path).
* **horizon return** — once the ``horizon`` bars from the trigger bar have closed: the last
  one's close against the trigger price, negated for a sell.

Evaluating the same bars twice gives the same answer, so the follower can re-run after a
crash or on another replica without changing what it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from tradepilot.market.types import Bar
from tradepilot.signals import constants as k

RETURN_PLACES = Decimal("1e-10")


@dataclass(frozen=True)
class SignalView:
    """The fields of a signal the rules read."""

    side: str
    entry: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    horizon: int
    created_at: datetime
    expires_at: datetime
    triggered_at: datetime | None = None
    trigger_price: Decimal | None = None


@dataclass(frozen=True)
class Evaluation:
    """What is known now; None fields: not (yet) known."""

    status: str
    triggered_at: datetime | None = None
    trigger_price: Decimal | None = None
    outcome: str | None = None
    outcome_at: datetime | None = None
    exit_price: Decimal | None = None
    horizon_return: Decimal | None = None
    evaluated_at: datetime | None = None


def side_return(side: str, entry: Decimal, exit_: Decimal) -> Decimal:
    """Return of a trade entered at ``entry`` and left at ``exit_``: positive when the call was right."""
    change = exit_ / entry - 1
    return (change if side == k.BUY else -change).quantize(RETURN_PLACES)


def _find_trigger(signal: SignalView, bars: Sequence[Bar]) -> tuple[int, Decimal] | None:
    for i, bar in enumerate(bars):
        if bar.open_time < signal.created_at:
            continue
        if bar.open_time >= signal.expires_at:
            return None
        if signal.entry is None:
            return i, bar.open
        if bar.low <= signal.entry <= bar.high:
            return i, signal.entry
    return None


def _stop_or_target(signal: SignalView, bar: Bar) -> tuple[str, Decimal] | None:
    buy = signal.side == k.BUY
    if signal.stop_loss is not None and (bar.low <= signal.stop_loss if buy else bar.high >= signal.stop_loss):
        return k.STOP_LOSS, signal.stop_loss
    if signal.take_profit is not None and (bar.high >= signal.take_profit if buy else bar.low <= signal.take_profit):
        return k.TAKE_PROFIT, signal.take_profit
    return None


def _bar_end(moment: datetime, step: timedelta) -> datetime:
    """The end of the bar ``moment`` falls in (``moment`` itself on a bar boundary)."""
    seconds = int(step.total_seconds())
    epoch = datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    offset = (moment - epoch).total_seconds() % seconds
    return moment if offset == 0 else moment + timedelta(seconds=seconds - offset)


def evaluate(signal: SignalView, bars: Sequence[Bar], now: datetime, step: timedelta) -> Evaluation:
    """The signal's state given ``bars`` (one symbol and timeframe, oldest first, each of
    ``step`` length) at ``now``; bars that have not ended by ``now`` are ignored."""
    closed = [b for b in bars if b.open_time + step <= now]
    if signal.triggered_at is not None and signal.trigger_price is not None:
        start = next((i for i, b in enumerate(closed) if b.open_time >= signal.triggered_at), None)
        found = None if start is None else (start, signal.trigger_price)
        if found is None:
            return Evaluation(k.SignalStatus.TRIGGERED, signal.triggered_at, signal.trigger_price)
    else:
        found = _find_trigger(signal, closed)
    if found is None:
        expired = now >= _bar_end(signal.expires_at, step)  # the bar holding the expiry has closed too
        return Evaluation(k.SignalStatus.EXPIRED if expired else k.SignalStatus.ACTIVE)
    index, price = found
    result = Evaluation(k.SignalStatus.TRIGGERED, closed[index].open_time, price)
    window = closed[index:index + signal.horizon]
    outcome = None
    for bar in window:
        hit = _stop_or_target(signal, bar)
        if hit is not None:
            outcome = (hit[0], bar.open_time + step, hit[1])
            break
    if len(window) < signal.horizon:  # the horizon has not passed yet
        if outcome is None:
            return result
        return Evaluation(result.status, result.triggered_at, price, *outcome)
    last = window[-1]
    ended = last.open_time + step
    if outcome is None:
        outcome = (k.HORIZON, ended, last.close)
    return Evaluation(result.status, result.triggered_at, price, *outcome,
                      horizon_return=side_return(signal.side, price, last.close), evaluated_at=ended)
