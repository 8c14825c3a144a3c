"""Market feeds: where trades and books come from.

- ``replay`` — :class:`~.replay.ReplayFeed`: recorded candles, trades and Binance depth
  captures (CSV / Parquet / gz) played at a chosen speed (:mod:`.sources`, :mod:`.depth`).
- ``exchange`` — :class:`~.ccxt_feed.ExchangeFeed`: a real venue through ccxt (``ccxt.pro``
  websockets, or REST polling), with reconnects, gap detection and resync.
- ``simulated`` — the built-in simulated market (owned by the market core).

:func:`build_feed` makes the replay or exchange feed the settings ask for. Importing this
package imports no ccxt (that takes seconds); the exchange modules load it when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradepilot.config import Settings
    from tradepilot.core.clock import Clock
    from tradepilot.market.types import MarketFeed


def build_feed(kind: str, settings: Settings, *, clock: Clock | None = None) -> MarketFeed:
    """The ``replay`` or ``exchange`` feed configured by ``TRADEPILOT_MARKET_REPLAY_*`` / ``…_EXCHANGE_*``."""
    if kind == "replay":
        from tradepilot.market.feeds.replay import ReplayConfig, ReplayFeed

        return ReplayFeed.from_config(ReplayConfig.from_settings(settings), clock=clock)
    if kind == "exchange":
        from tradepilot.market.feeds.ccxt_feed import ExchangeFeed, ExchangeFeedConfig

        return ExchangeFeed(ExchangeFeedConfig.from_settings(settings), clock=clock)
    raise ValueError(f"unknown market feed {kind!r}: replay or exchange (simulated is built elsewhere)")
