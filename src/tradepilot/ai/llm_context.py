"""The market context injected beside a user's prompt: what the platform measured, as data.

Per requested symbol: the last price and key indicators (trend, regime, momentum,
volatility, nearest levels) from the closed candles of the timeframe; and the user's own
open positions and non-zero balances. Amounts are decimal strings, as everywhere in the API.
Only this user's rows are read. The LLM gets this as a separate message marked as data.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.ai.analysis import InsufficientHistory, analyse
from tradepilot.ai.market_candles import candles_of
from tradepilot.ai.models_catalog import regime_model
from tradepilot.core.money import to_plain_string
from tradepilot.market.service import MarketService
from tradepilot.trading.models import AccountStatus, Balance, TradingAccount
from tradepilot.trading.order_models import Position

MAX_ROWS = 50  # positions and balances each: a context, not an export


def _amount(value: Decimal) -> str:
    return to_plain_string(value)


async def symbol_context(market: MarketService, symbol: str, timeframe: str, bars: int) -> dict[str, Any]:
    """The last price and the indicators of one symbol (``indicators: null`` and why, when
    there are too few closed bars to measure them)."""
    found = [b for b in await market.read_candles(symbol, timeframe, None, None, bars + 1) if b.closed][-bars:]
    live = market.last_price(symbol)
    last = live if live is not None else (found[-1].close if found else None)
    out: dict[str, Any] = {"symbol": symbol, "last_price": None if last is None else _amount(last),
                           "timeframe": timeframe, "as_of": found[-1].open_time.isoformat() if found else None}
    try:
        facts = await asyncio.to_thread(analyse, candles_of(found), regime_model())
    except InsufficientHistory as exc:
        out["indicators"], out["indicators_missing"] = None, f"insufficient_data: {exc}"
        return out
    t, m, v = facts.trend, facts.momentum, facts.volatility
    out["indicators"] = {
        "trend": {"direction": t["direction"], "strength": t["strength"], "adx_14": t["adx_14"]},
        "regime": None if facts.regime is None else facts.regime["label"],
        "rsi_14": m["rsi_14"], "macd_histogram": m["macd_histogram"], "roc_10_pct": m["roc_10_pct"],
        "atr_14_pct": v["atr_14_pct"], "volatility_regime": v["regime"],
        "nearest_support": facts.support[0].price if facts.support else None,
        "nearest_resistance": facts.resistance[0].price if facts.resistance else None,
        "bars": facts.bars,
    }
    return out


async def portfolio_context(session: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
    """The user's open positions and non-zero balances on their open accounts."""
    accounts = {a.id: a for a in (await session.scalars(
        select(TradingAccount).where(TradingAccount.user_id == user_id,
                                     TradingAccount.status == AccountStatus.ACTIVE))).all()}
    if not accounts:
        return {"positions": [], "balances": []}
    positions = [p for p in (await session.scalars(
        select(Position).where(Position.user_id == user_id, Position.account_id.in_(accounts))
        .order_by(Position.symbol))).all() if p.quantity != 0]
    balances = [b for b in (await session.scalars(
        select(Balance).where(Balance.account_id.in_(accounts)).order_by(Balance.asset))).all()
        if b.free != 0 or b.locked != 0]
    return {
        "positions": [{"account": accounts[p.account_id].name, "symbol": p.symbol, "quantity": _amount(p.quantity),
                       "average_entry_price": None if p.average_entry_price is None else _amount(p.average_entry_price),
                       "realised_pnl": _amount(p.realised_pnl)} for p in positions[:MAX_ROWS]],
        "balances": [{"account": accounts[b.account_id].name, "asset": b.asset, "free": _amount(b.free),
                      "locked": _amount(b.locked)} for b in balances[:MAX_ROWS]],
    }
