"""A small Binance **spot trading** venue on loopback: the signed REST API ccxt's ``binance`` uses.

Beside ``tests/fakes/binance.py`` (market data from a recorded capture), this one keeps
accounts and orders, so the live venue of TradePilot can be tested against the real ccxt
library pointed at it through ``urls``:

* public: ``/api/v3/exchangeInfo`` (the same symbols as the market-data fake), ``depth``
  (a fixed book per symbol, :attr:`FakeBinanceSpot.books`), ``ping``, ``time``;
* signed (``X-MBX-APIKEY`` + HMAC-SHA256 ``signature`` checked like Binance does):
  ``/api/v3/account``, ``order`` (POST / GET / DELETE, by ``orderId`` or
  ``origClientOrderId``), ``openOrders``, ``myTrades``, ``/sapi/v1/account/apiRestrictions``.

Orders match against the fixed book at once (a market order walks it; a limit order takes
what crosses and rests the rest, which :meth:`FakeBinanceSpot.fill_resting` fills later).
Commission is :attr:`fee_rate` of the quote amount, in :attr:`fee_asset` (the quote asset if
None). Duplicated ``newClientOrderId`` of an open order is refused (-2010), as Binance does.

Knobs for the failure tests: :meth:`accept_then_timeout` (record the order, then answer only
after the client gave up), :attr:`hide_fresh_orders` (lookups by id answer -2013 "Order does
not exist" that many times for an order the venue just took), :meth:`rate_limit_next` (429 or
418 with ``Retry-After``), :meth:`malform_next` (change the next answer of an endpoint: a NaN,
a negative or huge number, a missing field), :meth:`fail_next` (any status and body), :attr:`on_order_taken` (called
with an order the venue took, before it is answered: a test kills its client there).
Conditional orders (``STOP_LOSS``, ``STOP_LOSS_LIMIT``, ``TAKE_PROFIT``, ``TAKE_PROFIT_LIMIT``
with ``stopPrice``) wait with ``isWorking: false`` — refused (-2010) if they would trigger at once
— until :meth:`move_price` moves the market through their stop: then a ``STOP_LOSS`` /
``TAKE_PROFIT`` fills as a market order on the moved book, a ``_LIMIT`` one works at its price.
:meth:`place_by_hand` and :meth:`cancel_by_hand` act as the account's owner would on the
exchange's own site (reconciliation must find and respect such orders).
:attr:`requests` lists what was asked, :attr:`orders` what exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.binance import SYMBOLS

ZERO = Decimal(0)
SERVER_TIME = 1723161600000
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
LIMIT_PRICED = ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")  # match at their price once working


def _s(value: Decimal) -> str:
    return f"{value:.8f}"


@dataclass
class FakeAccount:
    api_key: str
    secret: str
    balances: dict[str, Decimal]
    restrictions: dict[str, Any] = field(default_factory=lambda: {
        "ipRestrict": False, "createTime": SERVER_TIME, "enableReading": True, "enableSpotAndMarginTrading": True,
        "enableWithdrawals": False, "enableInternalTransfer": False, "enableMargin": False,
        "enableFutures": False, "permitsUniversalTransfer": False, "enableVanillaOptions": False})


@dataclass
class FakeOrder:
    api_key: str
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    type: str  # MARKET / LIMIT
    quantity: Decimal
    price: Decimal | None
    time_in_force: str | None
    status: str = "NEW"
    executed: Decimal = ZERO
    quote: Decimal = ZERO
    fills: list[dict[str, Any]] = field(default_factory=list)
    time: int = SERVER_TIME
    lookups_hidden: int = 0  # GET /order answers "does not exist" this many more times
    stop_price: Decimal | None = None  # STOP_LOSS(_LIMIT) / TAKE_PROFIT(_LIMIT): the trigger
    working: bool = True  # False: a stop order waiting for its trigger (Binance's isWorking)

    def as_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
                "clientOrderId": self.client_order_id, "price": _s(self.price or ZERO),
                "origQty": _s(self.quantity), "executedQty": _s(self.executed),
                "cummulativeQuoteQty": _s(self.quote), "status": self.status,
                "timeInForce": self.time_in_force or "GTC", "type": self.type, "side": self.side,
                "stopPrice": _s(self.stop_price or ZERO), "icebergQty": "0.00000000", "time": self.time,
                "updateTime": self.time, "isWorking": self.working, "workingTime": self.time if self.working else -1,
                "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "EXPIRE_MAKER"}


class FakeBinanceSpot:
    """The trading venue: an aiohttp app on one loopback port."""

    def __init__(self) -> None:
        self.accounts: dict[str, FakeAccount] = {}
        self.orders: list[FakeOrder] = []
        self.trades: list[dict[str, Any]] = []
        self.books: dict[str, dict[str, list[tuple[Decimal, Decimal]]]] = {
            "BTCUSDT": {"bids": [(Decimal(59990), Decimal("0.5")), (Decimal(59980), Decimal(1))],
                        "asks": [(Decimal(60000), Decimal("0.04")), (Decimal(60010), Decimal("0.05")),
                                 (Decimal(60020), Decimal(1))]},
            "ETHUSDT": {"bids": [(Decimal(2999), Decimal(10))], "asks": [(Decimal(3001), Decimal(10))]},
        }
        self.fee_rate = Decimal("0.001")
        self.last_prices: dict[str, Decimal] = {}  # what stop orders trigger on (default: the book's mid)
        self.fee_asset: str | None = None
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, endpoint, params)
        self.hide_fresh_orders = 0
        self.on_order_taken: Callable[[FakeOrder], None] | None = None  # called before an order is answered
        self.timeout_seconds = 3.0  # how long an accept-then-timeout answer is held back
        self._timeouts = 0
        self._rate_limits: list[tuple[int, int]] = []
        self._malformed: list[tuple[str, Callable[[Any], Any]]] = []
        self._failures: list[tuple[str, int, dict[str, Any]]] = []
        self._ids = itertools.count(1000)
        self._trade_ids = itertools.count(500)
        self._runner: web.AppRunner | None = None
        self._held: list[asyncio.Task[Any]] = []
        self.port = 0

    # --- set-up -------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_account(self, api_key: str, secret: str, balances: dict[str, str], *,
                    withdrawals: bool = False) -> FakeAccount:
        account = FakeAccount(api_key, secret, {a: Decimal(v) for a, v in balances.items()})
        account.restrictions["enableWithdrawals"] = withdrawals
        self.accounts[api_key] = account
        return account

    def accept_then_timeout(self, times: int = 1) -> None:
        """The next ``times`` orders are taken (and filled) but answered only after the client timed out."""
        self._timeouts += times

    def rate_limit_next(self, status: int = 429, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` signed or public requests answer ``status`` with ``Retry-After``."""
        self._rate_limits += [(status, retry_after)] * times

    def malform_next(self, endpoint: str, change: Callable[[Any], Any]) -> None:
        """The next answer of ``endpoint`` (``order``, ``account``, ``myTrades``…) goes through ``change``."""
        self._malformed.append((endpoint, change))

    def fail_next(self, endpoint: str, status: int, body: dict[str, Any] | None = None) -> None:
        self._failures.append((endpoint, status, body or {"code": -1000, "msg": "test failure"}))

    def sent(self, method: str, endpoint: str) -> list[dict[str, str]]:
        return [params for m, e, params in self.requests if m == method and e == endpoint]

    async def start(self) -> FakeBinanceSpot:
        app = web.Application()
        for name, handler in (("exchangeInfo", self._exchange_info), ("depth", self._depth),
                              ("ping", self._ping), ("time", self._time)):
            app.router.add_get(f"/api/v3/{name}", self._route(name, handler, signed=False))
        app.router.add_get("/api/v3/account", self._route("account", self._account))
        app.router.add_post("/api/v3/order", self._route("order", self._new_order))
        app.router.add_get("/api/v3/order", self._route("order", self._get_order))
        app.router.add_delete("/api/v3/order", self._route("order", self._cancel_order))
        app.router.add_get("/api/v3/openOrders", self._route("openOrders", self._open_orders))
        app.router.add_get("/api/v3/myTrades", self._route("myTrades", self._my_trades))
        app.router.add_get("/sapi/v1/account/apiRestrictions", self._route("apiRestrictions", self._restrictions))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for task in self._held:
            task.cancel()
        if self._runner:
            await self._runner.cleanup()

    # --- the request pipeline -----------------------------------------------------------------

    def _route(self, name: str, handler: Callable[..., Any], *, signed: bool = True):  # type: ignore[no-untyped-def]
        async def serve(request: web.Request) -> web.StreamResponse:
            body = await request.text()
            params = dict(parse_qsl(request.query_string, keep_blank_values=True))
            params.update(parse_qsl(body, keep_blank_values=True))
            self.requests.append((request.method, name, params))
            if self._rate_limits:
                status, retry_after = self._rate_limits.pop(0)
                msg = "Too many requests." if status == 429 else "Way too many requests; IP banned."
                return web.json_response({"code": -1003, "msg": msg}, status=status,
                                         headers={"Retry-After": str(retry_after)})
            for i, (endpoint, status, failure) in enumerate(self._failures):
                if endpoint == name:
                    del self._failures[i]
                    return web.json_response(failure, status=status)
            account = None
            if signed:
                account = self._authenticate(request, request.query_string, body)
                if isinstance(account, web.Response):
                    return account
            if "symbol" in params and params["symbol"] not in {s["symbol"] for s in SYMBOLS}:
                return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
            answer = await handler(params, account) if signed else await handler(params)
            if isinstance(answer, web.Response):
                return answer
            for i, (endpoint, change) in enumerate(self._malformed):
                if endpoint == name:
                    del self._malformed[i]
                    answer = change(answer)
                    break
            return web.json_response(answer)
        return serve

    def _authenticate(self, request: web.Request, query: str, body: str) -> FakeAccount | web.Response:
        """Binance's rule: HMAC-SHA256 of the query string followed by the body, signature last."""
        account = self.accounts.get(request.headers.get("X-MBX-APIKEY", ""))
        if account is None:
            return web.json_response({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
                                     status=401)
        total = query + body
        payload, sep, signature = total.rpartition("&signature=")
        expected = hmac.new(account.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not sep or not hmac.compare_digest(signature, expected):
            return web.json_response({"code": -1022, "msg": "Signature for this request is not valid."},
                                     status=400)
        return account

    # --- public ----------------------------------------------------------------------------

    async def _ping(self, params: dict[str, str]) -> dict[str, Any]:
        return {}

    async def _time(self, params: dict[str, str]) -> dict[str, Any]:
        return {"serverTime": SERVER_TIME}

    async def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        return {"timezone": "UTC", "serverTime": SERVER_TIME, "exchangeFilters": [],
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                "limit": 6000}], "symbols": SYMBOLS}

    async def _depth(self, params: dict[str, str]) -> dict[str, Any]:
        book = self.books.get(params["symbol"], {"bids": [], "asks": []})
        return {"lastUpdateId": 1, "bids": [[_s(p), _s(q)] for p, q in book["bids"]],
                "asks": [[_s(p), _s(q)] for p, q in book["asks"]]}

    # --- signed ----------------------------------------------------------------------------

    async def _restrictions(self, params: dict[str, str], account: FakeAccount) -> dict[str, Any]:
        return dict(account.restrictions)

    async def _account(self, params: dict[str, str], account: FakeAccount) -> dict[str, Any]:
        locked: dict[str, Decimal] = {}
        for order in self._open(account.api_key):
            asset, amount = self._reservation(order)
            locked[asset] = locked.get(asset, ZERO) + amount
        assets = sorted(set(account.balances) | set(locked))
        return {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
                "canTrade": True, "canWithdraw": account.restrictions["enableWithdrawals"], "canDeposit": True,
                "brokered": False, "requireSelfTradePrevention": False, "updateTime": SERVER_TIME,
                "accountType": "SPOT", "permissions": ["SPOT"],
                "balances": [{"asset": a, "free": _s(account.balances.get(a, ZERO) - locked.get(a, ZERO)),
                              "locked": _s(locked.get(a, ZERO))} for a in assets]}

    async def _new_order(self, params: dict[str, str], account: FakeAccount) -> Any:
        symbol = params["symbol"]
        client_id = params.get("newClientOrderId") or f"web_{next(self._ids)}"
        if any(o.client_order_id == client_id and o.api_key == account.api_key and o.status in ("NEW", "PARTIALLY_FILLED")
               for o in self.orders):
            return web.json_response({"code": -2010, "msg": "Duplicate order sent."}, status=400)
        quantity = Decimal(params["quantity"])
        price = Decimal(params["price"]) if "price" in params else None
        order = FakeOrder(account.api_key, next(self._ids), client_id, symbol, params["side"], params["type"],
                          quantity, price, params.get("timeInForce"))
        if order.type in STOP_TYPES:
            if "stopPrice" not in params or (order.type in LIMIT_PRICED and price is None):
                return web.json_response({"code": -1102, "msg": "Mandatory parameter 'stopPrice' was not sent."},
                                         status=400)
            order.stop_price, order.working = Decimal(params["stopPrice"]), False
            if self._triggers(order, self.last_price(symbol)):
                return web.json_response({"code": -2010, "msg": "Stop price would trigger immediately."},
                                         status=400)
        elif order.type not in ("MARKET", "LIMIT"):
            return web.json_response({"code": -1116, "msg": "Invalid orderType."}, status=400)
        base, quote = self._assets(symbol)
        levels = self._takeable(order) if order.working else []
        cost = sum((p * q for p, q in levels), ZERO)
        need_asset, need = (quote, cost) if order.side == "BUY" else (base, quantity)
        if order.side == "BUY" and order.type != "MARKET":
            need = quantity * (price or order.stop_price or ZERO)
        if need > self._free(account, need_asset):
            return web.json_response({"code": -2010, "msg": "Account has insufficient balance for requested action."},
                                     status=400)
        self.orders.append(order)
        order.lookups_hidden = self.hide_fresh_orders
        for level_price, level_qty in levels:
            self._execute(account, order, level_price, level_qty)
        if order.type == "MARKET" and order.executed < order.quantity:
            order.status = "EXPIRED"  # Binance: a market order the book could not fill in full
        answer = {**order.as_json(), "transactTime": SERVER_TIME, "fills": [dict(f) for f in order.fills]}
        if self.on_order_taken is not None:  # e.g. SIGKILL the client: it dies before it reads the answer
            self.on_order_taken(order)
        if self._timeouts:
            self._timeouts -= 1
            await asyncio.sleep(self.timeout_seconds)  # the client gave up long ago
        return answer

    async def _get_order(self, params: dict[str, str], account: FakeAccount) -> Any:
        order = self._find(params, account)
        if order is None:
            return web.json_response({"code": -2013, "msg": "Order does not exist."}, status=400)
        if order.lookups_hidden > 0:
            order.lookups_hidden -= 1
            return web.json_response({"code": -2013, "msg": "Order does not exist."}, status=400)
        return order.as_json()

    async def _cancel_order(self, params: dict[str, str], account: FakeAccount) -> Any:
        order = self._find(params, account)
        if order is None or order.status not in ("NEW", "PARTIALLY_FILLED"):
            return web.json_response({"code": -2011, "msg": "Unknown order sent."}, status=400)
        order.status = "CANCELED"
        return {**order.as_json(), "origClientOrderId": order.client_order_id}

    async def _open_orders(self, params: dict[str, str], account: FakeAccount) -> Any:
        return [o.as_json() for o in self._open(account.api_key)
                if "symbol" not in params or o.symbol == params["symbol"]]

    async def _my_trades(self, params: dict[str, str], account: FakeAccount) -> Any:
        trades = [t for t in self.trades if t["_key"] == account.api_key and t["symbol"] == params["symbol"]]
        if "orderId" in params:
            trades = [t for t in trades if str(t["orderId"]) == params["orderId"]]
        limit = min(int(params.get("limit", 500)), 1000)
        if "fromId" in params:  # Binance: the oldest `limit` trades from that id; else the newest `limit`
            trades = [t for t in trades if t["id"] >= int(params["fromId"])][:limit]
        else:
            trades = trades[-limit:]
        return [{k: v for k, v in t.items() if k != "_key"} for t in trades]

    # --- the venue's book-keeping ---------------------------------------------------------------

    def place_by_hand(self, api_key: str, symbol: str, side: str, type: str, quantity: str,
                      price: str | None = None) -> FakeOrder:
        """An order placed on the exchange's own site (a ``web_…`` client id), matched like any other."""
        order = FakeOrder(api_key, next(self._ids), f"web_{next(self._ids)}", symbol, side.upper(), type.upper(),
                          Decimal(quantity), Decimal(price) if price else None, "GTC" if price else None)
        self.orders.append(order)
        for level_price, level_qty in self._takeable(order):
            self._execute(self.accounts[api_key], order, level_price, level_qty)
        if order.type == "MARKET" and order.executed < order.quantity:
            order.status = "EXPIRED"
        return order

    def cancel_by_hand(self, client_order_id: str) -> None:
        order = next(o for o in self.orders if o.client_order_id == client_order_id)
        assert order.status in ("NEW", "PARTIALLY_FILLED")
        order.status = "CANCELED"

    def fill_resting(self, client_order_id: str, quantity: str, price: str | None = None) -> None:
        """Fill (part of) a resting order, as a trade of the market would."""
        order = next(o for o in self.orders if o.client_order_id == client_order_id)
        account = self.accounts[order.api_key]
        self._execute(account, order, Decimal(price) if price else order.price or ZERO, Decimal(quantity),
                      maker=True)

    def last_price(self, symbol: str) -> Decimal:
        """The price stop orders compare with: the last one :meth:`move_price` set, else the book's mid."""
        if symbol in self.last_prices:
            return self.last_prices[symbol]
        book = self.books.get(symbol, {"bids": [], "asks": []})
        if not book["bids"] or not book["asks"]:
            return ZERO
        return (book["bids"][0][0] + book["asks"][0][0]) / 2

    def move_price(self, symbol: str, price: str, depth: str = "10") -> list[FakeOrder]:
        """The market trades at ``price``: the book moves there (one level each side, ``depth``
        deep) and every waiting stop order it crosses triggers — a STOP_LOSS / TAKE_PROFIT
        becomes a market order and fills on that book, a ``_LIMIT`` one starts working at its
        price (filling what crosses). Returns the orders that triggered."""
        level = Decimal(price)
        self.last_prices[symbol] = level
        self.books[symbol] = {"bids": [(level, Decimal(depth))], "asks": [(level, Decimal(depth))]}
        triggered = []
        for order in [o for o in self.orders if o.symbol == symbol and o.status == "NEW" and not o.working]:
            if not self._triggers(order, level):
                continue
            order.working = True
            triggered.append(order)
            for level_price, level_qty in self._takeable(order):
                self._execute(self.accounts[order.api_key], order, level_price, level_qty)
            if order.type in ("STOP_LOSS", "TAKE_PROFIT") and order.executed < order.quantity:
                order.status = "EXPIRED"
        return triggered

    @staticmethod
    def _triggers(order: FakeOrder, price: Decimal) -> bool:
        """Binance spot: a stop-loss sells when the price falls to its stop (buys when it rises
        to it); a take-profit the other way round."""
        assert order.stop_price is not None
        if price <= 0:
            return False
        falling = (order.side == "SELL") == order.type.startswith("STOP_LOSS")
        return price <= order.stop_price if falling else price >= order.stop_price

    def _assets(self, symbol: str) -> tuple[str, str]:
        info = next(s for s in SYMBOLS if s["symbol"] == symbol)
        return info["baseAsset"], info["quoteAsset"]

    def _open(self, api_key: str) -> list[FakeOrder]:
        return [o for o in self.orders if o.api_key == api_key and o.status in ("NEW", "PARTIALLY_FILLED")]

    def _find(self, params: dict[str, str], account: FakeAccount) -> FakeOrder | None:
        for order in self.orders:
            if order.api_key != account.api_key or order.symbol != params.get("symbol"):
                continue
            if "orderId" in params and str(order.order_id) == params["orderId"]:
                return order
            if "origClientOrderId" in params and order.client_order_id == params["origClientOrderId"]:
                return order
        return None

    def _free(self, account: FakeAccount, asset: str) -> Decimal:
        locked = sum((amount for o in self._open(account.api_key)
                      for a, amount in [self._reservation(o)] if a == asset), ZERO)
        return account.balances.get(asset, ZERO) - locked

    def _reservation(self, order: FakeOrder) -> tuple[str, Decimal]:
        base, quote = self._assets(order.symbol)
        rest = order.quantity - order.executed
        return (quote, rest * (order.price or order.stop_price or ZERO)) if order.side == "BUY" else (base, rest)

    def _takeable(self, order: FakeOrder) -> list[tuple[Decimal, Decimal]]:
        book = self.books.get(order.symbol, {"bids": [], "asks": []})
        levels = book["asks"] if order.side == "BUY" else book["bids"]
        out, left = [], order.quantity
        for price, qty in levels:
            if left <= 0:
                break
            if order.type in LIMIT_PRICED and order.price is not None and (
                    (order.side == "BUY" and price > order.price) or (order.side == "SELL" and price < order.price)):
                break
            take = min(left, qty)
            out.append((price, take))
            left -= take
        return out

    def _execute(self, account: FakeAccount, order: FakeOrder, price: Decimal, quantity: Decimal, *,
                 maker: bool = False) -> None:
        base, quote = self._assets(order.symbol)
        notional = price * quantity
        fee_asset = self.fee_asset or quote
        fee = (notional if fee_asset == quote else quantity) * self.fee_rate
        balances = account.balances
        if order.side == "BUY":
            balances[quote] = balances.get(quote, ZERO) - notional
            balances[base] = balances.get(base, ZERO) + quantity
        else:
            balances[base] = balances.get(base, ZERO) - quantity
            balances[quote] = balances.get(quote, ZERO) + notional
        balances[fee_asset] = balances.get(fee_asset, ZERO) - fee
        order.executed += quantity
        order.quote += notional
        order.status = "FILLED" if order.executed >= order.quantity else "PARTIALLY_FILLED"
        trade_id = next(self._trade_ids)
        order.fills.append({"price": _s(price), "qty": _s(quantity), "commission": _s(fee),
                            "commissionAsset": fee_asset, "tradeId": trade_id})
        self.trades.append({"_key": account.api_key, "symbol": order.symbol, "id": trade_id,
                            "orderId": order.order_id, "orderListId": -1, "price": _s(price), "qty": _s(quantity),
                            "quoteQty": _s(notional), "commission": _s(fee), "commissionAsset": fee_asset,
                            "time": SERVER_TIME, "isBuyer": order.side == "BUY", "isMaker": maker,
                            "isBestMatch": True})
