"""Alert kinds, conditions, statuses and the topic of alert events."""

from __future__ import annotations

PRICE, PNL, RISK = "price", "pnl", "risk"

# price conditions
ABOVE, BELOW, CROSSES, PERCENT_CHANGE = "above", "below", "crosses", "percent_change"
PRICE_CONDITIONS = (ABOVE, BELOW, CROSSES, PERCENT_CHANGE)
# P&L scopes
POSITION, ACCOUNT, DAILY = "position", "account", "daily"
PNL_CONDITIONS = (POSITION, ACCOUNT, DAILY)
# risk measures (all in percent)
DRAWDOWN, EXPOSURE, CONCENTRATION, DAILY_LOSS_LIMIT = "drawdown", "exposure", "concentration", "daily_loss_limit"
RISK_CONDITIONS = (DRAWDOWN, EXPOSURE, CONCENTRATION, DAILY_LOSS_LIMIT)

UP, DOWN, ANY = "up", "down", "any"  # crosses / percent_change direction
ABSOLUTE, PERCENT = "absolute", "percent"  # P&L unit

# percent-change windows, seconds: a fixed set keeps the engine's per-tick work bounded
WINDOWS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "24h": 86_400}


class AlertStatus:
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    TRIGGERED = "triggered"  # a one-shot alert that fired: final

    SETTABLE = (ACTIVE, PAUSED, CANCELLED)
    FINAL = frozenset({CANCELLED, TRIGGERED})


TOPIC_KIND = "alerts"
ALERT_CHANGED = "alert.changed"  # created, status changed, deleted: the engine refreshes it
ALERT_TRIGGERED = "alert.triggered"  # the notification consumer makes a notification of it
LEASE_NAME = "alerts-engine"
SERVICE_KEY = "alerts"
ENGINE_KEY = "alert_engine"
