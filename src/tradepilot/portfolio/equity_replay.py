"""Replaying an account's ledger day by day into equity figures. Pure: no database, exact.

The ledger says what the account held after every transaction; prices say what that was
worth. Day ``d``'s figures are the holdings after the last transaction of ``d`` valued at
``d``'s closing prices, plus what moved during ``d``:

* ``net_flows`` — the ``external`` bucket's postings, negated (a deposit takes from the
  outside world, so its posting there is negative), valued at ``d``'s prices;
* ``fees``      — the ``fees`` bucket's postings, valued at ``d``'s prices;
* ``realised_pnl`` and ``trades`` — from the day's fills (gross P&L, in the fill's quote).

Transactions are assigned to the UTC day of their ``created_at``; one created before the
start of the replay (a transaction that committed after its day was already final) counts
on the first replayed day, so nothing is ever left out.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from tradepilot.core.money import EXACT, MAX_SCALE, to_plain_string
from tradepilot.trading.models import Bucket
from tradepilot.trading.valuation import price_in

ZERO = Decimal(0)
_PLACES = Decimal(10) ** -MAX_SCALE

PriceOn = Callable[[str, date], Decimal | None]  # (symbol, day) -> that day's close, or None


@dataclass(frozen=True, slots=True)
class LedgerMove:
    """One posting, with its transaction's sequence number and day."""

    seq: int
    day: date
    asset: str
    bucket: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class FillMove:
    day: date
    quote_asset: str
    realised_pnl: Decimal | None


@dataclass(frozen=True, slots=True)
class DayFigures:
    day: date
    equity: Decimal
    cash: Decimal
    positions_value: Decimal
    net_flows: Decimal
    fees: Decimal
    realised_pnl: Decimal
    trades: int
    holdings: dict[str, Decimal]
    values: dict[str, Decimal]
    unpriced: list[str]
    ledger_seq: int

    def holdings_json(self) -> dict[str, str]:
        return {asset: to_plain_string(q) for asset, q in sorted(self.holdings.items())}

    def values_json(self) -> dict[str, str]:
        return {asset: to_plain_string(v) for asset, v in sorted(self.values.items())}


@dataclass(slots=True)
class _Day:
    moves: list[LedgerMove] = field(default_factory=list)
    fills: list[FillMove] = field(default_factory=list)


def _round(value: Decimal) -> Decimal:
    return value.quantize(_PLACES, context=EXACT)


def replay(
    *,
    currency: str,
    holdings: dict[str, Decimal],
    ledger_seq: int,
    first_day: date,
    last_day: date,
    moves: Iterable[LedgerMove],
    fills: Iterable[FillMove],
    price_on: PriceOn,
) -> list[DayFigures]:
    """The figures of every day in ``[first_day, last_day]``, starting from ``holdings``
    (the quantities after ledger transaction ``ledger_seq``). ``moves`` must be the postings
    of the transactions after ``ledger_seq``; earlier ones are ignored."""
    if last_day < first_day:
        return []
    days: dict[date, _Day] = defaultdict(_Day)
    for move in moves:
        if move.seq > ledger_seq:
            days[max(move.day, first_day)].moves.append(move)
    for fill in fills:
        days[max(fill.day, first_day)].fills.append(fill)

    held = {asset: q for asset, q in holdings.items() if q != 0}
    seq = ledger_seq
    out: list[DayFigures] = []
    day = first_day
    while day <= last_day:
        events = days.get(day) or _Day()
        flows, fees = ZERO, ZERO
        priced: dict[str, Decimal | None] = {}

        def price(asset: str, on: date = day) -> Decimal | None:
            if asset not in priced:
                priced[asset] = price_in(asset, currency, lambda symbol: price_on(symbol, on))
            return priced[asset]

        unvalued_flows: set[str] = set()
        for move in sorted(events.moves, key=lambda m: m.seq):
            seq = max(seq, move.seq)
            if move.bucket in Bucket.HELD:
                held[move.asset] = EXACT.add(held.get(move.asset, ZERO), move.amount)
            elif move.bucket in (Bucket.EXTERNAL, Bucket.FEES):
                unit = price(move.asset)
                if unit is None:
                    unvalued_flows.add(move.asset)
                    continue
                worth = EXACT.multiply(move.amount, unit)
                if move.bucket == Bucket.EXTERNAL:
                    flows = EXACT.subtract(flows, worth)
                else:
                    fees = EXACT.add(fees, worth)
        realised = ZERO
        for fill in events.fills:
            if fill.realised_pnl is None or fill.realised_pnl == 0:
                continue
            unit = price(fill.quote_asset)
            if unit is not None:
                realised = EXACT.add(realised, EXACT.multiply(fill.realised_pnl, unit))

        held = {asset: q for asset, q in held.items() if q != 0}
        cash = held.get(currency, ZERO)
        values: dict[str, Decimal] = {}
        unpriced: list[str] = []
        positions = ZERO
        for asset, quantity in sorted(held.items()):
            unit = price(asset)
            if unit is None:
                unpriced.append(asset)
                continue
            value = _round(EXACT.multiply(quantity, unit))
            values[asset] = value
            if asset != currency:
                positions = EXACT.add(positions, value)
        out.append(DayFigures(
            day=day, equity=EXACT.add(cash, positions), cash=cash, positions_value=positions,
            net_flows=_round(flows), fees=_round(fees), realised_pnl=_round(realised),
            trades=len(events.fills), holdings=dict(held), values=values,
            unpriced=sorted(set(unpriced) | unvalued_flows), ledger_seq=seq))
        day += timedelta(days=1)
    return out


class DailyCloses:
    """Closing prices per symbol and UTC day, carried forward over days without a close.

    ``today`` overrides (the live last prices) answer for ``today_date`` when given, so
    today's unfinished row is valued at the market's current prices.
    """

    def __init__(self) -> None:
        self._closes: dict[str, dict[date, Decimal]] = defaultdict(dict)
        self._sorted: dict[str, list[date]] = {}
        self._live: dict[str, Decimal] = {}
        self._live_day: date | None = None

    def add(self, symbol: str, day: date, close: Decimal, *, overwrite: bool = True) -> None:
        if close <= 0:
            return
        if overwrite or day not in self._closes[symbol]:
            self._closes[symbol][day] = close
            self._sorted.pop(symbol, None)

    def set_live(self, day: date, prices: dict[str, Decimal]) -> None:
        self._live_day = day
        self._live = {s: p for s, p in prices.items() if p is not None and p > 0}

    def price_on(self, symbol: str, day: date) -> Decimal | None:
        if day == self._live_day and symbol in self._live:
            return self._live[symbol]
        closes = self._closes.get(symbol)
        if not closes:
            return None
        close = closes.get(day)
        if close is not None:
            return close
        days = self._sorted.get(symbol)
        if days is None:
            days = self._sorted[symbol] = sorted(closes)
        i = bisect_right(days, day)
        return closes[days[i - 1]] if i else None
