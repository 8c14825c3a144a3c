"""Tables of the AI engine: the texts whose sentiment a user has scored.

One row per text and symbol it is about (``symbol`` NULL: about the market in general), so
the sentiment of a symbol over time is one indexed range read. A text sent twice (same
user, symbol and wording) is stored once: ``digest`` is its SHA-256.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)


class SentimentText(UUIDPrimaryKey, Base):
    __tablename__ = "ai_sentiment_text"
    __table_args__ = (
        UniqueConstraint("user_id", "symbol", "digest", name="uq_ai_sentiment_text_user_symbol_digest"),
        Index("ix_ai_sentiment_text_user_symbol_published", "user_id", "symbol", "published_at"),
    )

    # NULL: a text of the operator's RSS/Atom feeds (ai/feeds.py), part of every user's sentiment
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    symbol: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)  # P(bullish) - P(bearish): a model output, not money
    p_bearish: Mapped[float] = mapped_column(Float)
    p_neutral: Mapped[float] = mapped_column(Float)
    p_bullish: Mapped[float] = mapped_column(Float)
    published_at: Mapped[datetime]
    created_at: Mapped[datetime]
