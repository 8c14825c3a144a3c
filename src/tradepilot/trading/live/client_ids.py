"""The ids the exchange knows platform orders by, and the venue name of live orders.

``tp-<order id hex>`` (35 characters: within Binance's 36) marks an order as the platform's:
reconciliation adopts or finalises those and never touches any other. A modified order
(``live.modify``: cancel-replace) is sent again as ``tp-<order id hex><revision>``: the
exchange refuses to reuse a client id, and reconciliation must tell the replacement from the
order it replaced.
"""

from __future__ import annotations

import uuid

from tradepilot.trading.order_models import Order

CLIENT_ID_PREFIX = "tp-"
REVISION_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MAX_LIVE_REVISION = len(REVISION_DIGITS) - 1  # one character left within Binance's 36


def client_order_id(order_id: uuid.UUID, revision: int = 0) -> str:
    """The id the exchange knows a platform order by: ``tp-`` + 32 hex digits (35 characters);
    a replacement (revision ≥ 1, ``live.modify``) adds one base-62 digit (36)."""
    if not revision:
        return f"{CLIENT_ID_PREFIX}{order_id.hex}"
    return f"{CLIENT_ID_PREFIX}{order_id.hex}{REVISION_DIGITS[revision]}"


def parse_client_order_id(client_id: str | None) -> tuple[uuid.UUID, int] | None:
    """``(platform order id, revision)`` inside a ``tp-`` client order id; None: not one of ours."""
    if not client_id or not client_id.startswith(CLIENT_ID_PREFIX):
        return None
    body = client_id[len(CLIENT_ID_PREFIX):]
    digits, suffix = body[:32], body[32:]
    if len(suffix) > 1 or (suffix and suffix not in REVISION_DIGITS[1:]):
        return None
    try:
        return uuid.UUID(hex=digits), REVISION_DIGITS.index(suffix) if suffix else 0
    except ValueError:
        return None


def row_client_id(row: Order) -> str:
    """The client id of the order's current revision on the exchange."""
    return client_order_id(row.id, row.revision)


def live_venue_name(exchange_id: str) -> str:
    """``Order.venue`` of a live order: never a market-data venue, so the paper matching owner
    (which matches the orders of its market's venue) can never pick a live order up."""
    return f"live:{exchange_id}"
