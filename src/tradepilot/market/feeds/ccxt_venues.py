"""Making ccxt exchange objects, per-venue capabilities, and ccxt markets as our instruments.

A :class:`VenueProfile` declares what we know about a venue beyond ccxt's ``has`` (options
that keep ccxt away from endpoints we do not need, whether trade ids are consecutive); an
unknown venue gets the default profile and works with what ccxt offers.

``rest_url`` / ``ws_url`` point a venue somewhere else (a proxy, a testnet, the fake Binance
of the test suite): the scheme and host of every HTTP(S) — respectively WS(S) — URL in the
exchange's ``urls["api"]`` are replaced, and their paths kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt
import ccxt.async_support
import ccxt.pro
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE

from tradepilot.market.feeds.ccxt_errors import ExchangeBadRequest
from tradepilot.market.types import Instrument


@dataclass(frozen=True)
class VenueProfile:
    options: Mapping[str, Any] = field(default_factory=dict)  # ccxt ``options`` merged into the defaults
    sequential_trade_ids: bool = False  # trade ids are integers without holes: a hole is a gap
    trade_backfill_limit: int = 1000  # how many recent trades one REST call can return


PROFILES: dict[str, VenueProfile] = {
    "binance": VenueProfile(
        options={
            "fetchMarkets": {"types": ["spot"]},  # no futures/options exchangeInfo calls
            "fetchCurrencies": False,  # a private sapi call we do not need
            "fetchMargins": False,
            "fetchTradesMethod": "publicGetTrades",  # trade ids, like the @trade stream (not aggTrades)
        },
        sequential_trade_ids=True,
    ),
}


def profile_for(exchange_id: str) -> VenueProfile:
    return PROFILES.get(exchange_id, VenueProfile())


def create_exchange(exchange_id: str, *, websocket: bool = True, rest_url: str | None = None,
                    ws_url: str | None = None, options: Mapping[str, Any] | None = None,
                    credentials: Mapping[str, str] | None = None) -> Any:
    """A ccxt exchange: ``ccxt.pro``'s class when wanted and available, else ``ccxt.async_support``'s."""
    module = ccxt.pro if websocket and exchange_id in ccxt.pro.exchanges else ccxt.async_support
    cls = getattr(module, exchange_id, None)
    if cls is None:
        raise ExchangeBadRequest(f"ccxt does not know the exchange {exchange_id!r}", code="unknown_exchange")
    config: dict[str, Any] = {"enableRateLimit": True,
                              "options": {**profile_for(exchange_id).options, **(options or {})}}
    config.update(credentials or {})
    exchange = cls(config)
    if rest_url or ws_url:
        exchange.urls["api"] = _rebase_urls(exchange.urls.get("api"), rest_url, ws_url)
    return exchange


def _rebase_urls(value: Any, rest_url: str | None, ws_url: str | None) -> Any:
    if isinstance(value, dict):
        return {k: _rebase_urls(v, rest_url, ws_url) for k, v in value.items()}
    if isinstance(value, str):
        parts = urlsplit(value)
        target = rest_url if parts.scheme in ("http", "https") else ws_url if parts.scheme in ("ws", "wss") else None
        if target:
            base = urlsplit(target)
            return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))
    return value


def to_decimal(value: Any) -> Decimal | None:
    """ccxt's numbers are floats (or strings): ``repr`` is the shortest exact-looking form."""
    if value is None:
        return None
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def precision_to_step(value: Any, mode: int) -> Decimal | None:
    """A ccxt ``precision`` entry as a step: TICK_SIZE is the step itself, DECIMAL_PLACES ``n`` is 10⁻ⁿ.

    SIGNIFICANT_DIGITS cannot be expressed as one step (it depends on the price), so ``None``.
    """
    if value is None:
        return None
    if mode == TICK_SIZE:
        return to_decimal(value)
    if mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(value))
    if mode == SIGNIFICANT_DIGITS:
        return None
    raise ValueError(f"unknown ccxt precision mode {mode}")


def instrument_from_market(venue: str, market: Mapping[str, Any], precision_mode: int) -> Instrument:
    """A ccxt unified market → :class:`Instrument` (tick, step and min notional as Decimals; 0 when unknown)."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    tick = precision_to_step(precision.get("price"), precision_mode)
    step = precision_to_step(precision.get("amount"), precision_mode)
    min_cost = to_decimal((limits.get("cost") or {}).get("min"))
    return Instrument(
        venue=venue,
        symbol=market["symbol"],
        base=market["base"],
        quote=market["quote"],
        tick_size=tick or Decimal(0),
        step_size=step or Decimal(0),
        min_notional=min_cost or Decimal(0),
        status="halted" if market.get("active") is False else "trading",
    )
