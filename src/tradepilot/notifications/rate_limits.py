"""Our own pace per channel, below each service's published limits, on the runtime clock.

Telegram: 1 message per second per chat and 30 per second per bot. Discord webhooks: 5 per
2 seconds and 30 per minute per webhook. Slack incoming webhooks: 1 per second per webhook.
Web Push services publish no fixed limit (their 429 + ``Retry-After`` is honoured instead).

The windows are per process: with several worker processes the services' own 429 answers,
whose ``Retry-After`` every channel honours, are the backstop.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

from tradepilot.core.clock import Clock
from tradepilot.notifications import constants as c


@dataclass(frozen=True, slots=True)
class Window:
    scope: str  # "target" (per chat / webhook) or "channel" (per bot)
    amount: int
    seconds: float


LIMITS: dict[str, tuple[Window, ...]] = {
    c.TELEGRAM: (Window("target", 1, 1.0), Window("channel", 30, 1.0)),
    c.DISCORD: (Window("target", 5, 2.0), Window("target", 30, 60.0)),
    c.SLACK: (Window("target", 1, 1.0),),
}


class ChannelLimiter:
    """Sliding-log windows: ``wait_needed`` says how long until one more send fits, ``record`` counts it."""

    def __init__(self, clock: Clock, limits: dict[str, tuple[Window, ...]] | None = None) -> None:
        self.clock = clock
        self.limits = LIMITS if limits is None else limits
        self._sent: dict[tuple[str, str, float], deque[float]] = defaultdict(deque)

    def _keys(self, channel: str, target_key: str) -> list[tuple[Window, tuple[str, str, float]]]:
        return [(w, (channel, target_key if w.scope == "target" else "*", w.seconds))
                for w in self.limits.get(channel, ())]

    def wait_needed(self, channel: str, target_key: str) -> float:
        now = self.clock.monotonic()
        wait = 0.0
        for window, key in self._keys(channel, target_key):
            log = self._sent[key]
            while log and log[0] <= now - window.seconds:
                log.popleft()
            if len(log) >= window.amount:
                wait = max(wait, log[len(log) - window.amount] + window.seconds - now)
        return wait

    def record(self, channel: str, target_key: str) -> None:
        now = self.clock.monotonic()
        for _, key in self._keys(channel, target_key):
            self._sent[key].append(now)
