"""A small Binance spot venue on loopback: enough REST and WebSocket for ccxt's ``binance``.

REST (``/api/v3``): ``exchangeInfo``, ``depth``, ``klines``, ``trades``, ``aggTrades``,
``ping``, ``time``. WebSocket (``/ws``, ``/ws/<n>``): ``SUBSCRIBE`` / ``UNSUBSCRIBE`` to
``<sym>@depth@100ms`` and ``<sym>@trade``, answered ``{"result": null, "id": …}`` and then
streamed raw (not wrapped), as Binance's ``/ws`` endpoint does.

The market is a recorded Binance capture (``tests/data/market/binance_spot_capture``) that a
:class:`CapturePlayer` plays while someone is subscribed: it keeps the venue's own book (a
plain dict, deliberately independent of the code under test) from the capture's snapshot and
diffs, so ``/api/v3/depth`` always answers a snapshot consistent with the stream, exactly
what a resync needs. Candles come from the coinbase slices, served as ``BTCUSDT`` klines.

Test knobs: :meth:`FakeBinance.fail_next` (HTTP errors), :attr:`CapturePlayer.skip_diff_at`
(withhold one diff from the stream: a gap), :attr:`CapturePlayer.skip_trade_ids` (withhold
trades from the stream, not from REST), :attr:`CapturePlayer.crossed_snapshots` (a corrupt
snapshot), :attr:`CapturePlayer.drop_after` (close every
connection after that many messages), :attr:`FakeBinance.requests` (what was asked).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

DATA = Path(__file__).resolve().parents[1] / "data" / "market"
CAPTURE = DATA / "binance_spot_capture" / "btcusdt_20240808_first90s.gz"
KLINES = {
    ("BTCUSDT", "1h"): DATA / "coinbase_btc_usd_1h" / "BTC_USD-1h-first720.csv",
    ("BTCUSDT", "1m"): DATA / "coinbase_multi_1m" / "BTCUSD-1m-first240.csv",
}
INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


def _symbol_info(symbol: str, base: str, quote: str, tick: str, step: str, status: str = "TRADING") -> dict:
    return {
        "symbol": symbol, "status": status, "baseAsset": base, "baseAssetPrecision": 8, "quoteAsset": quote,
        "quotePrecision": 8, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                                                                  "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
        "permissions": [], "permissionSets": [["SPOT"]],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        ],
    }


SYMBOLS = [
    _symbol_info("BTCUSDT", "BTC", "USDT", "0.01000000", "0.00001000"),
    _symbol_info("ETHUSDT", "ETH", "USDT", "0.01000000", "0.00010000"),
    _symbol_info("LUNCUSDT", "LUNC", "USDT", "0.00000001", "1.00000000", status="BREAK"),
]


@functools.cache
def load_capture(path: Path = CAPTURE) -> list[tuple[int, dict]]:
    """The capture's lines, parsed once per process (nothing mutates them)."""
    with gzip.open(path, "rt") as handle:
        return [(int(stamp), json.loads(body)) for stamp, _, body in (line.partition(" ") for line in handle)]


def load_klines(path: Path) -> list[list[Any]]:
    rows = []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            open_ms = int(datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)
            rows.append([open_ms, row["open"], row["high"], row["low"], row["close"], row["volume"]])
    return rows


