"""Scoring and keeping a user's texts, and their sentiment over time (docs/ai.md, "Sentiment")."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.ai.models import SentimentText
from tradepilot.ai.sentiment import SentimentModel

_CASHTAG = re.compile(r"\$([A-Za-z]{2,10})\b")
INTERVALS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "1w": timedelta(weeks=1)}
RECENT = timedelta(days=30)  # GET /sentiment's default range, and the window analyze-market reports


def cashtag_symbols(text: str, symbols_by_base: dict[str, list[str]]) -> set[str]:
    """The listed symbols a text names by cashtag (``$BTC`` → every BTC market listed)."""
    return {s for tag in _CASHTAG.findall(text) for s in symbols_by_base.get(tag.upper(), [])}


def _digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


async def store_texts(session: AsyncSession, model: SentimentModel, user_id: uuid.UUID | None,
                      items: list[tuple[str, set[str], datetime, str]], now: datetime) -> list[dict[str, Any]]:
    """Score every text once and keep one row per (text, symbol); a text already kept for that
    symbol is reported as a duplicate and not stored again. Returns one answer per text.
    ``user_id`` None: texts of the operator's feeds, shared by every user."""
    readings = model.read([text for text, _, _, _ in items])
    digests = [_digest(text) for text, _, _, _ in items]
    owner = SentimentText.user_id.is_(None) if user_id is None else SentimentText.user_id == user_id
    existing = set((await session.execute(select(SentimentText.symbol, SentimentText.digest).where(
        owner, SentimentText.digest.in_(set(digests))))).all())
    answers = []
    for (text, symbols, published, source), reading, digest in zip(items, readings, digests):
        targets: list[str | None] = sorted(symbols) or [None]
        fresh = [s for s in targets if (s, digest) not in existing]
        for symbol in fresh:
            existing.add((symbol, digest))
            p = reading.probabilities
            session.add(SentimentText(user_id=user_id, symbol=symbol, source=source, text=text, digest=digest,
                                      label=reading.label, score=reading.score, p_bearish=p["bearish"],
                                      p_neutral=p["neutral"], p_bullish=p["bullish"], published_at=published,
                                      created_at=now))
        answers.append({"text": text, "symbols": sorted(symbols), "label": reading.label,
                        "score": round(reading.score, 4),
                        "probabilities": {k: round(v, 4) for k, v in reading.probabilities.items()},
                        "duplicate": not fresh})
    return answers


def _bucket(moment: datetime, width: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return epoch + ((moment - epoch) // width) * width


def _summary(rows: list[SentimentText]) -> dict[str, Any]:
    counts = {"bearish": 0, "neutral": 0, "bullish": 0}
    for row in rows:
        counts[row.label] += 1
    score = sum(r.score for r in rows) / len(rows) if rows else 0.0
    label = "bullish" if score >= 0.1 else "bearish" if score <= -0.1 else "neutral"
    return {"texts": len(rows), "score": round(score, 4), "label": label, **counts}


async def _texts(session: AsyncSession, user_id: uuid.UUID, symbol: str | None, start: datetime,
                 end: datetime) -> list[SentimentText]:
    """The texts a user's sentiment is made of: their own and the operator's feeds' (no user),
    published in [start, end), oldest first."""
    mine_or_feeds = or_(SentimentText.user_id == user_id, SentimentText.user_id.is_(None))
    query = select(SentimentText).where(mine_or_feeds, SentimentText.published_at >= start,
                                        SentimentText.published_at < end)
    query = query.where(SentimentText.symbol.is_(None) if symbol is None else SentimentText.symbol == symbol)
    return list((await session.scalars(query.order_by(SentimentText.published_at))).all())


async def sentiment_summary(session: AsyncSession, user_id: uuid.UUID, symbol: str | None, start: datetime,
                            end: datetime) -> dict[str, Any]:
    """Over the range only: ``overall`` of :func:`sentiment_over_time` for the same arguments
    (analyze-market reports it, so its figures are exactly ``GET /api/ai/sentiment``'s)."""
    return _summary(await _texts(session, user_id, symbol, start, end))


async def sentiment_over_time(session: AsyncSession, user_id: uuid.UUID, symbol: str | None, start: datetime,
                              end: datetime, interval: str) -> dict[str, Any]:
    """The mean score and label counts per period, and over the whole range: the user's texts
    and the operator's feeds' (no user)."""
    rows = await _texts(session, user_id, symbol, start, end)
    width = INTERVALS[interval]
    periods: dict[datetime, list[SentimentText]] = defaultdict(list)
    for row in rows:
        periods[_bucket(row.published_at, width)].append(row)
    return {"overall": _summary(rows),
            "items": [{"period_start": at, **_summary(group)} for at, group in sorted(periods.items())]}
