"""``LiveExchange``: the one place where an account's orders and balances meet ccxt.

Each live account gets its own ccxt async client, made with its decrypted credentials for
the duration of one use (``async with venues.open(account) as exchange``) and closed after,
so a key is held in memory only while it is needed. Markets are loaded once per process and
exchange and handed to every client (``set_markets``): an order does not cost an
``exchangeInfo`` call.

Every call goes through :meth:`LiveExchange._call`, which

* refuses to send anything while the exchange asked us to back off (a 429 or 418 with
  ``Retry-After``): the wait is remembered per exchange for the whole process, because
  Binance bans by IP, not by key — so nothing is sent again into a ban;
* translates ccxt's exceptions into the platform's (``errors.translate_live``), telling
  "outcome unknown" (sent, answer lost) from "rejected";
* turns anything ccxt's own parsing chokes on into ``MalformedAnswer``.

ccxt keeps the exchange's number strings (``number = str``), so ``answers`` makes them exact.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import ccxt

from tradepilot.core.errors import NotFound
from tradepilot.core.secrets_box import secret_box
from tradepilot.market.feeds.ccxt_venues import create_exchange, instrument_from_market
from tradepilot.market.service import normalize_symbol
from tradepilot.market.types import Instrument, OrderBook
from tradepilot.trading.live.answers import (
    VenueOrder,
    VenueTrade,
    amount,
    parse_balances,
    parse_order,
    parse_trade,
)
from tradepilot.trading.live.credentials import Credentials, unseal
from tradepilot.trading.live.errors import (
    ExchangeBadRequest,
    ExchangeError,
    ExchangeRateLimited,
    MalformedAnswer,
    OutcomeUnknown,
    translate_live,
)

if TYPE_CHECKING:
    from tradepilot.core.clock import Clock
    from tradepilot.runtime import Runtime
    from tradepilot.trading.models import TradingAccount

T = TypeVar("T")

# ccxt logs every request at DEBUG with its headers — the API key among them. An account's
# client logs through this logger instead, which never lets a DEBUG record out, whatever
# level the operator gives the rest of the process.
_CCXT_LOGGER = logging.getLogger("tradepilot.trading.live.ccxt")
_CCXT_LOGGER.setLevel(logging.WARNING)


@dataclass
class BackOff:
    """An exchange's "stop sending until …", shared by every account of that exchange."""

    until: datetime | None = None

    def remaining(self, now: datetime) -> float:
        return 0.0 if self.until is None else max((self.until - now).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class KeyPermissions:
    """What an API key may do, as far as the exchange tells (None: it does not say)."""

    withdrawals: bool | None
    trading: bool | None
    detail: dict[str, Any]


async def _binance_permissions(client: Any) -> KeyPermissions:
    raw = await client.sapi_get_account_apirestrictions()
    if not isinstance(raw, dict) or not isinstance(raw.get("enableWithdrawals"), bool):
        raise MalformedAnswer("the exchange's key restrictions answer has no enableWithdrawals")
    keep = ("ipRestrict", "enableReading", "enableSpotAndMarginTrading", "enableWithdrawals",
            "enableInternalTransfer", "enableMargin", "enableFutures", "permitsUniversalTransfer")
    return KeyPermissions(withdrawals=raw["enableWithdrawals"],
                          trading=bool(raw.get("enableSpotAndMarginTrading")),
                          detail={k: raw[k] for k in keep if isinstance(raw.get(k), bool)})


# Per exchange: how to read a key's permissions (exchanges without such an endpoint: absent)
PERMISSION_READERS: dict[str, Callable[[Any], Awaitable[KeyPermissions]]] = {"binance": _binance_permissions}
# Per exchange: the parameters that ask for one order's own trades
ORDER_TRADES_PARAMS: dict[str, Callable[[str], dict[str, Any]]] = {"binance": lambda oid: {"orderId": oid}}
# Exchanges whose trade ids are integers increasing per symbol, asked after with a cursor
TRADE_ID_CURSORS = frozenset({"binance"})
# Per exchange: the conditional order types it keeps and triggers itself, and the ccxt
# parameter that carries the trigger (ccxt's binance turns ``market`` / ``limit`` with
# ``stopLossPrice`` into STOP_LOSS / STOP_LOSS_LIMIT, with ``takeProfitPrice`` into
# TAKE_PROFIT / TAKE_PROFIT_LIMIT, and sends the price as ``stopPrice``)
NATIVE_STOPS: dict[str, dict[str, tuple[str, str]]] = {"binance": {
    "stop": ("market", "stopLossPrice"), "stop_limit": ("limit", "stopLossPrice"),
    "take_profit": ("market", "takeProfitPrice"), "take_profit_limit": ("limit", "takeProfitPrice")}}


def trade_number(trade: VenueTrade) -> int:
    """A trade id as the integer the cursor compares (MalformedAnswer if it is not one)."""
    if not trade.id.isdigit() or len(trade.id) > 18:
        raise MalformedAnswer(f"the exchange sent a trade id that is not a number: {trade.id[:20]!r}")
    return int(trade.id)


class LiveVenues:
    """One per process (``runtime.services["live_venues"]``): markets and back-offs per exchange."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.clock: Clock = runtime.clock
        self.backoffs: dict[str, BackOff] = {}
        self._markets: dict[str, dict[str, Any]] = {}
        self._markets_lock = asyncio.Lock()

    def supported(self, exchange_id: str) -> bool:
        return exchange_id in self.settings.live_exchanges and exchange_id in ccxt.exchanges

    def exchange(self, exchange_id: str, credentials: Credentials) -> LiveExchange:
        client = create_exchange(exchange_id, websocket=False, rest_url=self.settings.live_exchange_rest_url,
                                 credentials=credentials.for_ccxt())
        return LiveExchange(self, exchange_id, self.configure(client))

    def configure(self, client: Any) -> Any:
        """What every ccxt client of a live account needs (REST here, ccxt.pro in ``user_stream``)."""
        client.number = str  # exact: the exchange's own number strings, never floats
        client.logger, client.verbose = _CCXT_LOGGER, False  # no request (and its key) in any log
        client.timeout = int(self.settings.live_request_timeout_seconds * 1000)
        # reconciliation asks for every open order at once (Binance: one heavier request
        # instead of one per symbol); ccxt refuses that unless told it is meant
        client.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
        return client

    @asynccontextmanager
    async def open(self, account: TradingAccount) -> AsyncIterator[LiveExchange]:
        """The account's exchange, with its credentials decrypted for this use only."""
        exchange = self.exchange(account.venue, unseal(secret_box(self.runtime), account.credentials_encrypted))
        try:
            yield exchange
        finally:
            await exchange.close()


class LiveExchange:
    """One exchange account through ccxt (see the module's docstring)."""

    def __init__(self, venues: LiveVenues, exchange_id: str, client: Any) -> None:
        self.venues = venues
        self.venue = exchange_id
        self._client = client
        self.backoff = venues.backoffs.setdefault(exchange_id, BackOff())

    async def close(self) -> None:
        await self._client.close()

    # --- the boundary ---------------------------------------------------------------------

    async def _call(self, call: Callable[[], Awaitable[T]], *, sent: bool = False) -> T:
        now = self.venues.clock.now()
        wait = self.backoff.remaining(now)
        if wait > 0:
            raise ExchangeRateLimited(f"{self.venue} asked us to slow down; nothing was sent.", venue=self.venue,
                                      retry_after=wait)
        try:
            return await call()
        except ccxt.BaseError as exc:
            error = translate_live(exc, venue=self.venue, sent=sent, retry_after=self._retry_after())
            if isinstance(error, ExchangeRateLimited):
                self.backoff.until = now + timedelta(seconds=error.retry_after or 1.0)
            raise error from None  # ccxt's text is in the error; its traceback would carry the request
        except ExchangeError:
            raise
        except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError) as exc:
            # ccxt's parser choked on the answer (a NaN it tried to compute with, a missing key)
            detail = f"the exchange's answer could not be read ({type(exc).__name__})"
            raise (OutcomeUnknown(detail, venue=self.venue) if sent else MalformedAnswer(detail, venue=self.venue)) \
                from None

    def _retry_after(self) -> float | None:
        headers = getattr(self._client, "last_response_headers", None) or {}
        for name, value in headers.items():
            if name.lower() == "retry-after":
                try:
                    return max(float(value), 1.0)
                except ValueError:
                    return None
        return None

    # --- markets ----------------------------------------------------------------------------

    async def _ensure_markets(self) -> None:
        cache = self.venues._markets
        if self.venue not in cache:
            async with self.venues._markets_lock:
                if self.venue not in cache:
                    cache[self.venue] = await self._call(self._client.load_markets)
        if not self._client.markets:
            self._client.set_markets(cache[self.venue])

    async def instrument(self, symbol: str) -> Instrument:
        """The exchange's instrument (tick, step, min notional), 404 ``unknown_symbol`` if not listed."""
        await self._ensure_markets()
        market = self._client.markets.get(normalize_symbol(symbol))
        if market is None or not market.get("spot", True):
            raise NotFound(f"Unknown symbol {symbol!r} on {self.venue}.", code="unknown_symbol")
        return instrument_from_market(self.venue, market, self._client.precisionMode)

    async def order_book(self, symbol: str, depth: int = 20) -> OrderBook:
        await self._ensure_markets()
        raw = await self._call(lambda: self._client.fetch_order_book(symbol, depth))
        # ccxt sorts books as floats whatever ``number`` says: ``repr`` is the shortest string that
        # round-trips, i.e. the exchange's own text for its ≤ 15 significant digits. The book
        # only prices the reservation and the filters' check; fills use the order's exact strings.
        def exact(value: Any) -> Any:
            return repr(value) if isinstance(value, float) else value

        levels = {side: tuple((amount(exact(p), "book price", positive=True),
                               amount(exact(q), "book quantity", positive=True))
                              for p, q, *_ in raw.get(side) or ()) for side in ("bids", "asks")}
        return OrderBook(venue=self.venue, symbol=symbol, seq=int(raw.get("nonce") or 0), bids=levels["bids"],
                         asks=levels["asks"], ts=self.venues.clock.now())

    # --- the account ----------------------------------------------------------------------------

    async def key_permissions(self) -> KeyPermissions | None:
        reader = PERMISSION_READERS.get(self.venue)
        if reader is None:
            return None
        return await self._call(lambda: reader(self._client))

    async def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """``{asset: (free, locked)}`` of every asset the account holds."""
        await self._ensure_markets()
        return parse_balances(await self._call(self._client.fetch_balance))

    # --- orders -----------------------------------------------------------------------------------

    async def create_order(self, *, symbol: str, type: str, side: str, quantity: Decimal,
                           price: Decimal | None, client_order_id: str,
                           time_in_force: str | None = None, stop_price: Decimal | None = None) -> VenueOrder:
        """Send an order once. ``OutcomeUnknown`` if the answer is lost: look it up, never resend.
        A conditional type (``stop``, ``take_profit``…) goes as the exchange's own (``NATIVE_STOPS``)."""
        await self._ensure_markets()
        params: dict[str, Any] = {"newClientOrderId": client_order_id} if self.venue == "binance" \
            else {"clientOrderId": client_order_id}
        native = NATIVE_STOPS.get(self.venue, {}).get(type)
        if native is not None:
            if stop_price is None:
                raise ExchangeBadRequest("A conditional order needs its stop price.", venue=self.venue,
                                         code="invalid_order")
            type, trigger_param = native
            params[trigger_param] = format(stop_price, "f")
        if time_in_force is not None and type == "limit":
            params["timeInForce"] = time_in_force.upper()
        raw = await self._call(lambda: self._client.create_order(
            symbol, type, side, format(quantity, "f"), None if price is None else format(price, "f"), params),
            sent=True)
        try:
            return parse_order(raw)
        except MalformedAnswer as exc:  # sent and taken, but its answer cannot be trusted: look it up
            raise OutcomeUnknown(exc.detail, venue=self.venue) from None

    async def find_order(self, *, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The order by our client id; None while the exchange says it does not exist."""
        await self._ensure_markets()
        try:
            raw = await self._call(lambda: self._client.fetch_order(
                None, symbol, {"origClientOrderId": client_order_id}))
        except ExchangeBadRequest as exc:
            if exc.code == "order_not_found":
                return None
            raise
        return parse_order(raw)

    async def order_trades(self, *, symbol: str, exchange_order_id: str) -> list[VenueTrade]:
        """The executions of one order (for an answer that carried none: a looked-up order)."""
        await self._ensure_markets()
        params = ORDER_TRADES_PARAMS.get(self.venue, lambda oid: {})(exchange_order_id)
        raw = await self._call(lambda: self._client.fetch_my_trades(symbol, None, None, params))
        return [parse_trade(t) for t in raw if params or str(t.get("order")) == exchange_order_id]


    # --- reconciliation (trading/live/reconciliation.py) -------------------------------------------

    async def open_orders(self) -> list[VenueOrder]:
        """Every open order of the account, on every symbol, whoever placed it."""
        await self._ensure_markets()
        raw = await self._call(lambda: self._client.fetch_open_orders())
        return [parse_order(o) for o in raw]

    async def order_by_id(self, *, symbol: str, exchange_order_id: str) -> VenueOrder | None:
        """An order by the exchange's own id (one found through its trades); None if unknown there."""
        await self._ensure_markets()
        try:
            raw = await self._call(lambda: self._client.fetch_order(exchange_order_id, symbol))
        except ExchangeBadRequest as exc:
            if exc.code == "order_not_found":
                return None
            raise
        return parse_order(raw)

    async def trades_after(self, *, symbol: str, after_id: int | None, page: int = 1000) -> list[VenueTrade]:
        """The account's trades of ``symbol`` with an id above ``after_id`` (all it keeps: None),
        oldest first, page after page (Binance: ``myTrades?fromId``; its trade ids are integers
        increasing per symbol)."""
        if self.venue not in TRADE_ID_CURSORS:
            raise ExchangeBadRequest(f"Reconciling trades is not available on {self.venue} yet.", venue=self.venue,
                                     code="exchange_not_supported")
        await self._ensure_markets()
        out: list[VenueTrade] = []
        while True:
            params: dict[str, Any] = {} if after_id is None else {"fromId": after_id + 1}
            raw = await self._call(lambda p=params: self._client.fetch_my_trades(symbol, None, page, p))  # type: ignore[misc]
            batch = [parse_trade(t) for t in raw]
            for trade in batch:
                trade_id = trade_number(trade)
                if after_id is not None and trade_id <= after_id:
                    raise MalformedAnswer("the exchange sent a trade older than the one asked after", venue=self.venue)
            out.extend(batch)
            if len(batch) < page:
                return sorted(out, key=trade_number)
            after_id = max(trade_number(t) for t in batch)

    async def cancel_order(self, *, symbol: str, client_order_id: str) -> VenueOrder:
        """Cancel by our client id (``order_not_found`` if the exchange has nothing open by it)."""
        await self._ensure_markets()
        raw = await self._call(lambda: self._client.cancel_order(None, symbol, {"origClientOrderId": client_order_id}))
        return parse_order(raw)
