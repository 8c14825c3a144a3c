"""Plans and their limits. A user's own limits can only tighten their plan's.

No billing in this release: an administrator sets a user's plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

PlanName = Literal["free", "pro", "enterprise"]
PLAN_NAMES: tuple[PlanName, ...] = ("free", "pro", "enterprise")


@dataclass(frozen=True)
class PlanLimits:
    requests_per_minute: int
    open_orders: int
    running_strategies: int
    alerts: int
    api_keys: int
    ai_calls_per_day: int
    backtest_bars: int
    websocket_subscriptions: int
    trading_accounts: int  # open (not closed) trading accounts, the default paper account included
    concurrent_backtests: int = 2  # backtests queued or running at once (strategies/engine.py)
    optimization_trials: int = 200  # trials of one optimisation, all windows together (strategies/optimize/)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


PLANS: dict[str, PlanLimits] = {
    "free": PlanLimits(requests_per_minute=120, open_orders=50, running_strategies=2, alerts=20, api_keys=3,
                       ai_calls_per_day=50, backtest_bars=500_000, websocket_subscriptions=50,
                       trading_accounts=3, concurrent_backtests=2, optimization_trials=200),
    "pro": PlanLimits(requests_per_minute=600, open_orders=500, running_strategies=10, alerts=200, api_keys=10,
                      ai_calls_per_day=1_000, backtest_bars=5_000_000, websocket_subscriptions=500,
                      trading_accounts=10, concurrent_backtests=5, optimization_trials=2_000),
    "enterprise": PlanLimits(requests_per_minute=3_000, open_orders=5_000, running_strategies=50, alerts=2_000,
                             api_keys=50, ai_calls_per_day=20_000, backtest_bars=50_000_000,
                             websocket_subscriptions=5_000, trading_accounts=50, concurrent_backtests=20,
                             optimization_trials=20_000),
}

LIMIT_NAMES = tuple(f.name for f in fields(PlanLimits))


class LimitAbovePlan(ValueError):
    def __init__(self, name: str, requested: int, allowed: int) -> None:
        super().__init__(f"{name}: {requested} is above your plan's {allowed}")
        self.name, self.requested, self.allowed = name, requested, allowed


def plan_limits(plan: str) -> PlanLimits:
    return PLANS.get(plan, PLANS["free"])


def check_user_limits(plan: str, requested: dict[str, int]) -> None:
    """Refuse a user's own limit that is looser than the plan's."""
    allowed = plan_limits(plan)
    for name, value in requested.items():
        cap = getattr(allowed, name)
        if value > cap:
            raise LimitAbovePlan(name, value, cap)


def effective_limits(plan: str, user_limits: dict[str, int] | None = None) -> PlanLimits:
    """min(user, plan) for every limit; limits the user did not set are the plan's."""
    base = plan_limits(plan)
    tightened = {k: min(v, getattr(base, k)) for k, v in (user_limits or {}).items() if k in LIMIT_NAMES}
    return replace(base, **tightened)
