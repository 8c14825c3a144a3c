"""Binance's spot **user-data stream** on loopback, beside :class:`FakeBinanceSpot`'s REST API.

ccxt.pro's ``binance.watch_orders`` (spot) opens the WebSocket API (``/ws-api/v3``), sends
``userDataStream.subscribe.signature`` (``apiKey``, ``timestamp``, HMAC-SHA256 ``signature`` of
the sorted, url-encoded parameters) and then reads ``{"subscriptionId", "event":
{"e": "executionReport", …}}`` messages. This server checks the signature against the spot
fake's accounts and pushes an ``executionReport`` for every change of that account's orders
in the spot fake (taken, each fill as a ``TRADE``, cancelled, expired), watching its state so
the REST fake needs no hook. Knobs: :meth:`drop_connections` (the stream breaks; ccxt must
resubscribe), :attr:`paused` (changes are not pushed: a stream that silently lost events),
:attr:`subscriptions` (how many subscriptions were accepted), :attr:`pushed` (what was sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from tests.fakes.binance_spot import SERVER_TIME, FakeBinanceSpot, FakeOrder

POLL_SECONDS = 0.02


class FakeBinanceUserStream:
    def __init__(self, spot: FakeBinanceSpot) -> None:
        self.spot = spot
        self.paused = False
        self.subscriptions = 0
        self.pushed: list[dict[str, Any]] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> FakeBinanceUserStream:
        app = web.Application()
        app.router.add_get("/ws-api/v3", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        await self.drop_connections()
        if self._runner:
            await self._runner.cleanup()

    async def drop_connections(self) -> None:
        for socket in list(self._sockets):
            await socket.close()

    # --- one connection ------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=None)
        await socket.prepare(request)
        self._sockets.add(socket)
        pusher: asyncio.Task[None] | None = None
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                call = json.loads(message.data)
                answer, api_key = self._subscribe(call)
                await socket.send_str(json.dumps(answer))
                if api_key is not None and pusher is None:
                    pusher = asyncio.create_task(self._push(socket, api_key))
        finally:
            self._sockets.discard(socket)
            if pusher is not None:
                pusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pusher
        return socket

    def _subscribe(self, call: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        if call.get("method") != "userDataStream.subscribe.signature":
            return {"id": call.get("id"), "status": 400,
                    "error": {"code": -1100, "msg": "Unknown method."}}, None
        params = dict(call.get("params") or {})
        signature = str(params.pop("signature", ""))
        account = self.spot.accounts.get(str(params.get("apiKey", "")))
        payload = urlencode(sorted(params.items()))
        if account is None or not hmac.compare_digest(
                signature, hmac.new(account.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()):
            return {"id": call.get("id"), "status": 401,
                    "error": {"code": -1022, "msg": "Signature for this request is not valid."}}, None
        self.subscriptions += 1
        return {"id": call.get("id"), "status": 200, "result": {"subscriptionId": 0}}, account.api_key

    async def _push(self, socket: web.WebSocketResponse, api_key: str) -> None:
        """Every change of the account's orders from now on, in the order it happened."""
        seen = {o.order_id: (o.status, len(o.fills)) for o in self.spot.orders if o.api_key == api_key}
        while not socket.closed:
            if not self.paused:
                for order in [o for o in self.spot.orders if o.api_key == api_key]:
                    status, fills = seen.get(order.order_id, (None, 0))
                    if (status, fills) == (order.status, len(order.fills)):
                        continue
                    for index in range(fills, len(order.fills)):
                        await self._send(socket, _report(order, "TRADE", order.fills[:index + 1]))
                    if status is None and not order.fills:
                        await self._send(socket, _report(order, "NEW", []))
                    elif order.status in ("CANCELED", "EXPIRED", "REJECTED") and status != order.status:
                        await self._send(socket, _report(order, order.status, order.fills))
                    seen[order.order_id] = (order.status, len(order.fills))
            await asyncio.sleep(POLL_SECONDS)

    async def _send(self, socket: web.WebSocketResponse, event: dict[str, Any]) -> None:
        self.pushed.append(event)
        await socket.send_str(json.dumps({"subscriptionId": 0, "event": event}))


def _report(order: FakeOrder, execution: str, fills: list[dict[str, Any]]) -> dict[str, Any]:
    """An ``executionReport`` for ``order`` after ``fills`` (the last one is this event's trade)."""
    executed = sum((Decimal(f["qty"]) for f in fills), Decimal(0))
    quote = sum((Decimal(f["qty"]) * Decimal(f["price"]) for f in fills), Decimal(0))
    last = fills[-1] if execution == "TRADE" else None
    status = order.status if execution != "TRADE" else ("FILLED" if executed == order.quantity
                                                          else "PARTIALLY_FILLED")
    return {"e": "executionReport", "E": SERVER_TIME, "s": order.symbol, "c": order.client_order_id,
            "S": order.side, "o": order.type, "f": order.time_in_force or "GTC", "q": f"{order.quantity:.8f}",
            "p": f"{order.price or 0:.8f}", "P": f"{order.stop_price or 0:.8f}", "F": "0.00000000", "g": -1,
            "C": order.client_order_id if execution == "CANCELED" else "", "x": execution, "X": status, "r": "NONE",
            "i": order.order_id, "l": last["qty"] if last else "0.00000000",
            "z": f"{executed:.8f}", "L": last["price"] if last else "0.00000000",
            "n": last["commission"] if last else "0", "N": last["commissionAsset"] if last else None,
            "T": SERVER_TIME, "t": last["tradeId"] if last else -1, "I": 1, "w": order.status == "NEW",
            "m": False, "M": False, "O": order.time, "Z": f"{quote:.8f}", "Y": "0.00000000", "Q": "0.00000000"}
