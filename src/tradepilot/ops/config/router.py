"""``/api/system/config``: read the configuration by section; change the runtime settings, back
the configuration up and restore it. Administrators only; changes need a recent password re-entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends
from pydantic import Field
from sqlalchemy import select

from tradepilot import __version__
from tradepilot.core.deps import ClientIP, DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Schema
from tradepilot.identity.deps import get_admin
from tradepilot.identity.reauth import RecentlyReauthenticatedAdmin
from tradepilot.ops.config.manager import ConfigManager, config_manager, env_name
from tradepilot.ops.config.models import ConfigOverride

router = api_router(prefix="/api/system/config", tags=["system"], dependencies=[Depends(get_admin)])
BACKUP_FORMAT = "tradepilot-config/1"


def get_config_manager(runtime: RuntimeDep) -> ConfigManager:
    return config_manager(runtime)


Manager = Annotated[ConfigManager, Depends(get_config_manager)]


class ConfigChange(Schema):
    settings: dict[str, Any] = Field(description="Variable (TRADEPILOT_X or x) → new value; null: back to the "
                                                 "environment's value", min_length=1, max_length=50)


class ConfigDocument(Schema):
    format: str = BACKUP_FORMAT
    app_version: str | None = None
    created_at: datetime | None = None
    settings: dict[str, Any]


@router.get("", summary="The configuration by section (no secrets), and what can change at runtime")
async def get_config(manager: Manager, db: DbSession) -> dict[str, Any]:
    overrides = await db.scalars(select(ConfigOverride).order_by(ConfigOverride.name))
    return {**manager.describe(), "overrides": [
        {"variable": env_name(o.name), "value": o.value, "updated_by": o.updated_by, "updated_at": o.updated_at}
        for o in overrides]}


@router.patch("", summary="Change runtime settings on every replica (needs a recent password re-entry)")
async def change_config(body: ConfigChange, admin: RecentlyReauthenticatedAdmin, manager: Manager, db: DbSession,
                        ip: ClientIP) -> dict[str, Any]:
    """All or nothing: 422 `invalid_setting` with `errors[]` naming each variable and the reason
    (unknown, needs a restart, or an invalid value) and nothing changes. Audited as
    `admin.action` `config_changed` with the old and new values."""
    return {"changed": await manager.update(db, body.settings, by=admin.id, ip=ip)}


@router.get("/backup", response_model=ConfigDocument, summary="The effective configuration, without any secret")
async def backup_config(manager: Manager, runtime: RuntimeDep) -> ConfigDocument:
    return ConfigDocument(app_version=__version__, created_at=runtime.clock.now(), settings=manager.export())


@router.post("/restore", summary="Restore the runtime settings of a configuration backup")
async def restore_config(body: ConfigDocument, admin: RecentlyReauthenticatedAdmin, manager: Manager, db: DbSession,
                         ip: ClientIP) -> dict[str, Any]:
    """Applies the runtime settings whose value differs (validated as a whole, like PATCH);
    `needs_restart` lists the other variables that differ: set them in the environment."""
    apply, needs_restart = manager.restorable(body.settings)
    changed = await manager.update(db, apply, by=admin.id, ip=ip) if apply else {}
    return {"changed": changed, "needs_restart": needs_restart}
