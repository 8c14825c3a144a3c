"""Telegram in: linking a chat with a one-time code, and the commands of a linked chat.

``POST /api/notifications/channels/telegram/link`` gives the user a code (kept hashed, 15
minutes, one use); sending ``/start <code>`` to the bot from a **private** chat links that chat
to the user. A linked chat may ask ``/status``, ``/balance``, ``/positions``, ``/pnl`` — always
about its own user only — and ``/stop <strategy>`` once the user turned trading commands on.
An unlinked chat gets only the help text. Each update is handled once (``consume_once`` on its
``update_id``, in the transaction of its effect), whether it came by webhook or long polling.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict
from tradepilot.core.money import to_plain_string
from tradepilot.core.outbox import consume_once
from tradepilot.identity.models import User
from tradepilot.notifications import constants as c
from tradepilot.notifications.channel_models import TelegramLinkCode
from tradepilot.notifications.targets import Target, save_target, telegram_target_of_chat
from tradepilot.strategies.models import StrategyConfig, StrategyStatus
from tradepilot.strategies.runs.service import stop_config
from tradepilot.trading.models import AccountStatus, Balance, TradingAccount
from tradepilot.trading.order_models import Position
from tradepilot.trading.service import count_open_orders

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

LINK_CODE_TTL = timedelta(minutes=15)
HELP = ("TradePilot bot. Commands: /status, /balance, /positions, /pnl, /stop <strategy>.\n"
        "To link this chat, open TradePilot → Notifications → Telegram, get a code, and send /start <code>.")
NOT_LINKED = ("This chat is not linked to a TradePilot account. Get a code in TradePilot "
              "(Notifications → Telegram) and send /start <code> here.")
TRADING_OFF = ("Trading commands are off for this chat. Turn them on in TradePilot "
               "(Notifications → Telegram → trading commands) to use /stop.")


@dataclass(frozen=True, slots=True)
class Reply:
    chat_id: int
    text: str


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def new_link_code(session: AsyncSession, user_id: uuid.UUID, *, now: datetime) -> tuple[str, datetime]:
    """A fresh one-time code for the user (earlier unused ones stop working)."""
    await session.execute(delete(TelegramLinkCode).where(TelegramLinkCode.user_id == user_id))
    code = secrets.token_urlsafe(18)  # Telegram's start parameter allows A-Z a-z 0-9 _ - (64 max)
    expires_at = now + LINK_CODE_TTL
    session.add(TelegramLinkCode(code_hash=code_hash(code), user_id=user_id, expires_at=expires_at, created_at=now))
    await session.flush()
    return code, expires_at


async def handle_update(runtime: Runtime, update: dict[str, Any]) -> Reply | None:
    """Answer one update (None: nothing to say, or seen before)."""
    update_id = update.get("update_id")
    message = update.get("message")
    if not isinstance(update_id, int) or not isinstance(message, dict):
        return None
    chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
    chat_id, text = chat.get("id"), message.get("text")
    if not isinstance(chat_id, int) or not isinstance(text, str):
        return None
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        if not await consume_once(session, c.TELEGRAM_UPDATES, str(update_id), now=now):
            return None
        answer = await _answer(runtime, session, chat_id, str(chat.get("type", "")), text.strip(), now)
    return Reply(chat_id, answer)


async def _answer(runtime: Runtime, session: AsyncSession, chat_id: int, chat_type: str, text: str,
                  now: datetime) -> str:
    command, _, argument = text.partition(" ")
    command = command.split("@", 1)[0].lower()
    argument = argument.strip()
    if command == "/start" and argument:
        return await _link(runtime, session, chat_id, chat_type, argument, now)
    if command in ("/start", "/help") or not command.startswith("/"):
        return HELP
    target = await telegram_target_of_chat(runtime, session, chat_id)
    if target is None:
        return NOT_LINKED
    handlers = {"/status": _status, "/balance": _balance, "/positions": _positions, "/pnl": _pnl}
    if command in handlers:
        return await handlers[command](session, target.user_id)
    if command == "/stop":
        return await _stop(runtime, session, target, argument)
    return HELP


async def _link(runtime: Runtime, session: AsyncSession, chat_id: int, chat_type: str, code: str,
                now: datetime) -> str:
    if chat_type != "private":
        return "Link TradePilot from a private chat with the bot, not from a group."
    row = await session.get(TelegramLinkCode, code_hash(code[:100]))
    if row is None or row.expires_at <= now:
        return "This code is unknown or expired. Get a new one in TradePilot."
    user_id = row.user_id
    await session.delete(row)  # one use
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        return "This code is unknown or expired. Get a new one in TradePilot."
    await save_target(runtime, session, user_id=user_id, channel=c.TELEGRAM, address={"chat_id": str(chat_id)},
                      label=None, now=now)
    return f"Linked to {user.email}. You will get your TradePilot notifications here. /help lists the commands."


async def _accounts(session: AsyncSession, user_id: uuid.UUID) -> list[TradingAccount]:
    return list((await session.scalars(select(TradingAccount).where(
        TradingAccount.user_id == user_id, TradingAccount.status == AccountStatus.ACTIVE)
        .order_by(TradingAccount.created_at, TradingAccount.id))).all())


def _plain(value: Decimal) -> str:
    return to_plain_string(value)


async def _status(session: AsyncSession, user_id: uuid.UUID) -> str:
    user = await session.get(User, user_id)
    accounts = await _accounts(session, user_id)
    open_orders = sum([await count_open_orders(session, account) for account in accounts])
    running = await session.scalar(select(func.count()).select_from(StrategyConfig).where(
        StrategyConfig.user_id == user_id, StrategyConfig.status == StrategyStatus.RUNNING))
    return (f"TradePilot: {user.email if user else '?'}\nAccounts: {len(accounts)}, open orders: {open_orders}, "
            f"running strategies: {running or 0}.")


async def _balance(session: AsyncSession, user_id: uuid.UUID) -> str:
    lines = []
    for account in await _accounts(session, user_id):
        balances = (await session.scalars(select(Balance).where(Balance.account_id == account.id)
                                          .order_by(Balance.asset))).all()
        held = [f"{b.asset} {_plain(b.free + b.locked)}" + (f" ({_plain(b.locked)} locked)" if b.locked else "")
                for b in balances if b.free or b.locked]
        lines.append(f"{account.name} ({account.kind}): " + (", ".join(held) if held else "empty"))
    return "Balances\n" + "\n".join(lines) if lines else "You have no open trading account."


async def _open_positions(session: AsyncSession, user_id: uuid.UUID) -> list[Position]:
    return list((await session.scalars(select(Position).where(Position.user_id == user_id)
                                       .order_by(Position.symbol, Position.id))).all())


async def _positions(session: AsyncSession, user_id: uuid.UUID) -> str:
    lines = [f"{p.symbol}: {_plain(p.quantity)} at {_plain(p.average_entry_price or Decimal(0))}"
             for p in await _open_positions(session, user_id) if p.quantity]
    return "Open positions\n" + "\n".join(lines) if lines else "No open positions."


async def _pnl(session: AsyncSession, user_id: uuid.UUID) -> str:
    realised: dict[str, Decimal] = defaultdict(Decimal)
    fees: dict[str, Decimal] = defaultdict(Decimal)
    for position in await _open_positions(session, user_id):
        realised[position.quote_asset] += position.realised_pnl
        fees[position.quote_asset] += position.fees
    if not realised:
        return "No trades yet."
    lines = [f"{asset}: {_plain(realised[asset] - fees[asset])} net ({_plain(realised[asset])} realised, "
             f"{_plain(fees[asset])} fees)" for asset in sorted(realised)]
    return "Realised P&L\n" + "\n".join(lines)


async def _stop(runtime: Runtime, session: AsyncSession, target: Target, name: str) -> str:
    if not target.trading_commands:
        return TRADING_OFF
    if not name:
        return "Usage: /stop <strategy name>"
    config = await session.scalar(select(StrategyConfig).where(
        StrategyConfig.user_id == target.user_id, func.lower(StrategyConfig.name) == name.lower()[:100])
        .order_by(StrategyConfig.created_at).limit(1))
    if config is None:
        return f"You have no strategy named {name[:100]!r}."
    try:
        await stop_config(runtime, session, config)
    except Conflict:
        return f"{config.name} is not running."
    return f"Stopped {config.name}."
