"""Tables of the operator's RSS/Atom feeds (``ai/feeds.py``).

``ai_feed_entry`` remembers every entry already scored, by feed and a digest of its id (or
link, or title): the unique key is what makes "stored once" hold even when two processes
fetch the same feed. ``ai_feed_state`` keeps each feed's validators (ETag, Last-Modified) for
the next conditional GET and the outcome of the last fetch. The scored texts themselves go
to ``ai_sentiment_text`` with no user: market-wide texts every user's sentiment includes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey


class FeedEntry(UUIDPrimaryKey, Base):
    __tablename__ = "ai_feed_entry"
    __table_args__ = (UniqueConstraint("feed", "entry_key", name="uq_ai_feed_entry_feed_entry_key"),)

    feed: Mapped[str] = mapped_column(String(64))
    entry_key: Mapped[str] = mapped_column(String(64))  # SHA-256 of the entry's id, link or title
    link: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    symbols: Mapped[str] = mapped_column(Text)  # comma-separated; empty: a general market text
    published_at: Mapped[datetime]
    stored_at: Mapped[datetime]


class FeedState(Base):
    __tablename__ = "ai_feed_state"

    feed: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # ok, not_modified, error
    error: Mapped[str | None] = mapped_column(Text)
    entries_stored: Mapped[int]  # over the feed's life
    fetched_at: Mapped[datetime]