@dataclass
class CapturePlayer:
    """Plays the capture to the subscribed connections, keeping the venue's true book."""

    records: list[tuple[int, dict]]
    speed: float = 100.0  # × the recorded pace
    skip_diff_at: int | None = None  # a diff with this final id is applied but not sent
    drop_after: int | None = None  # close all connections after this many messages sent
    skip_trade_ids: set[int] = field(default_factory=set)  # recorded (REST has them) but not streamed
    crossed_snapshots: int = 0  # this many /depth answers carry a bogus bid above the best ask
    wait_for: set[str] = field(default_factory=set)  # play only while all these streams are watched
    position: int = 0
    sent: int = 0
    bids: dict[Decimal, str] = field(default_factory=dict)
    asks: dict[Decimal, str] = field(default_factory=dict)
    last_update_id: int = 0
    trades: list[dict] = field(default_factory=list)
    connections: dict[web.WebSocketResponse, set[str]] = field(default_factory=dict)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        snapshot = next(body for _, body in self.records if "lastUpdateId" in body)
        self._load(snapshot)

    def _load(self, snapshot: dict) -> None:
        self.bids = {Decimal(p): q for p, q in snapshot["bids"]}
        self.asks = {Decimal(p): q for p, q in snapshot["asks"]}
        self.last_update_id = snapshot["lastUpdateId"]

    def depth(self, limit: int) -> dict:
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        if self.crossed_snapshots > 0 and asks:
            self.crossed_snapshots -= 1
            bids = [(asks[0][0] + 1, "1.00000000"), *bids[: limit - 1]]
        return {"lastUpdateId": self.last_update_id,
                "bids": [[str(p), q] for p, q in bids], "asks": [[str(p), q] for p, q in asks]}

    def step(self) -> tuple[str, dict] | None:
        """Advance one record; the (stream, message) to send, if any."""
        _, body = self.records[self.position]
        self.position += 1
        data = body.get("data")
        if data is None:  # the REST snapshot recorded in the capture: the stream carries on
            return None
        if data.get("e") == "depthUpdate":
            if data["u"] > self.last_update_id:
                assert data["U"] <= self.last_update_id + 1, "the capture itself has a gap"
                for side, book in (("b", self.bids), ("a", self.asks)):
                    for price, qty in data[side]:
                        if Decimal(qty) == 0:
                            book.pop(Decimal(price), None)
                        else:
                            book[Decimal(price)] = qty
                self.last_update_id = data["u"]
            if data["u"] == self.skip_diff_at:
                return None
            return f"{data['s'].lower()}@depth", data
        if data.get("e") == "trade":
            self.trades.append(data)
            if data["t"] in self.skip_trade_ids:
                return None
            return f"{data['s'].lower()}@trade", data
        return None

    def fast_forward(self, records: int) -> None:
        """Let the market move without anyone watching."""
        for _ in range(min(records, len(self.records) - self.position)):
            self.step()

    async def run(self) -> None:
        previous_ns: int | None = None
        while self.position < len(self.records):
            await self.subscribed.wait()
            stamp = self.records[self.position][0]
            if previous_ns is not None and self.speed > 0:
                await asyncio.sleep(min(max(stamp - previous_ns, 0) / 1e9 / self.speed, 0.05))
            else:
                await asyncio.sleep(0)
            previous_ns = stamp
            sent = self.step()
            if sent is not None:
                await self._broadcast(*sent)
        self.finished.set()

    async def _broadcast(self, stream: str, message: dict) -> None:
        text = json.dumps(message)
        for ws, streams in list(self.connections.items()):
            if any(s == stream or s.startswith(stream + "@") for s in streams) and not ws.closed:
                try:
                    await ws.send_str(text)
                except ConnectionError:
                    continue
        self.sent += 1
        if self.drop_after is not None and self.sent >= self.drop_after:
            self.drop_after = None
            for ws in list(self.connections):
                await ws.close(code=1011, message=b"server going away (test)")


