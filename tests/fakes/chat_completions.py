"""A local server that speaks the OpenAI chat-completions protocol (``POST /v1/chat/completions``).

It records every request (path, headers, JSON body) and answers from what it was sent: the
answer names the model, the user's text and the context's symbols with their last prices, so
a test can see that what it changed reached the model. Test knobs, each for the next
request(s) in order: :meth:`script` a status (401, 429 with ``Retry-After``, 500…), a delay
(to trigger the platform's timeout), a non-JSON body or a JSON body that is not a chat
completion. Runs in the test's event loop (:meth:`start`) or in its own thread
(:meth:`start_in_thread`, for a server process started as ``make run`` does).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Scripted:
    status: int = 200
    delay: float = 0.0
    body: str | None = None  # raw body instead of a chat completion
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ChatCompletionsServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: list[Scripted] = []
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def script(self, *steps: Scripted) -> None:
        self._script.extend(steps)

    async def start(self) -> ChatCompletionsServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start_in_thread(self) -> ChatCompletionsServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "chat server did not start"
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _complete(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"error": {"message": "invalid JSON"}}, status=400)
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        step = self._script.pop(0) if self._script else Scripted()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.body is not None or step.status != 200:
            text = step.body if step.body is not None else json.dumps({"error": {"message": f"HTTP {step.status}"}})
            return web.Response(status=step.status, text=text, headers=step.headers, content_type="application/json")
        return web.json_response(self._answer(body))

    @staticmethod
    def _answer(body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        user = [m["content"] for m in messages if m["role"] == "user"][-1]
        prices = []
        for message in messages:
            if message["role"] == "system" and "\n" in message["content"]:
                context = json.loads(message["content"].split("\n", 1)[1])
                markets = [context["analysis"]] if "analysis" in context else context.get("markets", [])
                prices += [f"{m['symbol']} at {m.get('last_price')}" for m in markets]
        text = f"[{body['model']}] You asked: {user[:60]}. Context: {'; '.join(prices) or 'no markets'}."
        words = sum(len(m["content"].split()) for m in messages)
        return {"id": "chatcmpl-local", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": words, "completion_tokens": len(text.split()),
                          "total_tokens": words + len(text.split())}}
