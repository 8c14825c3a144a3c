"""The strategy interface, shared by the backtester and (later) live runs.

Two ways to write a strategy, one contract:

* :class:`SignalStrategy` — ``signals(bars)`` returns entry and exit signals for whole arrays
  (indicators and rules evaluated vectorised). This is the fast path: the backtester
  simulates it without calling Python per bar. It also runs bar by bar through
  :class:`SignalAdapter`, which is how the event-driven broker (and a live run) executes it.
* :class:`EventStrategy` — callbacks (``on_start``, ``on_bar``, ``on_fill``, ``on_order``,
  ``on_stop``) for logic that needs state (grids, DCA, anything path-dependent). It trades
  through a :class:`StrategyContext`, which the backtester implements with its simulated
  broker and a live runner with the trading service.

Signals are decided on a bar's **close** and act at the **next bar's open**. Spot only:
strategies go long or stay flat (a sell never exceeds the position).

Parameters are pydantic models (``Params``): typed, validated, and their JSON schema is
what the catalog publishes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tradepilot.strategies.bars import Bars

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]


class StrategyParamsError(ValueError):
    """Parameters that do not validate; ``errors`` are ``{"loc": [...], "msg": ...}`` items."""

    def __init__(self, strategy: str, errors: list[dict[str, Any]]) -> None:
        self.strategy = strategy
        self.errors = errors
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in errors)
        super().__init__(f"invalid parameters for {strategy}: {detail}")


class StrategyParams(BaseModel):
    """Base of every strategy's parameters: typed, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RiskParams(StrategyParams):
    """Sizing and protective exits, common to the signal strategies.

    ``size`` is the fraction of equity an entry spends (1 = all-in); ``stop_loss``,
    ``take_profit`` and ``trailing_stop`` are fractions of the entry price (0.05 = 5 %).
    """

    size: float = Field(1.0, gt=0, le=1, description="fraction of equity each entry spends (1 = all-in)")
    stop_loss: float | None = Field(None, gt=0, lt=1, description="exit when price falls this fraction below entry")
    take_profit: float | None = Field(None, gt=0, description="exit when price rises this fraction above entry")
    trailing_stop: float | None = Field(None, gt=0, lt=1,
                                        description="exit when price falls this fraction below its highest since entry")


def check_ordered(params: StrategyParams, fast: str, slow: str) -> None:
    """Refuse a ``fast`` period that is not shorter than the ``slow`` one."""
    if getattr(params, fast) >= getattr(params, slow):
        raise ValueError(f"{fast} ({getattr(params, fast)}) must be less than {slow} ({getattr(params, slow)})")


@dataclass(frozen=True, slots=True)
class Signals:
    """What a signal strategy decided on each bar's close, for one symbol.

    ``entries[t]``: go long at ``t + 1``'s open when flat; ``exits[t]``: sell everything at
    ``t + 1``'s open when long (an entry wins over an exit while flat, an exit while long).
    The sizing and protective exits apply to every entry.
    """

    entries: np.ndarray
    exits: np.ndarray
    size: float = 1.0
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None

    @classmethod
    def of(cls, entries: np.ndarray, exits: np.ndarray, risk: StrategyParams | None = None) -> Signals:
        """Signals with ``risk``'s sizing and exits (a :class:`RiskParams`, or none of them)."""
        clean = lambda a: np.asarray(a, dtype=bool)  # noqa: E731
        if isinstance(risk, RiskParams):
            return cls(clean(entries), clean(exits), risk.size, risk.stop_loss, risk.take_profit, risk.trailing_stop)
        return cls(clean(entries), clean(exits))

    @property
    def has_protective_exits(self) -> bool:
        return any(x is not None for x in (self.stop_loss, self.take_profit, self.trailing_stop))


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order a strategy asks for. Buys are sized by ``quantity`` (base units), by
    ``fraction`` of equity or by ``notional`` (quote to spend, fee included), the last two
    resolved at the fill price; a sell without ``quantity`` sells the whole
    position. A buy may carry protective exits (fractions of its fill price)."""

    symbol: str
    side: Side
    type: OrderType = "market"
    quantity: float | None = None
    fraction: float | None = None
    notional: float | None = None
    price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    tag: str = ""


@dataclass(frozen=True, slots=True)
class FillEvent:
    """One execution, as a strategy sees it in ``on_fill``."""

    order_id: int
    symbol: str
    side: Side
    price: float
    quantity: float
    fee: float
    time: int
    role: str
    tag: str


class StrategyContext(Protocol):
    """What an event strategy may read and do; the backtester's broker and a live runner
    each implement it."""

    symbols: Sequence[str]

    def bars(self, symbol: str) -> Bars: ...
    def position(self, symbol: str) -> float: ...
    @property
    def cash(self) -> float: ...
    def submit(self, order: OrderRequest) -> int: ...
    def cancel(self, order_id: int) -> bool: ...
    def has_open_orders(self, symbol: str) -> bool: ...
    def has_pending_market_order(self, symbol: str) -> bool: ...


class Strategy(ABC):
    """A named strategy with typed parameters (``Params``)."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    kind: ClassVar[Literal["signals", "events"]]
    Params: ClassVar[type[StrategyParams]]

    def __init__(self, params: StrategyParams | Mapping[str, Any] | None = None) -> None:
        self.params = params if isinstance(params, StrategyParams) else self.parse_params(params or {})

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any]) -> StrategyParams:
        """Validate raw parameters, raising :class:`StrategyParamsError` with the bad fields."""
        try:
            return cls.Params.model_validate(dict(raw))
        except ValidationError as exc:
            raise StrategyParamsError(cls.name, [{"loc": list(e["loc"]), "msg": e["msg"]}
                                                 for e in exc.errors()]) from None

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        return cls.Params.model_json_schema()


