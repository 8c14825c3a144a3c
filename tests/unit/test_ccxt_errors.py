"""The ccxt adapter boundary: error translation, precision modes, URL rebasing (no server needed)."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE

from tradepilot.core.errors import TradePilotError
from tradepilot.market.feeds.ccxt_errors import (
    BookOutOfSync,
    ExchangeAuthError,
    ExchangeBadRequest,
    ExchangeBadSymbol,
    ExchangeError,
    ExchangeRateLimited,
    ExchangeTemporaryError,
    ccxt_boundary,
    translate,
)
from tradepilot.market.feeds.ccxt_venues import (
    _rebase_urls,
    instrument_from_market,
    precision_to_step,
)


@pytest.mark.parametrize(("raised", "expected", "code", "retryable"), [
    (ccxt.RequestTimeout("timed out"), ExchangeTemporaryError, "exchange_unavailable", True),
    (ccxt.NetworkError("connection reset"), ExchangeTemporaryError, "exchange_unavailable", True),
    (ccxt.OnMaintenance("maintenance"), ExchangeTemporaryError, "exchange_unavailable", True),
    (ccxt.BadResponse("not json"), ExchangeTemporaryError, "exchange_unavailable", True),
    (ccxt.RateLimitExceeded("binance 429 Too many requests"), ExchangeRateLimited, "exchange_rate_limited", True),
    (ccxt.DDoSProtection("418 banned"), ExchangeRateLimited, "exchange_rate_limited", True),
    (ccxt.ChecksumError("orderbook checksum"), BookOutOfSync, "book_out_of_sync", True),
    (ccxt.AuthenticationError("invalid api key"), ExchangeAuthError, "exchange_auth_failed", False),
    (ccxt.PermissionDenied("no trading permission"), ExchangeAuthError, "exchange_auth_failed", False),
    (ccxt.BadSymbol("binance does not have market symbol FOO/BAR"), ExchangeBadSymbol, "unknown_symbol", False),
    (ccxt.InsufficientFunds("balance"), ExchangeBadRequest, "insufficient_funds", False),
    (ccxt.OrderNotFound("order 1"), ExchangeBadRequest, "order_not_found", False),
    (ccxt.InvalidOrder("min notional"), ExchangeBadRequest, "invalid_order", False),
    (ccxt.BadRequest("bad param"), ExchangeBadRequest, "exchange_rejected", False),
    (ccxt.ExchangeError("something else"), ExchangeError, "exchange_error", False),
])
def test_translation(raised: Exception, expected: type, code: str, retryable: bool) -> None:
    error = translate(raised, venue="binance")
    assert type(error) is expected
    assert isinstance(error, TradePilotError)  # the problem+json handler knows how to answer it
    assert (error.code, error.retryable, error.venue) == (code, retryable, "binance")


def test_statuses_never_look_like_our_own_auth_or_rate_limit() -> None:
    assert translate(ccxt.AuthenticationError("x")).status == 422
    limited = translate(ccxt.RateLimitExceeded("429 Too Many Requests, retry after 7 seconds"))
    assert limited.status == 503
    assert isinstance(limited, ExchangeRateLimited) and limited.retry_after == 7
    assert limited.headers == {"Retry-After": "7"}


def test_boundary_reraises_as_ours_with_the_cause() -> None:
    with pytest.raises(ExchangeBadSymbol) as info, ccxt_boundary("binance"):
        raise ccxt.BadSymbol("no such market")
    assert isinstance(info.value.__cause__, ccxt.BadSymbol)
    with pytest.raises(KeyError), ccxt_boundary("binance"):  # not ccxt's: untouched
        raise KeyError("x")


def test_precision_modes() -> None:
    assert precision_to_step(0.01, TICK_SIZE) == Decimal("0.01")
    assert precision_to_step(1e-05, TICK_SIZE) == Decimal("0.00001")
    assert precision_to_step(2, DECIMAL_PLACES) == Decimal("0.01")
    assert precision_to_step(0, DECIMAL_PLACES) == Decimal(1)
    assert precision_to_step(5, SIGNIFICANT_DIGITS) is None
    assert precision_to_step(None, TICK_SIZE) is None


def test_instrument_from_a_decimal_places_market() -> None:
    market = {"symbol": "ETH/EUR", "base": "ETH", "quote": "EUR", "active": False,
              "precision": {"price": 2, "amount": 8}, "limits": {"cost": {"min": 0.5}}}
    inst = instrument_from_market("kraken", market, DECIMAL_PLACES)
    assert (inst.tick_size, inst.step_size, inst.min_notional, inst.status) == (
        Decimal("0.01"), Decimal("1E-8"), Decimal("0.5"), "halted")


def test_rebase_urls_keeps_paths_and_swaps_hosts() -> None:
    api = {"public": "https://api.binance.com/api/v3", "ws": {"spot": "wss://stream.binance.com:9443/ws"},
           "other": "not a url"}
    out = _rebase_urls(api, "http://127.0.0.1:9000", "ws://127.0.0.1:9001/prefix")
    assert out == {"public": "http://127.0.0.1:9000/api/v3", "ws": {"spot": "ws://127.0.0.1:9001/prefix/ws"},
                   "other": "not a url"}


async def test_backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() -> None:
    import random

    from tradepilot.market.feeds.ccxt_feed import ExchangeFeed, ExchangeFeedConfig

    feed = ExchangeFeed(ExchangeFeedConfig(backoff_initial_seconds=0.5, backoff_max_seconds=30),
                        rng=random.Random(7))
    try:
        temporary = ExchangeTemporaryError("down")
        for attempt, ceiling in enumerate([0.5, 1, 2, 4, 8, 16, 30, 30]):
            delays = {feed._backoff(attempt, temporary) for _ in range(20)}
            assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1  # spread out
        limited = translate(ccxt.RateLimitExceeded("429, retry after 45"))
        assert feed._backoff(0, limited) == 45
    finally:
        await feed.stop()
