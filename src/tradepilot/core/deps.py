"""FastAPI dependencies of the shared kernel: the runtime, a database session, the clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.clock import Clock
from tradepilot.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


DB_OPENED_KEY = "db_session_opened"


async def get_db(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One session per request; services commit explicitly, anything else is rolled back."""
    request.scope.setdefault("state", {})[DB_OPENED_KEY] = True
    async with runtime.db.sessionmaker() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db)]


def get_clock(runtime: RuntimeDep) -> Clock:
    return runtime.clock


ClockDep = Annotated[Clock, Depends(get_clock)]


def get_client_ip(request: Request) -> str | None:
    return request.scope.get("state", {}).get("client_ip")


ClientIP = Annotated[str | None, Depends(get_client_ip)]
