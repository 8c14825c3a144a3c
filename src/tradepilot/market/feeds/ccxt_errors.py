"""ccxt's exceptions, translated once, at the adapter boundary, into a small tree of our own.

Nothing outside the ccxt adapters catches a ``ccxt`` exception. Code that calls ccxt wraps the
call in :func:`ccxt_boundary` (or calls :func:`translate`) and the rest of the platform sees:

``ExchangeError`` (502 ``exchange_error``) — the venue failed in a way we do not classify
  ├─ ``ExchangeTemporaryError`` (503 ``exchange_unavailable``) — network trouble, timeouts,
  │   maintenance, garbage answers: **retry with back-off**
  │    ├─ ``ExchangeRateLimited`` (503 ``exchange_rate_limited``, ``Retry-After``) — slow
  │    │   down, then retry
  │    └─ ``BookOutOfSync`` (503 ``book_out_of_sync``) — a gap in the book's update ids:
  │        **resync** (fetch a new snapshot)
  ├─ ``ExchangeAuthError`` (422 ``exchange_auth_failed``) — the API key is wrong, lacks a
  │   permission or the account is suspended: **stop** until a person fixes it
  └─ ``ExchangeBadRequest`` (422 ``exchange_rejected``, or a more precise ``code`` such as
      ``insufficient_funds``, ``order_not_found``, ``invalid_order``, ``not_supported``) —
      the request's fault: **do not retry** the same request
       └─ ``ExchangeBadSymbol`` (422 ``unknown_symbol``) — the venue does not list the symbol

The statuses apply when such an error reaches the HTTP edge (``core.problems``); the venue's
rate limit is a 503, never a 429, so a client does not confuse it with our own limits, and
an exchange's authentication failure is a 422, never a 401, which would sign our user out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import ccxt

from tradepilot.core.errors import TradePilotError


class ExchangeError(TradePilotError):
    status, code, title = 502, "exchange_error", "The exchange failed"
    retryable = False

    def __init__(self, detail: str | None = None, *, venue: str | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
        super().__init__(detail, code=code, headers=headers, extra={"venue": venue} if venue else None)
        self.venue = venue
        self.retry_after = retry_after


class ExchangeTemporaryError(ExchangeError):
    status, code, title = 503, "exchange_unavailable", "The exchange is temporarily unavailable"
    retryable = True


class ExchangeRateLimited(ExchangeTemporaryError):
    code, title = "exchange_rate_limited", "The exchange's rate limit was reached"


class BookOutOfSync(ExchangeTemporaryError):
    code, title = "book_out_of_sync", "The order book lost updates and must be resynchronised"


class ExchangeAuthError(ExchangeError):
    status, code, title = 422, "exchange_auth_failed", "The exchange refused the credentials"


class ExchangeBadRequest(ExchangeError):
    status, code, title = 422, "exchange_rejected", "The exchange rejected the request"


class ExchangeBadSymbol(ExchangeBadRequest):
    code, title = "unknown_symbol", "The exchange does not list this symbol"


# Most specific first: the first isinstance match wins.
_MAP: tuple[tuple[type[BaseException], type[ExchangeError], str | None], ...] = (
    (ccxt.ChecksumError, BookOutOfSync, None),
    (ccxt.RateLimitExceeded, ExchangeRateLimited, None),
    (ccxt.DDoSProtection, ExchangeRateLimited, None),
    (ccxt.NetworkError, ExchangeTemporaryError, None),  # RequestTimeout, ExchangeNotAvailable, OnMaintenance, InvalidNonce
    (ccxt.OperationFailed, ExchangeTemporaryError, None),  # BadResponse, NullResponse, CancelPending
    (ccxt.AuthenticationError, ExchangeAuthError, None),  # PermissionDenied, AccountSuspended, …
    (ccxt.BadSymbol, ExchangeBadSymbol, None),
    (ccxt.InsufficientFunds, ExchangeBadRequest, "insufficient_funds"),
    (ccxt.OrderNotFound, ExchangeBadRequest, "order_not_found"),
    (ccxt.InvalidOrder, ExchangeBadRequest, "invalid_order"),
    (ccxt.NotSupported, ExchangeBadRequest, "not_supported"),
    (ccxt.BadRequest, ExchangeBadRequest, None),
    (ccxt.ArgumentsRequired, ExchangeBadRequest, None),
    (ccxt.OperationRejected, ExchangeBadRequest, None),
    (ccxt.InvalidAddress, ExchangeBadRequest, "invalid_address"),
)

_RETRY_AFTER = re.compile(r"retry[- ]after\D{0,4}(\d+(?:\.\d+)?)", re.IGNORECASE)


def translate(exc: BaseException, *, venue: str | None = None) -> ExchangeError:
    """The :class:`ExchangeError` for a ccxt exception (anything else unknown is a plain ``ExchangeError``)."""
    if isinstance(exc, ExchangeError):
        return exc
    detail = _first_line(str(exc)) or type(exc).__name__
    for ccxt_type, ours, code in _MAP:
        if isinstance(exc, ccxt_type):
            retry_after = _retry_after(detail) if ours is ExchangeRateLimited else None
            return ours(detail, venue=venue, code=code, retry_after=retry_after)
    return ExchangeError(detail, venue=venue)


@contextmanager
def ccxt_boundary(venue: str | None = None) -> Iterator[None]:
    """``with ccxt_boundary("binance"): await exchange.fetch_ohlcv(...)`` — ccxt errors leave as ours."""
    try:
        yield
    except ccxt.BaseError as exc:
        raise translate(exc, venue=venue) from exc


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:500]


def _retry_after(detail: str) -> float | None:
    match = _RETRY_AFTER.search(detail)
    return float(match.group(1)) if match else None
