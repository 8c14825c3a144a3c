"""The domain's exception tree. Each error carries its HTTP status and a stable ``code``.

Services raise these; one handler (``core.problems``) turns them into RFC 9457
``application/problem+json``. Nothing below the router raises ``HTTPException``.
"""

from __future__ import annotations

from typing import Any


class TradePilotError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(TradePilotError):
    pass


class Unauthorized(TradePilotError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(TradePilotError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(TradePilotError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(TradePilotError):
    status, code, title = 409, "conflict", "Conflict"


class Unprocessable(TradePilotError):
    status, code, title = 422, "unprocessable", "Request cannot be processed"


class RateLimited(TradePilotError):
    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(TradePilotError):
    status, code, title = 503, "service_unavailable", "Service unavailable"
