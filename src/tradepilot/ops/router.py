"""Liveness, component health and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tradepilot import __version__
from tradepilot.core.deps import RuntimeDep
from tradepilot.core.errors import Unauthorized
from tradepilot.core.metrics import exposed_registry
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import OptionalUser

router = api_router(tags=["system"])
_STARTED = time.monotonic()
CHECK_TIMEOUT = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness for load balancers: the process answers. No dependencies are checked."""
    return {"status": "ok"}


async def _timed(check: Any) -> tuple[str, float, str | None]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT)
        return "up", (time.perf_counter() - started) * 1000, None
    except Exception as exc:  # a health check reports failures, it does not raise them
        return "down", (time.perf_counter() - started) * 1000, type(exc).__name__


@router.get("/api/system/health")
async def system_health(runtime: RuntimeDep, principal: OptionalUser) -> JSONResponse:
    """Readiness: database and Redis status (public); latencies and versions for admins."""
    checks: dict[str, Any] = {"database": runtime.db.ping}
    if runtime.redis is not None:
        checks["redis"] = runtime.redis.ping
    results = dict(zip(checks, await asyncio.gather(*(_timed(c) for c in checks.values())), strict=True))
    components = {name: state for name, (state, _, _) in results.items()}
    if runtime.redis is None:
        components["redis"] = "disabled"
    healthy = all(state == "up" for state, _, _ in results.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "degraded", "components": components}
    if principal is not None and principal.is_admin:
        body["details"] = {
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - _STARTED, 1),
            "database_dialect": runtime.db.dialect,
            "checks": {name: {"status": s, "latency_ms": round(ms, 2), "error": err}
                       for name, (s, ms, err) in results.items()},
        }
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus exposition. With TRADEPILOT_METRICS_TOKEN set, a matching bearer is required."""
    token = runtime.settings.metrics_token
    if token is not None:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
            raise Unauthorized("Metrics token required.", code="metrics_token_required")
    return Response(generate_latest(exposed_registry(runtime.metrics)), media_type=CONTENT_TYPE_LATEST)
