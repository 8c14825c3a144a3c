"""``GET /api/users/me/export``: the caller's own data, as one JSON download."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Depends, Response

from tradepilot.core.deps import RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import require_scope
from tradepilot.identity.principal import AuthUser
from tradepilot.models_registry import metadata
from tradepilot.ops.backup.export import export_user

router = api_router(prefix="/api/users", tags=["users"])
ReadingUser = Annotated[AuthUser, Depends(require_scope("read"))]


@router.get("/me/export", summary="Export all your data (JSON)",
            responses={200: {"content": {"application/json": {}}, "description": "Every table's rows of yours"}})
async def export_me(runtime: RuntimeDep, principal: ReadingUser) -> Response:
    """Your profile, sessions and API keys (without hashes), trading accounts, balances, ledger,
    orders, fills, positions, equity history, security events, events and jobs — read in one
    consistent snapshot. Needs the `read` scope."""
    async with runtime.db.read() as session:
        if runtime.db.dialect == "postgresql":  # one snapshot for every table, as on SQLite
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        body = await export_user(session, metadata, user_id=principal.id, exported_at=runtime.clock.now())
    return Response(json.dumps(body, ensure_ascii=False).encode(), media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="tradepilot-export.json"',
                             "Cache-Control": "no-store"})
