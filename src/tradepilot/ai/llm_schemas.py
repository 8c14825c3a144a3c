"""Request and response bodies of the active models, custom prompts and their audit (docs/ai.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from tradepilot.ai.active_models import Task
from tradepilot.core.schemas import Schema
from tradepilot.market.schemas import Timeframe

PROMPT_HARD_CAP = 100_000  # characters; the operator's TRADEPILOT_LLM_MAX_PROMPT_CHARS is the real limit


class ActiveModelOut(Schema):
    task: str
    model: str | None  # None: nothing can serve the task here (chat without an LLM provider)
    source: str  # "user" (your choice) or "default"
    choices: list[str]


class ActiveModelList(Schema):
    items: list[ActiveModelOut]


class ActiveModelSet(Schema):
    task: Task
    model: str = Field(min_length=1, max_length=64, description="a model name from GET /api/ai/models")


class CustomPrompt(Schema):
    prompt: str = Field(min_length=1, max_length=PROMPT_HARD_CAP)
    symbols: list[str] = Field(default_factory=list, max_length=5, description="their prices and indicators are sent")
    timeframe: Timeframe = "1h"
    include_portfolio: bool = Field(default=True, description="send your open positions and balances")
    max_tokens: int | None = Field(default=None, ge=16, le=32768, description="default and cap: the provider's")


class TokenUsage(Schema):
    prompt_tokens: int | None
    completion_tokens: int | None


class QuotaOut(Schema):
    used: int
    limit: int
    resets_at: datetime


class CustomPromptAnswer(Schema):
    id: uuid.UUID  # the audit record's id
    answer: str
    informational: bool = True  # the answer never triggers an action
    model: str  # llm:<provider>
    provider_model: str
    finish_reason: str | None
    context: dict[str, Any]  # exactly what was injected beside your prompt
    usage: TokenUsage
    latency_ms: int
    quota: QuotaOut


class LLMCallOut(Schema):
    id: uuid.UUID
    purpose: str
    provider: str
    model: str
    prompt_chars: int
    prompt_sha256: str
    context_chars: int
    symbols: list[str]
    max_tokens: int
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    outcome: str
    provider_status: int | None
    created_at: datetime


class LLMCallPage(Schema):
    items: list[LLMCallOut]
    next_cursor: str | None
