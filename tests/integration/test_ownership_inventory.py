"""Every route that takes an object id must load it through an ownership dependency."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from tests.support import make_settings
from tradepilot.app import create_app
from tradepilot.core.ownership import OWNERSHIP_DEPENDENCIES
from tradepilot.identity.deps import get_admin

ADMIN_ONLY = "admin-only: AdminUser dependency"

# Routes with an id parameter that are *not* a user's resource, each with the reason. Every
# one must depend on ``get_admin`` (checked below): only admins may name other users' ids.
ALLOW_LIST: dict[tuple[str, str], str] = {
    ("GET", "/api/admin/users/{user_id}"): ADMIN_ONLY,
    ("PUT", "/api/admin/users/{user_id}/plan"): ADMIN_ONLY,
    ("PUT", "/api/admin/users/{user_id}/role"): ADMIN_ONLY,
    ("POST", "/api/admin/users/{user_id}/suspend"): ADMIN_ONLY,
    ("POST", "/api/admin/users/{user_id}/reactivate"): ADMIN_ONLY,
    ("GET", "/api/admin/users/{user_id}/activity"): ADMIN_ONLY,
}


def _depends_on(dependant: Dependant, calls: set | frozenset) -> bool:  # type: ignore[type-arg]
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call in calls:
            return True
        stack.extend(dep.dependencies)
    return False


def _has_ownership_dependency(dependant: Dependant) -> bool:
    return _depends_on(dependant, OWNERSHIP_DEPENDENCIES)


def _id_params(path: str) -> list[str]:
    """Path parameters naming an object, wherever they are declared (route or dependency)."""
    names = re.findall(r"{(\w+)(?::[^}]*)?}", path)
    return [n for n in names if n == "id" or n.endswith("_id")]


def _api_routes(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    routes = {}
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            for method in ctx.methods or ():
                routes[(method, ctx.path)] = ctx.original_route
    return routes


def test_every_route_with_an_object_id_checks_ownership(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    routes = _api_routes(app)
    inventory = [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]
    checked, offenders = 0, []
    for method, path in inventory:
        if not _id_params(path) or (method, path) in ALLOW_LIST:
            continue
        checked += 1
        route = routes[(method, path)]
        if not _has_ownership_dependency(route.dependant):
            offenders.append(f"{method} {path}")
    assert not offenders, f"routes taking an object id without an ownership dependency: {offenders}"
    assert checked >= 1  # the inventory really saw id-taking routes (the sessions route at least)
    assert ("DELETE", "/api/auth/sessions/{session_id}") in inventory


def test_inventory_detects_a_missing_dependency(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'y.db'}"))

    @app.get("/api/leaky/{order_id}")
    async def leaky(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    route = _api_routes(app)[("GET", "/api/leaky/{order_id}")]
    assert _id_params("/api/leaky/{order_id}") == ["order_id"] and not _has_ownership_dependency(route.dependant)


def test_allow_listed_routes_exist_and_are_admin_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'z.db'}"))
    routes = _api_routes(app)
    stale = [key for key in ALLOW_LIST if key not in routes]
    assert not stale, f"allow-listed routes that no longer exist: {stale}"
    open_doors = [f"{m} {p}" for (m, p) in ALLOW_LIST if not _depends_on(routes[(m, p)].dependant, {get_admin})]
    assert not open_doors, f"allow-listed routes that do not depend on get_admin: {open_doors}"
