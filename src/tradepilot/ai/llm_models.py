"""Tables of the LLM path and of model choice: each user's active model per task, their AI
calls per UTC day (the plan's quota) and the audit record of every LLM call.

The audit keeps the prompt's size and SHA-256, never its text nor the answer (a user's
questions may hold private plans; the hash still proves what was sent), and never a key.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)


class ActiveModel(Base):
    """The model a user chose for a task; no row: the task's default."""

    __tablename__ = "ai_active_model"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True)
    task: Mapped[str] = mapped_column(String(16), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class AICallDay(Base):
    """AI calls of one user on one UTC day: one row, incremented by a conditional upsert so
    two concurrent calls can never both take the last one."""

    __tablename__ = "ai_call_day"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)


class LLMCall(UUIDPrimaryKey, Base):
    """One call to an LLM provider on a user's behalf (a custom prompt or an analysis summary)."""

    __tablename__ = "ai_llm_call"
    __table_args__ = (Index("ix_ai_llm_call_user_created", "user_id", "created_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))  # custom_prompt | summary
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))  # the provider's model name
    prompt_chars: Mapped[int]  # the user's own text (the summary's: the facts sent)
    prompt_sha256: Mapped[str] = mapped_column(String(64))
    context_chars: Mapped[int]  # the market context injected beside it
    symbols: Mapped[list[Any]] = mapped_column(JSON)
    max_tokens: Mapped[int]
    prompt_tokens: Mapped[int | None]  # as the provider reported them
    completion_tokens: Mapped[int | None]
    latency_ms: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(24))  # ok | timeout | rejected | rate_limited | bad_answer | unavailable
    provider_status: Mapped[int | None]  # the provider's HTTP status, when it answered
    created_at: Mapped[datetime]
