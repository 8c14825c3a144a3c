"""A live account's user-data stream: order updates pushed by the exchange as they happen.

Without it a fill on the exchange — a resting limit taken hours later, a stop-loss triggered
there — reaches the platform at the next periodic reconciliation (a minute by default). Where
ccxt.pro can watch an exchange's private orders (``watch_orders``; Binance spot: the WebSocket
API's ``userDataStream.subscribe.signature``), the process holding the account's reconciliation
lease keeps that stream open and hands every update to the reconciler, which applies it through
the same writes as a run (``Reconciliation.apply_updates``): the update is a hint, the order's
trades are still read from the exchange before anything is written, so a forged or garbled
push can never reach the ledger. An exchange without the stream keeps REST polling alone.

A stream can miss what happens while it is down, so every (re)subscription asks for a full
reconciliation run; connection failures back off exponentially (up to a minute) and are
logged, never raised: the periodic runs go on either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ccxt.pro

from tradepilot.core.lease import LeaseLost
from tradepilot.core.secrets_box import secret_box
from tradepilot.market.feeds.ccxt_venues import create_exchange
from tradepilot.trading.live.accounts import detached_live_account, live_venues
from tradepilot.trading.live.answers import VenueOrder, parse_order
from tradepilot.trading.live.credentials import unseal
from tradepilot.trading.live.errors import MalformedAnswer
from tradepilot.trading.models import TradingAccount

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.trading.live.user_stream")

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 60.0
CACHE_CHECK_SECONDS = 1.0

OnOrders = Callable[[list[VenueOrder]], Awaitable[None]]
OnSubscribed = Callable[[], None]


def streams_orders(exchange_id: str) -> bool:
    """Whether ccxt.pro can watch this exchange's private order updates."""
    cls = getattr(ccxt.pro, exchange_id, None) if exchange_id in ccxt.pro.exchanges else None
    return cls is not None and bool(cls().has.get("watchOrders"))


class UserStream:
    """Follows one live account's order updates until cancelled (see the module's docstring)."""

    def __init__(self, runtime: Runtime, account_id: uuid.UUID, on_orders: OnOrders,
                 on_subscribed: OnSubscribed) -> None:
        self.runtime = runtime
        self.account_id = account_id
        self.on_orders = on_orders
        self.on_subscribed = on_subscribed
        self.subscriptions = 0  # how many times the stream was (re)subscribed

    async def run(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        while True:
            account = await detached_live_account(self.runtime, self.account_id)
            if account is None or not streams_orders(account.venue):
                return  # gone, no longer live, or an exchange without the stream: REST polling alone
            client = self._client(account)
            subscribed = self.subscriptions
            try:
                await self._follow(client)
            except (asyncio.CancelledError, LeaseLost):
                raise
            except Exception as exc:  # noqa: BLE001 - the connection dropped, the exchange refused: back off, reconnect
                logger.warning("live user-data stream interrupted; reconnecting in %.1f s", backoff,
                               extra={"account_id": str(self.account_id), "error": type(exc).__name__})
            finally:
                await asyncio.shield(self._close(client))
            if self.subscriptions > subscribed:  # it was up: this drop is a first failure, not the next
                backoff = FIRST_BACKOFF_SECONDS
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _follow(self, client: Any) -> None:
        await client.load_markets()
        await client.authenticate()  # subscribes; updates pushed from here on are kept for watch_orders
        self.subscriptions += 1
        self.on_subscribed()  # what happened while no stream was open is found by a full run
        applied: dict[str, tuple[Any, Any]] = {}
        while True:
            # ccxt.pro wakes a waiting watch_orders on an update, but an update arriving while
            # nothing waits (during the previous batch, or right behind another one in the same
            # read) only lands in its cache: so the cache is what is read, at every wake-up and
            # at least every CACHE_CHECK_SECONDS
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CACHE_CHECK_SECONDS):
                    await client.watch_orders()
            views = self._changed(client.orders or [], applied)
            if views:
                await self.on_orders(views)

    def _changed(self, cached: list[dict[str, Any]], applied: dict[str, tuple[Any, Any]]) -> list[VenueOrder]:
        """The stream's orders whose status or filled quantity moved since they were last applied."""
        views, seen = [], {}
        for raw in list(cached):
            key = (raw.get("status"), raw.get("filled"))
            seen[raw.get("id")] = key
            if applied.get(raw.get("id")) == key:
                continue
            try:  # the push's own trades are not used: each order's trades are read from the exchange
                views.append(parse_order({**raw, "trades": None}))
            except MalformedAnswer as exc:  # never written; the periodic run reads the order again
                logger.warning("live user-data stream: malformed order update ignored",
                               extra={"account_id": str(self.account_id), "error": str(exc)})
        applied.clear()
        applied.update(seen)
        return views

    def _client(self, account: TradingAccount) -> Any:
        settings = self.runtime.settings
        credentials = unseal(secret_box(self.runtime), account.credentials_encrypted)
        client = create_exchange(account.venue, websocket=True, rest_url=settings.live_exchange_rest_url,
                                 ws_url=settings.live_exchange_ws_url, credentials=credentials.for_ccxt())
        live_venues(self.runtime).configure(client)
        return client

    @staticmethod
    async def _close(client: Any) -> None:
        try:
            await client.close()
        except Exception:  # closing a broken connection: nothing more to do
            logger.debug("closing a live user-data stream failed", exc_info=True)
