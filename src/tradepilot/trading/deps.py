"""FastAPI dependencies of trading: the service, scopes, and ``OwnedAccount``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import NotFound
from tradepilot.core.ownership import ownership_dependency
from tradepilot.identity.deps import CurrentUser, require_scope
from tradepilot.identity.principal import AuthUser
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.service import TradingService


def get_trading(runtime: RuntimeDep) -> TradingService:
    return runtime.services["trading"]  # type: ignore[no-any-return]


Trading = Annotated[TradingService, Depends(get_trading)]

ReadUser = Annotated[AuthUser, Depends(require_scope("read"))]
TradeUser = Annotated[AuthUser, Depends(require_scope("trade"))]  # every balance-changing route


async def account_of(session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID) -> TradingAccount:
    """``user_id``'s trading account (open or closed); 404 alike for a missing id and for
    another user's account. Services that take an account id (alerts, strategies) use it too."""
    account = await session.get(TradingAccount, account_id)
    if account is None or account.user_id != user_id:
        raise NotFound("Trading account not found.", code="account_not_found")
    return account


@ownership_dependency
async def owned_account(account_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> TradingAccount:
    """The caller's trading account (open or closed); 404 alike for a missing id and for
    another user's account."""
    return await account_of(db, principal.id, account_id)


OwnedAccount = Annotated[TradingAccount, Depends(owned_account)]
