"""problem+json, request ids, exact JSON decimals, metrics, health."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from tradepilot.core.errors import Conflict
from tradepilot.core.http import RequestContextMiddleware
from tradepilot.core.metrics import Metrics
from tradepilot.core.problems import install_problem_handlers
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Money, Schema


class Order(Schema):
    price: Money
    quantity: Money


def exact_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=Metrics(), trusted_proxies=[])
    router = api_router()

    @router.post("/echo")
    async def echo(order: Order) -> Order:
        assert isinstance(order.price, Decimal)
        return Order(price=order.price * 3, quantity=order.quantity)

    @router.get("/conflict")
    async def conflict() -> None:
        raise Conflict("already there", code="already_there")

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    app.include_router(router)
    return app


@pytest.fixture
async def exact_client():  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=exact_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_json_numbers_are_exact_decimals(exact_client) -> None:  # type: ignore[no-untyped-def]
    body = '{"price": 0.1, "quantity": 12345678901.123456789012345678}'
    resp = await exact_client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200
    # 0.1 * 3 is 0.3 exactly only if 0.1 never became a binary float
    assert resp.json() == {"price": "0.3", "quantity": "12345678901.123456789012345678"}


async def test_strings_accepted_and_tiny_values_printed_plainly(exact_client) -> None:  # type: ignore[no-untyped-def]
    resp = await exact_client.post("/echo", json={"price": "1e-18", "quantity": "2"})
    assert resp.json() == {"price": "0.000000000000000003", "quantity": "2"}


@pytest.mark.parametrize("price", ["0.0000000000000000001", "1e19", "NaN", "Infinity", "abc"])
async def test_unrepresentable_money_is_refused(exact_client, price) -> None:  # type: ignore[no-untyped-def]
    resp = await exact_client.post("/echo", json={"price": price, "quantity": "1"})
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["code"] == "decimal_precision_loss"
    assert problem["errors"][0]["field"] == "price"


async def test_too_precise_json_number_is_refused(exact_client) -> None:  # type: ignore[no-untyped-def]
    body = '{"price": 0.0000000000000000001, "quantity": 1}'
    resp = await exact_client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422 and resp.json()["code"] == "decimal_precision_loss"


async def test_malformed_json_is_400_problem(exact_client) -> None:  # type: ignore[no-untyped-def]
    resp = await exact_client.post("/echo", content="{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "malformed_json"


async def test_domain_error_problem_shape(exact_client) -> None:  # type: ignore[no-untyped-def]
    resp = await exact_client.get("/conflict", headers={"X-Request-ID": "client-chosen-id-123"})
    problem = resp.json()
    assert resp.status_code == 409 and resp.headers["x-request-id"] == "client-chosen-id-123"
    assert problem == {"type": "https://tradepilot.dev/problems/already_there", "title": "Conflict", "status": 409,
                       "detail": "already there", "code": "already_there", "request_id": "client-chosen-id-123"}


async def test_unexpected_error_is_500_problem_without_details(exact_client) -> None:  # type: ignore[no-untyped-def]
    resp = await exact_client.get("/boom")
    assert resp.status_code == 500 and resp.json()["code"] == "internal_error"
    assert "secret internal detail" not in resp.text and "Traceback" not in resp.text
    assert resp.headers["x-request-id"]


async def test_unknown_route_and_method(exact_client) -> None:  # type: ignore[no-untyped-def]
    assert (await exact_client.get("/nope")).json()["code"] == "not_found"
    assert (await exact_client.delete("/echo")).json()["code"] == "method_not_allowed"


async def test_unsafe_request_id_is_replaced(exact_client) -> None:  # type: ignore[no-untyped-def]
    resp = await exact_client.get("/conflict", headers={"X-Request-ID": "bad id\r\nwith newline"})
    assert resp.headers["x-request-id"] != "bad id" and len(resp.headers["x-request-id"]) == 32


async def test_health_and_system_health(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/health")).json() == {"status": "ok"}
    resp = await client.get("/api/system/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok" and body["components"] == {"database": "up", "redis": "disabled"}
    assert "details" not in body  # details are for admins only


async def test_metrics_count_requests_by_route_template(client) -> None:  # type: ignore[no-untyped-def]
    await client.get("/health")
    await client.delete("/api/auth/sessions/00000000-0000-4000-8000-000000000000")
    text = (await client.get("/metrics")).text
    assert 'tradepilot_http_requests_total{method="GET",route="/health",status="200"}' in text
    assert 'route="/api/auth/sessions/{session_id}",status="401"' in text
    assert "tradepilot_http_request_duration_seconds_bucket" in text
