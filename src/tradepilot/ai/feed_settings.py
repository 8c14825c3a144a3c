"""An RSS/Atom feed as the operator configures it (``TRADEPILOT_AI_FEEDS``, a JSON list).

Feeds are the operator's, never a user's: the server fetches them on a schedule, and a URL a
user could set would be a path into the server's own network. ``symbols`` maps a feed to the
markets it is about (a Bitcoin news feed → ``BTC/USDT``); without it an entry is about the
symbols its ``$CASHTAGS`` or names mention, or the market in general. This module imports
nothing of the platform: ``config.py`` uses it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

FEED_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class FeedSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=FEED_NAME_PATTERN, description="stored as the texts' source, feed:<name>")
    url: str = Field(description="http(s) URL of an RSS or Atom document")
    symbols: list[str] = Field(default_factory=list, max_length=20, description="BASE/QUOTE markets it is about")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http(s) URL with a host")
        return value.strip()

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        out = [s.strip().upper().replace("-", "/") for s in value]
        for s in out:
            if s.count("/") != 1 or not all(s.split("/")):
                raise ValueError(f"{s!r} is not a BASE/QUOTE symbol such as BTC/USDT")
        return out


def check_feeds(feeds: list[FeedSource]) -> None:
    names = [f.name for f in feeds]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"TRADEPILOT_AI_FEEDS: feed names must be unique ({', '.join(doubled)})")
