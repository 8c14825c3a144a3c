"""The live venue's failures, translated once at the adapter boundary (``LiveExchange``).

The market adapters' tree (``market.feeds.ccxt_errors``) is reused, with what an order's
life needs on top of it:

* **rejected** — the exchange answered and refused: ``ExchangeBadRequest`` with ``code``
  ``insufficient_funds``, ``invalid_order``, ``order_not_found`` or ``exchange_rejected``
  (422), ``ExchangeAuthError`` (422 ``exchange_auth_failed``). Nothing happened there.
* **rate limited** — 429 or 418 (an IP ban): ``ExchangeRateLimited`` (503
  ``exchange_rate_limited`` + ``Retry-After``). Binance refuses such a request before it
  processes it, so an order that got it was not placed.
* **outcome unknown** — the request may have reached the exchange but no usable answer came
  back (a timeout, a dropped connection, a 5xx, a malformed answer): :class:`OutcomeUnknown`.
  For an order this is *not* a failure to retry: the order may exist, and only a lookup by
  its client order id can tell.
* **unavailable** — a read that failed the same way: ``ExchangeTemporaryError`` (503
  ``exchange_unavailable``); safe to retry later.
* **malformed** — an answer that parsed but cannot be true (NaN, negative or huge numbers,
  missing fields): :class:`MalformedAnswer` (502 ``exchange_bad_answer``), never written.
"""

from __future__ import annotations

import ccxt

from tradepilot.market.feeds.ccxt_errors import (
    ExchangeAuthError,
    ExchangeBadRequest,
    ExchangeError,
    ExchangeRateLimited,
    ExchangeTemporaryError,
    translate,
)

__all__ = ["ExchangeAuthError", "ExchangeBadRequest", "ExchangeError", "ExchangeRateLimited",
           "ExchangeTemporaryError", "MalformedAnswer", "OutcomeUnknown", "translate_live"]


class MalformedAnswer(ExchangeError):
    status, code, title = 502, "exchange_bad_answer", "The exchange's answer could not be trusted"


class OutcomeUnknown(ExchangeTemporaryError):
    """Sent, but whether the exchange acted is unknown: look the order up, never send it again."""

    code, title = "order_outcome_unknown", "The exchange's answer to the order was lost"


def translate_live(exc: BaseException, *, venue: str, sent: bool, retry_after: float | None) -> ExchangeError:
    """ccxt's exception → ours. ``sent``: the call may have changed something on the exchange
    (placing an order), so a lost answer is :class:`OutcomeUnknown` rather than a plain
    temporary error. Rate limits come first: ccxt files 429/418 under ``NetworkError`` too."""
    if isinstance(exc, ExchangeError):
        return OutcomeUnknown(exc.detail, venue=venue) if sent and isinstance(exc, MalformedAnswer) else exc
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        return ExchangeRateLimited(_short(exc), venue=venue, retry_after=retry_after or 1.0)
    if sent and isinstance(exc, (ccxt.NetworkError, ccxt.OperationFailed)):
        return OutcomeUnknown(_short(exc), venue=venue)
    return translate(exc, venue=venue)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
