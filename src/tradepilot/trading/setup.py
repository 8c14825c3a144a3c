"""Wires trading into the process: the service, and the default paper account at registration."""

from __future__ import annotations

from tradepilot.runtime import Runtime
from tradepilot.trading.orders import OrderService
from tradepilot.trading.position_exits import PositionService
from tradepilot.trading.service import TradingService


async def start_trading(runtime: Runtime) -> None:
    trading = TradingService(runtime)
    runtime.services["trading"] = trading
    runtime.services["orders"] = OrderService(runtime)  # matching starts after the market (matching_owner)
    runtime.services["positions"] = PositionService(runtime)  # importing it makes exits follow positions
    identity = runtime.services.get("identity")
    if identity is not None:  # every new user gets a funded default paper account, in the same transaction
        identity.registration_hooks.append(
            lambda session, user: trading.open_default_account(session, user_id=user.id))
