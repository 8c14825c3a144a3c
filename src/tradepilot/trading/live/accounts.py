"""Binding a trading account to an exchange: check the key there first, then store it sealed.

Everything that talks to the exchange happens *before* the request touches the database, so
no write transaction (on SQLite: the process's writer lock) is held across the network.
The exchange must accept the key (else 422 ``exchange_auth_failed``); where it tells what
the key may do (Binance: ``GET /sapi/v1/account/apiRestrictions``), a key that can withdraw
is refused with 422 ``withdrawal_permission_enabled`` unless the operator allows such keys
(``TRADEPILOT_LIVE_ALLOW_WITHDRAWAL_KEYS``) — TradePilot never withdraws, and a key that
cannot is worth less to whoever steals it — and a key that cannot trade with 422
``trading_permission_missing``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from tradepilot.core.errors import Unprocessable
from tradepilot.core.secrets_box import secret_box
from tradepilot.runtime import Runtime
from tradepilot.trading.live.credentials import Credentials, seal
from tradepilot.trading.live.exchange import LiveVenues
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.schemas import LiveAccountCreate
from tradepilot.trading.service import LiveBinding

logger = logging.getLogger("tradepilot.trading.live")


def live_venues(runtime: Runtime) -> LiveVenues:
    venues = runtime.services.get("live_venues")
    if venues is None:
        venues = runtime.services["live_venues"] = LiveVenues(runtime)
    return venues  # type: ignore[no-any-return]


async def detached_live_account(runtime: Runtime, account_id: uuid.UUID) -> TradingAccount | None:
    """The live account, read and detached (its credentials open the exchange outside any
    session); None if it is gone or no longer live."""
    async with runtime.db.read() as session:
        account = await session.get(TradingAccount, account_id)
        if account is None or not account.is_live:
            return None
        session.expunge(account)
        return account


@dataclass(frozen=True, slots=True)
class CheckedKey:
    binding: LiveBinding
    name: str


async def check_new_account(runtime: Runtime, body: LiveAccountCreate) -> CheckedKey:
    """Ask the exchange about the key (permissions, balances); the binding to store, or a 422."""
    venues = live_venues(runtime)
    if not venues.supported(body.exchange):
        raise Unprocessable(f"Live trading on {body.exchange!r} is not enabled on this server.",
                            code="exchange_not_supported",
                            extra={"supported": sorted(runtime.settings.live_exchanges)})
    credentials = Credentials(api_key=body.api_key.get_secret_value(), secret=body.secret.get_secret_value())
    exchange = venues.exchange(body.exchange, credentials)
    try:
        permissions = await exchange.key_permissions()
        balances = await exchange.balances()
    finally:
        await exchange.close()
    if permissions is not None:
        if permissions.withdrawals and not runtime.settings.live_allow_withdrawal_keys:
            logger.info("live account refused: withdrawal-enabled key", extra={"exchange": body.exchange})
            raise Unprocessable("This API key can withdraw funds. Create a key without the withdrawal permission "
                                "(TradePilot never withdraws).", code="withdrawal_permission_enabled")
        if permissions.trading is False:
            raise Unprocessable("This API key cannot trade: enable spot trading for it on the exchange.",
                                code="trading_permission_missing")
    binding = LiveBinding(exchange=body.exchange, credentials_encrypted=seal(secret_box(runtime), credentials),
                          permissions=None if permissions is None else dict(permissions.detail),
                          balances={asset: free for asset, (free, _locked) in balances.items()})
    return CheckedKey(binding=binding, name=body.name or body.exchange.capitalize())
