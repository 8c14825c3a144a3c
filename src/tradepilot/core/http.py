"""ASGI plumbing: request ids, the client's real IP, access logs, metrics, last-resort 500s."""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradepilot.core.context import request_id_var, user_id_var
from tradepilot.core.metrics import Metrics
from tradepilot.core.problems import problem_response

access_log = logging.getLogger("tradepilot.access")
error_log = logging.getLogger("tradepilot.errors")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str | None:
    """The socket peer, or the right-most untrusted X-Forwarded-For hop behind trusted proxies.

    Walking from the right means a client cannot forge its address by prepending hops: only
    entries appended by proxies we trust are skipped.
    """
    if peer is None or not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_valid_ip(hop):
            return peer  # garbage in the chain: do not trust any of it
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _is_valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_trusted(value: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return any(address in net for net in trusted)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, trusted_proxies: Sequence[IPNetwork]) -> None:
        self.app = app
        self.metrics = metrics
        self.trusted = list(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        peer = scope.get("client")[0] if scope.get("client") else None
        ip = client_ip(peer, headers.get("x-forwarded-for"), self.trusted)
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["client_ip"] = ip
        rid_token = request_id_var.set(request_id)
        uid_token = user_id_var.set(None)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            route = getattr(scope.get("route"), "path", None)  # the template: errors group by it (ops/monitoring)
            error_log.exception("unhandled error", extra={"method": scope.get("method"), "route": route})
            if scope["type"] != "http" or response_started:
                raise
            status = 500
            response = problem_response(500, "internal_error", "An internal error occurred; it has been logged.")
            await response(scope, receive, send_wrapper)
        finally:
            if scope["type"] == "http":
                self._record(scope, status, time.perf_counter() - started, ip)
            request_id_var.reset(rid_token)
            user_id_var.reset(uid_token)

    def _record(self, scope: Scope, status: int, elapsed: float, ip: str | None) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.http_requests.labels(method, template, str(status)).inc()
        self.metrics.http_latency.labels(method, template).observe(elapsed)
        access_log.info(
            "request",
            extra={"method": method, "route": template, "path": scope.get("path"), "status": status,
                   "duration_ms": round(elapsed * 1000, 2), "client_ip": ip},
        )
