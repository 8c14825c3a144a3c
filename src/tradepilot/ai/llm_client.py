"""One call to an OpenAI-compatible chat-completions endpoint, with httpx.

The protocol is one POST (``{base_url}/chat/completions``), so httpx — already the platform's
HTTP client — speaks it without another SDK and its dependencies. What can go wrong is
translated here, once, into a small exception tree; the service maps it to problem codes.
The whole call (connect to last byte) is bounded by the provider's timeout; redirects are
not followed and proxies from the environment are not used (the endpoint is the operator's).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from tradepilot.ai.llm_settings import LLMProvider

MAX_RESPONSE_BYTES = 1024 * 1024  # an answer capped at 32k tokens is far below this


class LLMError(Exception):
    outcome = "unavailable"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMTimeout(LLMError):
    outcome = "timeout"


class LLMRejected(LLMError):
    """401/403: the operator's key or model is wrong; nothing the user can change."""

    outcome = "rejected"


class LLMRateLimited(LLMError):
    outcome = "rate_limited"

    def __init__(self, message: str, *, status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class LLMBadAnswer(LLMError):
    outcome = "bad_answer"


class LLMUnavailable(LLMError):
    outcome = "unavailable"


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    model: str  # as the provider names it in the answer
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    status: int


async def chat(provider: LLMProvider, api_key: str | None, messages: list[dict[str, str]], *,
               max_tokens: int, temperature: float = 0.2) -> ChatAnswer:
    """Send ``messages`` to the provider's model; the answer's text and token counts."""
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    body = {"model": provider.model, "messages": messages, "max_tokens": max_tokens,
            "temperature": temperature, "stream": False}
    timeout = httpx.Timeout(provider.timeout_seconds)
    try:
        async with asyncio.timeout(provider.timeout_seconds):
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
                resp = await client.post(f"{provider.base_url}/chat/completions", json=body, headers=headers)
    except (TimeoutError, httpx.TimeoutException):
        raise LLMTimeout(f"no answer within {provider.timeout_seconds:g} s") from None
    except httpx.HTTPError as exc:
        raise LLMUnavailable(f"cannot reach the provider: {type(exc).__name__}") from None
    return _answer(resp)


def _answer(resp: httpx.Response) -> ChatAnswer:
    status = resp.status_code
    if status in (401, 403):
        raise LLMRejected(f"the provider refused the credentials or model (HTTP {status})", status=status)
    if status == 429:
        raise LLMRateLimited("the provider is rate-limiting", status=status,
                             retry_after=_retry_after(resp.headers.get("retry-after")))
    if status != 200:
        raise LLMUnavailable(f"the provider answered HTTP {status}", status=status)
    if len(resp.content) > MAX_RESPONSE_BYTES:
        raise LLMBadAnswer("the answer is larger than any chat completion", status=status)
    try:
        data = resp.json()
        choice = data["choices"][0]
        text = choice["message"]["content"]
        usage = data.get("usage") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, AttributeError):
        raise LLMBadAnswer("the answer is not a chat completion", status=status) from None
    if not isinstance(text, str) or not text.strip():
        raise LLMBadAnswer("the answer holds no text", status=status)
    return ChatAnswer(text=text.strip(), model=str(data.get("model") or ""), status=status,
                      prompt_tokens=_count(usage, "prompt_tokens"), completion_tokens=_count(usage, "completion_tokens"),
                      finish_reason=choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None)


def _count(usage: Any, name: str) -> int | None:
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _retry_after(raw: str | None) -> int | None:
    try:
        seconds = int(float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP date: the caller's default applies
    return max(1, min(seconds, 3600)) if seconds is not None else None
