"""The paper exchange's matching engine: pure, deterministic, in process.

Semantics, data structures and figures: docs/paper-exchange.md.
"""

from tradepilot.trading.engine.engine import DuplicateOrderError, MatchingEngine, UnknownOrderError
from tradepilot.trading.engine.events import (
    EngineEvent,
    Fill,
    ModifyRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderModified,
    OrderRejected,
    OrderUpdated,
    StopMoved,
    Triggered,
)
from tradepilot.trading.engine.fees import DEFAULT_RATES, FeeRates, FeeSchedule
from tradepilot.trading.engine.groups import GroupKind, OrderGroup
from tradepilot.trading.engine.orders import (
    LegRole,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tradepilot.trading.engine.snapshot import EngineSnapshot, MarketSnapshot

__all__ = [
    "DEFAULT_RATES", "DuplicateOrderError", "EngineEvent", "EngineSnapshot", "FeeRates",
    "FeeSchedule", "Fill", "GroupKind", "LegRole", "Liquidity", "MarketSnapshot", "MatchingEngine",
    "ModifyRejected",
    "Order", "OrderAccepted", "OrderCanceled", "OrderExpired", "OrderGroup", "OrderModified",
    "OrderRejected", "OrderStatus", "OrderType", "OrderUpdated", "Side", "StopMoved", "TimeInForce",
    "Triggered", "UnknownOrderError",
]
