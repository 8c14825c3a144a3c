"""How a backtest trades: starting cash, fees, slippage, volume cap, quantity step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradepilot.config import Settings


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """Fees and slippage are fractions (0.001 = 0.1 %). ``volume_cap`` limits what one
    symbol's fills may take of a bar's volume (0.1 = 10 %; None = unlimited).
    ``quantity_step`` rounds every quantity down to a multiple of it (an instrument's step
    size; 0 = no rounding)."""

    initial_cash: float = 10_000.0
    maker_fee: float = 0.001
    taker_fee: float = 0.001
    slippage: float = 0.0
    volume_cap: float | None = None
    quantity_step: float = 0.0

    def __post_init__(self) -> None:
        if not self.initial_cash > 0:
            raise ValueError("initial_cash must be positive")
        if not (-0.01 < self.maker_fee < 1 and 0 <= self.taker_fee < 1):
            raise ValueError("fees must be fractions below 1 (a negative maker fee is a rebate)")
        if not 0 <= self.slippage < 1:
            raise ValueError("slippage must be a fraction in [0, 1)")
        if self.volume_cap is not None and not 0 < self.volume_cap <= 1:
            raise ValueError("volume_cap must be a fraction in (0, 1]")
        if self.quantity_step < 0:
            raise ValueError("quantity_step must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> BacktestConfig:
        """The paper exchange's fee rates (``paper_maker_fee_rate`` / ``paper_taker_fee_rate``)
        as defaults, so a backtest charges what paper trading will."""
        values: dict[str, Any] = {"maker_fee": float(settings.paper_maker_fee_rate),
                                  "taker_fee": float(settings.paper_taker_fee_rate)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
