"""Routers whose JSON bodies are parsed exactly: floats become ``Decimal``, never binary floats."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute


class DecimalJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


class DecimalJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_json_handler(request: Request) -> Response:
            return await handler(DecimalJSONRequest(request.scope, request.receive))

        return exact_json_handler


def api_router(**kwargs: Any) -> APIRouter:
    """Every router of the API is made here, so no route can forget exact JSON parsing."""
    return APIRouter(route_class=DecimalJSONRoute, **kwargs)
