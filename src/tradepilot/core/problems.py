"""RFC 9457 problem+json for every error the API can return."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tradepilot.core.context import request_id_var
from tradepilot.core.errors import TradePilotError

logger = logging.getLogger("tradepilot.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tradepilot.dev/problems/"

# pydantic error types we raise on purpose, surfaced as the problem's code
CUSTOM_VALIDATION_CODES = {"decimal_precision_loss", "weak_password", "common_password"}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id_var.get(),
    }
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        errors.append({"field": ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc),
                       "in": loc[0] if loc else None,
                       "code": err.get("type"),
                       "message": err.get("msg")})
    return errors


async def _on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TradePilotError)
    return problem_response(exc.status, exc.code, exc.detail, title=exc.title, headers=exc.headers, extra=exc.extra)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    types = {e["code"] for e in errors}
    if "json_invalid" in types:
        return problem_response(400, "malformed_json", "The request body is not valid JSON.")
    custom = sorted(types & CUSTOM_VALIDATION_CODES)
    code = custom[0] if custom else "validation_error"
    detail = "; ".join(f"{e['field'] or e['in']}: {e['message']}" for e in errors)
    return problem_response(422, code, detail, title="Validation failed", extra={"errors": errors})


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(exc.status_code, code, detail, headers=getattr(exc, "headers", None))


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TradePilotError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    # Unexpected exceptions are answered by RequestContextMiddleware (core.http), which
    # sits inside Starlette's error middleware and can still add X-Request-ID.