class FakeBinance:
    """The venue: an aiohttp app serving REST and WebSocket on one loopback port."""

    def __init__(self, *, speed: float = 100.0) -> None:
        self.player = CapturePlayer(load_capture(), speed=speed)
        self.klines = {key: load_klines(path) for key, path in KLINES.items()}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._failures: list[tuple[str, int, dict]] = []
        self._runner: web.AppRunner | None = None
        self._player_task: asyncio.Task | None = None
        self.port = 0

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def ccxt_urls(self) -> dict:
        """The ``urls`` override that points ccxt's binance here."""
        api = f"{self.rest_url}/api/v3"
        return {"api": {"public": api, "private": api, "v1": f"{self.rest_url}/api/v1",
                        "ws": {"spot": f"{self.ws_url}/ws"}}}

    def fail_next(self, endpoint: str, status: int, body: dict | None = None, times: int = 1) -> None:
        """The next ``times`` requests to ``/api/v3/<endpoint>`` answer ``status``."""
        self._failures += [(endpoint, status, body or {"code": -1000, "msg": "test failure"})] * times

    async def start(self) -> FakeBinance:
        app = web.Application()
        for name, handler in (("exchangeInfo", self._exchange_info), ("depth", self._depth),
                              ("klines", self._klines), ("trades", self._trades), ("aggTrades", self._agg_trades),
                              ("ping", self._ping), ("time", self._time)):
            app.router.add_get(f"/api/v3/{name}", self._guard(name, handler))
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/ws/{index}", self._ws)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._player_task = asyncio.create_task(self.player.run())
        return self

    async def stop(self) -> None:
        if self._player_task:
            self._player_task.cancel()
        for ws in list(self.player.connections):
            await ws.close()
        if self._runner:
            await self._runner.cleanup()

    def _guard(self, name: str, handler):  # type: ignore[no-untyped-def]
        async def guarded(request: web.Request) -> web.StreamResponse:
            self.requests.append((name, dict(request.query)))
            for i, (endpoint, status, body) in enumerate(self._failures):
                if endpoint == name:
                    del self._failures[i]
                    return web.json_response(body, status=status)
            if "symbol" in request.query and request.query["symbol"] not in {s["symbol"] for s in SYMBOLS}:
                return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
            return await handler(request)
        return guarded

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": 1723161600000})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response({"timezone": "UTC", "serverTime": 1723161600000, "exchangeFilters": [],
                                  "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                                  "intervalNum": 1, "limit": 6000}], "symbols": SYMBOLS})

    async def _depth(self, request: web.Request) -> web.Response:
        limit = min(int(request.query.get("limit", 100)), 5000)
        if request.query["symbol"] != "BTCUSDT":
            return web.json_response({"lastUpdateId": 1, "bids": [], "asks": []})
        return web.json_response(self.player.depth(limit))

    async def _klines(self, request: web.Request) -> web.Response:
        q = request.query
        rows = self.klines.get((q["symbol"], q["interval"]), [])
        start = int(q.get("startTime", 0))
        end = int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 500)), 1000)
        step = INTERVAL_MS[q["interval"]]
        chosen = [r for r in rows if start <= r[0] <= end]
        chosen = chosen[:limit] if "startTime" in q else chosen[-limit:]
        return web.json_response([[r[0], *r[1:6], r[0] + step - 1, "0", 0, "0", "0", "0"] for r in chosen])

    async def _trades(self, request: web.Request) -> web.Response:
        limit = min(int(request.query.get("limit", 500)), 1000)
        trades = self.player.trades[-limit:] if request.query["symbol"] == "BTCUSDT" else []
        return web.json_response([{"id": t["t"], "price": t["p"], "qty": t["q"],
                                   "quoteQty": str(Decimal(t["p"]) * Decimal(t["q"])), "time": t["T"],
                                   "isBuyerMaker": t["m"], "isBestMatch": True} for t in trades])

    async def _agg_trades(self, request: web.Request) -> web.Response:
        q = request.query
        limit = min(int(q.get("limit", 500)), 1000)
        trades = self.player.trades if q["symbol"] == "BTCUSDT" else []
        if "fromId" in q:
            trades = [t for t in trades if t["t"] >= int(q["fromId"])]
        if "startTime" in q:
            trades = [t for t in trades if int(q["startTime"]) <= t["T"] <= int(q.get("endTime", 2**62))]
        chosen = trades[:limit] if ("fromId" in q or "startTime" in q) else trades[-limit:]
        return web.json_response([{"a": t["t"], "p": t["p"], "q": t["q"], "f": t["t"], "l": t["t"], "T": t["T"],
                                   "m": t["m"], "M": True} for t in chosen])

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        streams: set[str] = set()
        self.player.connections[ws] = streams
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                command = json.loads(msg.data)
                params = [p.lower() for p in command.get("params", [])]
                if command.get("method") == "SUBSCRIBE":
                    streams.update(params)
                elif command.get("method") == "UNSUBSCRIBE":
                    streams.difference_update(params)
                await ws.send_str(json.dumps({"result": None, "id": command.get("id")}))
                self._update_subscribed()
        finally:
            self.player.connections.pop(ws, None)
            self._update_subscribed()
        return ws

    def _update_subscribed(self) -> None:
        watched = set().union(*self.player.connections.values()) if self.player.connections else set()
        needed = self.player.wait_for
        ready = all(any(w == n or w.startswith(n + "@") for w in watched) for n in needed) if needed else bool(watched)
        if ready:
            self.player.subscribed.set()
        else:
            self.player.subscribed.clear()


@contextmanager
def fake_binance_in_thread(*, speed: float = 0) -> Iterator[FakeBinance]:
    """The fake on its own event loop in a thread, for code under test that runs ``asyncio.run``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-binance", daemon=True)
    thread.start()

    async def make() -> FakeBinance:
        return await FakeBinance(speed=speed).start()

    fake = asyncio.run_coroutine_threadsafe(make(), loop).result(timeout=30)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
