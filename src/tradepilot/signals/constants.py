"""Signal sources, statuses, outcomes, and the names of their events, lease and services."""

from __future__ import annotations

MODEL, STRATEGY, USER, WEBHOOK = "model", "strategy", "user", "webhook"
SOURCES = (MODEL, STRATEGY, USER, WEBHOOK)

BUY, SELL = "buy", "sell"


class SignalStatus:
    ACTIVE = "active"  # waiting for its entry price
    TRIGGERED = "triggered"  # the entry was reached; its outcome is followed up to the horizon
    EXPIRED = "expired"  # the expiry passed before the entry was reached
    CANCELLED = "cancelled"  # by its owner

    ALL = (ACTIVE, TRIGGERED, EXPIRED, CANCELLED)
    FINAL = frozenset({EXPIRED, CANCELLED})


# what happened after the entry: the stop, the target, or neither within the horizon
STOP_LOSS, TAKE_PROFIT, HORIZON = "stop_loss", "take_profit", "horizon"

TOPIC_KIND = "signals"
SIGNAL_CREATED = "signal.created"
SIGNAL_CHANGED = "signal.status_changed"  # triggered, expired, cancelled
SIGNAL_OUTCOME = "signal.outcome"  # stop or target hit, or the horizon's return measured

LEASE_NAME = "signals-tracker"
SERVICE_KEY = "signals"
TRACKER_KEY = "signals_tracker"
WEBHOOK_PURPOSE = "signal-webhook"  # the HMAC purpose of webhook secrets
