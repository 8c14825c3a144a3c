"""The user-data stream's reconnect back-off (live/user_stream.py): it doubles while connecting
fails, and a stream that was up (subscribed) and then dropped starts again at the first wait."""

from __future__ import annotations

import asyncio
import types
import uuid
from typing import Any

import pytest

from tradepilot.trading.live import user_stream


class ScriptedStream(user_stream.UserStream):
    """Each connection goes as scripted: ``fail`` before subscribing, ``drop`` after."""

    def __init__(self, script: list[str]) -> None:
        super().__init__(None, uuid.uuid4(), self._ignore, lambda: None)  # type: ignore[arg-type]
        self.script = script

    @staticmethod
    async def _ignore(views: Any) -> None:
        return None

    def _client(self, account: Any) -> Any:
        return object()

    @staticmethod
    async def _close(client: Any) -> None:
        return None

    async def _follow(self, client: Any) -> None:
        step = self.script.pop(0)
        if step == "drop":
            self.subscriptions += 1
        raise ConnectionError(step)


async def test_the_back_off_doubles_on_failures_and_starts_again_after_a_stream_that_was_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def live_account(runtime: Any, account_id: uuid.UUID) -> Any:
        return types.SimpleNamespace(venue="binance")

    stream = ScriptedStream(["fail", "fail", "fail", "drop", "fail", "drop"])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if not stream.script:
            raise asyncio.CancelledError

    monkeypatch.setattr(user_stream, "detached_live_account", live_account)
    monkeypatch.setattr(user_stream, "streams_orders", lambda exchange_id: True)
    monkeypatch.setattr(user_stream.asyncio, "sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await stream.run()
    assert waits == [0.5, 1.0, 2.0, 0.5, 1.0, 0.5]
    assert stream.subscriptions == 2
