"""Which outbox events become notifications, and how they read.

A domain makes its events notify by emitting them on the user's topic with a type this module
maps: trading's ``fill.created`` and final ``order.updated``, the alert engine's
``alert.triggered``, the live strategy runs' ``strategy_run.started|stopped|failed`` (a crash
must reach the owner; a run's orders notify as orders and fills), and by prefix ``strategy.*``,
``security.*`` and ``report.*`` (those carry ``title`` and ``body`` in their payload).
Everything else is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tradepilot.core.events import Event
from tradepilot.core.outbox import notify_when
from tradepilot.notifications import constants as c

FILL_CREATED = "fill.created"
ORDER_UPDATED = "order.updated"
ALERT_TRIGGERED = "alert.triggered"
PREFIXES = {"strategy.": c.STRATEGIES, "security.": c.SECURITY, "report.": c.REPORTS}
RUN_STARTED, RUN_STOPPED, RUN_FAILED = "strategy_run.started", "strategy_run.stopped", "strategy_run.failed"
RUN_TYPES = (RUN_STARTED, RUN_STOPPED, RUN_FAILED)
NOTIFIED_ORDER_STATUSES = frozenset({"filled", "canceled", "expired", "rejected"})


@dataclass(frozen=True, slots=True)
class Draft:
    """A notification about to be made."""

    category: str
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)


def draft_for(event: Event) -> Draft | None:
    """The notification an event asks for, or None."""
    return draft_of(event.type, event.payload or {})


def draft_of(event_type: str, payload: dict[str, Any]) -> Draft | None:
    """The notification an event of ``event_type`` with ``payload`` asks for, or None."""
    if event_type == FILL_CREATED:
        return _fill(payload.get("fill") or {})
    if event_type == ORDER_UPDATED:
        return _order(payload.get("order") or {})
    if event_type == ALERT_TRIGGERED:
        return _alert(payload)
    if event_type in RUN_TYPES:
        return _run(event_type, payload.get("run") or {})
    for prefix, category in PREFIXES.items():
        if event_type.startswith(prefix):
            title = str(payload.get("title") or event_type)
            return Draft(category, title[:200], str(payload.get("body") or title)[:4000],
                         {"event_type": event_type})
    return None


@notify_when
def makes_notification(event_type: str, payload: dict[str, Any]) -> bool:
    """The outbox's rule: queue an event for the notifier only if it makes a notification."""
    return draft_of(event_type, payload) is not None


def _fill(fill: dict[str, Any]) -> Draft | None:
    if not fill.get("id"):
        return None
    verb = "Bought" if fill.get("side") == "buy" else "Sold"
    title = f"{verb} {fill.get('quantity')} {fill.get('symbol')} at {fill.get('price')}"
    body = (f"{title} (fee {fill.get('fee')} {fill.get('fee_asset')}, {fill.get('liquidity')}). "
            f"Order {fill.get('order_id')}.")
    return Draft(c.FILLS, title, body, {"fill_id": fill["id"], "order_id": fill.get("order_id"),
                                        "symbol": fill.get("symbol")})


def _order(order: dict[str, Any]) -> Draft | None:
    status = order.get("status")
    if status not in NOTIFIED_ORDER_STATUSES or not order.get("id"):
        return None
    title = f"Order {status}: {order.get('side')} {order.get('quantity') or order.get('quote_quantity')} " \
            f"{order.get('symbol')}"
    reason = order.get("cancel_reason") or order.get("reject_code")
    body = title + (f" ({reason})" if reason else "") + f". Filled {order.get('filled_quantity')}" \
        + (f" at {order['average_fill_price']} on average." if order.get("average_fill_price") else ".")
    return Draft(c.ORDERS, title, body, {"order_id": order["id"], "status": status, "symbol": order.get("symbol")})


def _alert(payload: dict[str, Any]) -> Draft | None:
    alert = payload.get("alert") or {}
    if not alert.get("id"):
        return None
    title = str(payload.get("title") or "Alert triggered")[:200]
    body = str(payload.get("body") or title)
    if alert.get("message"):
        body += f"\n\nYour note: {alert['message']}"
    return Draft(c.ALERTS, title, body[:4000], {"alert_id": alert["id"], "trigger_id": payload.get("trigger_id"),
                                                "kind": alert.get("kind"), "value": payload.get("value")})


def _run(type_: str, run: dict[str, Any]) -> Draft | None:
    if not run.get("id"):
        return None
    what = f"{run.get('strategy')} on {', '.join(run.get('symbols') or [])}"
    if type_ == RUN_FAILED:
        title = f"Strategy failed: {what}"
        body = f"Your strategy {what} stopped after an error: {run.get('error') or 'unknown error'}."
    elif type_ == RUN_STOPPED:
        title = f"Strategy stopped: {what}"
        body = f"Your strategy {what} stopped ({run.get('stop_reason') or 'stopped'})."
    else:
        title = f"Strategy started: {what}"
        body = f"Your strategy {what} is running live."
    body += f" Orders placed: {run.get('orders_placed') or 0}, rejected: {run.get('orders_rejected') or 0}."
    return Draft(c.STRATEGIES, title[:200], body[:4000], {
        "run_id": run["id"], "strategy_id": run.get("strategy_id"), "account_id": run.get("account_id"),
        "status": run.get("status"), "event_type": type_})