class SignalStrategy(Strategy):
    """Vectorised: indicators and rules over whole arrays (the fast path)."""

    kind: ClassVar[Literal["signals", "events"]] = "signals"

    @abstractmethod
    def signals(self, bars: Bars) -> Signals:
        """Entry and exit signals for every bar, decided on each bar's close."""


class EventStrategy(Strategy):
    """Callbacks, for strategies that need state. ``on_bar`` gets the index of the bar that
    just closed (``ctx.bars(symbol)`` holds the history up to it, the same index on every
    symbol)."""

    kind: ClassVar[Literal["signals", "events"]] = "events"

    def on_start(self, ctx: StrategyContext) -> None:  # noqa: B027  (optional hook)
        """Before the first bar: precompute indicators, place standing orders."""

    @abstractmethod
    def on_bar(self, ctx: StrategyContext, i: int) -> None:
        """Bar ``i`` of every symbol has closed; orders placed now work from the next bar."""

    def on_fill(self, ctx: StrategyContext, fill: FillEvent) -> None:  # noqa: B027
        """One of this strategy's orders was (partly) filled."""

    def on_order(self, ctx: StrategyContext, order_id: int, status: str, reason: str) -> None:  # noqa: B027
        """An order ended without filling completely (``canceled``, ``rejected``)."""

    def on_stop(self, ctx: StrategyContext) -> None:  # noqa: B027
        """After the last bar (or when a live run is stopped)."""

    def state(self) -> dict[str, Any]:
        """What a live run persists after each bar (JSON-able); handed to ``restore`` when the
        run resumes after a restart or on another replica. Stateless strategies keep ``{}``."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what ``state`` returned (called after ``on_start`` when a live run resumes)."""


class SignalAdapter(EventStrategy):
    """Runs a :class:`SignalStrategy` bar by bar: the event form of the same decisions.

    In a backtest the signals of the whole history are computed once at the start; a live
    runner recomputes them over its window as bars arrive — ``signals`` is the same function.
    """

    name = "signal-adapter"
    title = "Signal strategy, bar by bar"
    Params = StrategyParams

    def __init__(self, strategy: SignalStrategy) -> None:
        super().__init__(StrategyParams())
        self.strategy = strategy
        self._plans: list[tuple[str, list[bool], list[bool], Signals]] = []

    def on_start(self, ctx: StrategyContext) -> None:
        self._plans = []
        for symbol in ctx.symbols:
            signals = self.strategy.signals(ctx.bars(symbol))
            self._plans.append((symbol, signals.entries.tolist(), signals.exits.tolist(), signals))

    def on_bar(self, ctx: StrategyContext, i: int) -> None:
        for symbol, entries, exits, signals in self._plans:
            if entries[i] or exits[i]:
                self._act(ctx, symbol, entries[i], exits[i], signals)

    @staticmethod
    def _act(ctx: StrategyContext, symbol: str, entry: bool, exit_: bool, s: Signals) -> None:
        if ctx.has_pending_market_order(symbol):
            return
        held = ctx.position(symbol) > 0
        if entry and not held:
            ctx.submit(OrderRequest(symbol, "buy", fraction=s.size, stop_loss=s.stop_loss,
                                    take_profit=s.take_profit, trailing_stop=s.trailing_stop, tag="entry"))
        elif exit_ and held:
            ctx.submit(OrderRequest(symbol, "sell", tag="exit"))
