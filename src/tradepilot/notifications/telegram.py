"""A small client of the Telegram Bot API: ``sendMessage`` and ``getUpdates``.

The API's host is the operator's setting (``TRADEPILOT_TELEGRAM_API_URL``; tests point it at
a local server), not a user's, so it does not go through the outbound guard; it has the same
habits anyway: no redirects, no proxy from the environment, a time cap. Telegram answers
``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}`` on errors.
"""

from __future__ import annotations

from typing import Any

import httpx

from tradepilot.config import Settings
from tradepilot.core.outbound import default_tls_context
from tradepilot.notifications.senders import DeliveryFailure, retry_after_of

MAX_TEXT = 4096
PERMANENT_CODES = frozenset({400, 401, 403, 404})  # bad chat, blocked by the user, bad token


class TelegramBot:
    def __init__(self, settings: Settings) -> None:
        token = settings.telegram_bot_token
        self.token = token.get_secret_value() if token is not None else None
        self.base_url = settings.telegram_api_url.rstrip("/")
        self.timeout = settings.outbound_timeout_seconds

    @property
    def configured(self) -> bool:
        return bool(self.token)

    async def call(self, method: str, params: dict[str, Any], *, timeout: float | None = None) -> Any:
        """One Bot API method; its ``result``, or DeliveryFailure."""
        if not self.token:
            raise DeliveryFailure("Telegram is not configured (TRADEPILOT_TELEGRAM_BOT_TOKEN)", permanent=True)
        seconds = timeout or self.timeout
        try:
            async with httpx.AsyncClient(follow_redirects=False, trust_env=False, verify=default_tls_context(),
                                         timeout=httpx.Timeout(seconds)) as client:
                response = await client.post(f"{self.base_url}/bot{self.token}/{method}", json=params)
        except httpx.HTTPError as exc:
            raise DeliveryFailure(f"Telegram unreachable: {type(exc).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("ok") is True:
            return answer.get("result")
        code = answer.get("error_code") if isinstance(answer, dict) else None
        code = code if isinstance(code, int) else response.status_code
        description = str(answer.get("description", ""))[:200] if isinstance(answer, dict) else ""
        parameters = answer.get("parameters") if isinstance(answer, dict) else None
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        if code == 429:
            raise DeliveryFailure(f"Telegram rate limited: {description}", status_code=429,
                                  retry_after=retry_after_of(response.headers, retry_after))
        gone = code == 403  # the user blocked the bot, or left the chat
        raise DeliveryFailure(f"Telegram error {code}: {description}", status_code=code,
                              permanent=code in PERMANENT_CODES, gone=gone)

    async def send_message(self, chat_id: int | str, text: str) -> Any:
        return await self.call("sendMessage", {"chat_id": chat_id, "text": text[:MAX_TEXT],
                                               "disable_web_page_preview": True})

    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"timeout": timeout, "allowed_updates": ["message"]}
        if offset is not None:
            params["offset"] = offset
        result = await self.call("getUpdates", params, timeout=timeout + self.timeout)
        return [u for u in result or [] if isinstance(u, dict)]

