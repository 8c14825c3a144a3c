"""Local servers speaking the protocols of the push channels, for the channel tests.

One aiohttp app on a loopback port serves:

* the **Telegram Bot API**: ``POST /bot<token>/sendMessage`` and ``/bot<token>/getUpdates``
  (long polling over queued updates), answering ``{"ok": …}`` like Telegram, 401 for a wrong
  token, scripted errors (429 with ``parameters.retry_after``);
* **Discord** execute-webhook ``POST /api/webhooks/<id>/<token>`` (JSON ``content`` ≤ 2000
  characters → 204; 429 with ``Retry-After`` and Discord's JSON ``retry_after``);
* **Slack** incoming webhooks ``POST /services/<path>`` (JSON ``text`` → 200 ``ok``);
* a **Web Push** service ``POST /push/<id>``: checks the VAPID ``Authorization`` (the ES256
  JWT verified with the ``k`` key, ``aud`` = this origin, ``exp`` in the future, a ``sub``)
  and decrypts the ``aes128gcm`` body with the subscription's private key (``http_ece``);
* ``/redirect`` → 302 to the cloud metadata address.

Every path can be scripted to answer a list of (status, body, headers) before succeeding,
and a hook can stall a request after it was accepted (crash tests).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

TOKEN = "123456:TEST-token"
Scripted = tuple[int, Any, dict[str, str]]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class PushSubscriber:
    """A browser's side of a subscription: the keys it would give the server."""

    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(self.private_key.public_key().public_bytes(serialization.Encoding.X962,
                                                                 serialization.PublicFormat.UncompressedPoint))

    def subscription(self, endpoint: str) -> dict[str, Any]:
        return {"endpoint": endpoint, "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)}}


@dataclass
class Received:
    path: str
    body: Any
    headers: dict[str, str]


class NotifyServers:
    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.received: dict[str, list[Received]] = defaultdict(list)
        self.script: dict[str, list[Scripted]] = defaultdict(list)
        self.after_accept: Callable[[str], Awaitable[None]] | None = None
        self.updates: list[dict[str, Any]] = []
        self._updates_changed = asyncio.Event()
        self.subscribers: dict[str, PushSubscriber] = {}
        self.push_errors: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> NotifyServers:
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_post("/bot{token}/{method}", self._telegram)
        app.router.add_post("/api/webhooks/{id}/{token}", self._discord)
        app.router.add_post("/services/{path:.+}", self._slack)
        app.router.add_post("/push/{id}", self._push)
        app.router.add_route("*", "/redirect", self._redirect)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- helpers for tests -------------------------------------------------------------------

    def discord_url(self, name: str = "1") -> str:
        return f"{self.url}/api/webhooks/{name}/secret-{name}"

    def slack_url(self, name: str = "T1/B1/x") -> str:
        return f"{self.url}/services/{name}"

    def new_subscription(self, name: str = "device-1") -> dict[str, Any]:
        subscriber = self.subscribers[name] = PushSubscriber()
        return subscriber.subscription(f"{self.url}/push/{name}")

    def add_update(self, chat_id: int, text: str, *, chat_type: str = "private", update_id: int | None = None
                   ) -> dict[str, Any]:
        update_id = update_id if update_id is not None else 1000 + len(self.updates)
        update = {"update_id": update_id, "message": {
            "message_id": update_id, "date": int(time.time()), "text": text,
            "chat": {"id": chat_id, "type": chat_type}, "from": {"id": chat_id, "is_bot": False, "first_name": "T"}}}
        self.updates.append(update)
        self._updates_changed.set()
        return update

    def telegram_texts(self, chat_id: int | None = None) -> list[str]:
        return [r.body["text"] for r in self.received["telegram"]
                if chat_id is None or str(r.body.get("chat_id")) == str(chat_id)]

    # -- handlers ----------------------------------------------------------------------------

    async def _scripted(self, key: str) -> web.Response | None:
        if self.script[key]:
            status, body, headers = self.script[key].pop(0)
            if isinstance(body, dict | list):
                return web.json_response(body, status=status, headers=headers)
            return web.Response(status=status, text=str(body or ""), headers=headers)
        return None

    async def _accepted(self, key: str) -> None:
        if self.after_accept is not None:
            await self.after_accept(key)

    async def _telegram(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await request.json()
        if method == "getUpdates":
            return await self._get_updates(params)
        if method != "sendMessage":
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        scripted = await self._scripted("telegram")
        if scripted is not None:
            return scripted
        if not isinstance(params.get("text"), str) or not params["text"] or len(params["text"]) > 4096 \
                or "chat_id" not in params:
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: text"},
                                     status=400)
        self.received["telegram"].append(Received("sendMessage", params, dict(request.headers)))
        await self._accepted("telegram")
        return web.json_response({"ok": True, "result": {"message_id": len(self.received["telegram"]),
                                                         "chat": {"id": params["chat_id"]}, "text": params["text"]}})

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = params.get("offset") or 0
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]  # confirmed ones are forgotten
        pending = [u for u in self.updates if u["update_id"] >= offset]
        if not pending:
            self._updates_changed.clear()
            try:
                await asyncio.wait_for(self._updates_changed.wait(), timeout=min(float(params.get("timeout", 0)), 2))
            except TimeoutError:
                pass
            pending = [u for u in self.updates if u["update_id"] >= offset]
        return web.json_response({"ok": True, "result": pending})

    async def _discord(self, request: web.Request) -> web.Response:
        key = f"discord:{request.match_info['id']}"
        scripted = await self._scripted(key)
        if scripted is not None:
            return scripted
        body = await request.json()
        content = body.get("content")
        if not isinstance(content, str) or not content or len(content) > 2000:
            return web.json_response({"code": 50006, "message": "Cannot send an empty message"}, status=400)
        self.received[key].append(Received(request.path, body, dict(request.headers)))
        await self._accepted(key)
        if request.query.get("wait") == "true":
            return web.json_response({"id": str(len(self.received[key])), "content": content})
        return web.Response(status=204)

    async def _slack(self, request: web.Request) -> web.Response:
        key = f"slack:{request.match_info['path']}"
        scripted = await self._scripted(key)
        if scripted is not None:
            return scripted
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body.get("text"), str) or not body["text"]:
            return web.Response(status=400, text="no_text")
        self.received[key].append(Received(request.path, body, dict(request.headers)))
        await self._accepted(key)
        return web.Response(text="ok")

    async def _push(self, request: web.Request) -> web.Response:
        name = request.match_info["id"]
        key = f"push:{name}"
        scripted = await self._scripted(key)
        if scripted is not None:
            return scripted
        subscriber = self.subscribers.get(name)
        if subscriber is None:
            return web.Response(status=410, text="subscription gone")
        problem = self._check_vapid(request)
        if problem is None and request.headers.get("Content-Encoding") != "aes128gcm":
            problem = "content encoding is not aes128gcm"
        if problem is None and not request.headers.get("TTL", "").isdigit():
            problem = "no TTL"
        if problem is not None:
            self.push_errors.append(problem)
            return web.Response(status=403 if "JWT" in problem else 400, text=problem)
        raw = await request.read()
        try:
            plaintext = http_ece.decrypt(raw, private_key=subscriber.private_key, auth_secret=subscriber.auth,
                                         version="aes128gcm")
        except Exception as exc:  # noqa: BLE001 - any decryption failure is the client's fault
            self.push_errors.append(f"decrypt: {exc}")
            return web.Response(status=400, text="cannot decrypt")
        self.received[key].append(Received(request.path, json.loads(plaintext), dict(request.headers)))
        await self._accepted(key)
        return web.Response(status=201, headers={"Location": f"/messages/{len(self.received[key])}"})

    def _check_vapid(self, request: web.Request) -> str | None:
        scheme, _, params = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "vapid":
            return "no vapid Authorization"
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        if "t" not in parts or "k" not in parts:
            return "vapid Authorization lacks t or k"
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
            claims = jwt.decode(parts["t"], public, algorithms=["ES256"], audience=self.url,
                                options={"require": ["exp", "aud", "sub"]})
        except (jwt.PyJWTError, ValueError) as exc:
            return f"JWT rejected: {exc}"
        if claims["exp"] > time.time() + 24 * 3600:
            return "JWT exp more than 24 h ahead"
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return "JWT sub is not mailto: or https:"
        return None

    async def _redirect(self, request: web.Request) -> web.Response:
        self.received["redirect"].append(Received(request.path, None, dict(request.headers)))
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
