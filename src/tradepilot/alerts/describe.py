"""Human words for alerts and their triggers (notification titles, email bodies)."""

from __future__ import annotations

from decimal import Decimal

from tradepilot.alerts import constants as k
from tradepilot.alerts.models import Alert
from tradepilot.core.money import to_plain_string


def _n(value: Decimal) -> str:
    """Exact when short; a computed ratio (many decimals) to 4 places."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        value = value.quantize(Decimal("0.0001"))
    return to_plain_string(value)


def describe_rule(alert: Alert) -> str:
    t = _n(alert.threshold)
    if alert.kind == k.PRICE:
        if alert.condition == k.PERCENT_CHANGE:
            window = next((name for name, s in k.WINDOWS.items() if s == alert.window_seconds), f"{alert.window_seconds}s")
            way = {"up": "rises", "down": "falls"}.get(alert.direction or "", "moves")
            return f"{alert.symbol} {way} {t}% within {window}"
        if alert.condition == k.CROSSES:
            way = {"up": " upwards", "down": " downwards"}.get(alert.direction or "", "")
            return f"{alert.symbol} crosses {t}{way}"
        return f"{alert.symbol} {alert.condition} {t}"
    if alert.kind == k.PNL:
        what = {"position": f"{alert.symbol} position P&L", "account": "account P&L", "daily": "today's P&L"}
        unit = "%" if alert.unit == k.PERCENT else ""
        return f"{what[alert.condition]} {alert.direction} {t}{unit}"
    names = {"drawdown": "drawdown", "exposure": "exposure", "concentration": "largest position",
             "daily_loss_limit": "use of the daily loss limit"}
    return f"{names[alert.condition]} at or above {t}%"


def describe_trigger(alert: Alert, value: Decimal) -> tuple[str, str]:
    rule = describe_rule(alert)
    shown = _n(value) + ("%" if alert.condition == k.PERCENT_CHANGE or alert.kind == k.RISK
                         or alert.unit == k.PERCENT else "")
    return f"Alert: {rule}"[:200], f"Your alert \"{rule}\" fired: the value is now {shown}."
