"""The operator's RSS/Atom feeds: fetched, parsed, each new entry scored and stored once.

A fetch is a conditional GET (the ETag and Last-Modified of the previous answer): an unchanged
feed answers 304 and costs nothing. The body is read up to ``ai_feed_max_bytes`` within
``ai_feed_timeout_seconds``; a larger or slower one is refused. ``feedparser`` parses RSS 0.9x
/ 1.0 / 2.0 and Atom alike (from the bytes: it never fetches anything itself). An entry is
known by a digest of its id (or link, or title); the ones already in ``ai_feed_entry`` are
skipped, the others scored by the sentiment model and stored through the sentiment store
with no user (market-wide texts), in one transaction with their ``ai_feed_entry`` rows — so
an entry is stored once even if a fetch is repeated or interrupted. A feed that cannot be
fetched or parsed is logged and recorded in ``ai_feed_state``; it never stops the others.

Symbols: the feed's operator mapping (``symbols``) when it has one; otherwise the listed
markets an entry names by ``$CASHTAG``, by ticker (``BTC``) or by name (``Bitcoin``).
"""

from __future__ import annotations

import calendar
import hashlib
import html
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import feedparser
import httpx
from sqlalchemy import select

from tradepilot.ai.feed_models import FeedEntry, FeedState
from tradepilot.ai.feed_settings import FeedSource
from tradepilot.ai.models_catalog import sentiment_model
from tradepilot.ai.sentiment_store import cashtag_symbols, store_texts

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tradepilot.market.types import Instrument
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ai.feeds")

MAX_TEXT = 2000  # as POST /api/ai/sentiment: longer entries are cut
_TAG = re.compile(r"<[^>]+>")
NAMES = {"bitcoin": "BTC", "ethereum": "ETH", "ether": "ETH", "solana": "SOL", "binance coin": "BNB",
         "litecoin": "LTC", "ripple": "XRP", "cardano": "ADA", "dogecoin": "DOGE", "polkadot": "DOT",
         "avalanche": "AVAX", "chainlink": "LINK", "tron": "TRX", "polygon": "MATIC"}


class FeedError(Exception):
    """The feed could not be fetched or parsed (recorded in ``ai_feed_state``, logged)."""


@dataclass(frozen=True, slots=True)
class Document:
    status: int  # 200 or 304
    body: bytes
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    feed: str
    status: str  # ok, not_modified, error
    entries: int = 0  # in the document
    stored: int = 0  # new ones stored now
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "status": self.status, "entries": self.entries, "stored": self.stored,
                "error": self.error}


async def fetch_document(client: httpx.AsyncClient, url: str, *, etag: str | None, last_modified: str | None,
                         max_bytes: int) -> Document:
    """GET ``url`` conditionally; the body is read up to ``max_bytes`` (more: ``FeedError``)."""
    headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return Document(304, b"", etag, last_modified)
            if response.status_code != 200:
                raise FeedError(f"HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FeedError(f"the feed is {declared} bytes; at most {max_bytes} are read")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FeedError(f"the feed is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return Document(200, b"".join(chunks), response.headers.get("ETag"), response.headers.get("Last-Modified"))
    except httpx.HTTPError as exc:
        raise FeedError(f"{type(exc).__name__}: {exc}") from None


def _plain(value: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", value)).split())


def _published(entry: Any, now: datetime) -> datetime:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return now
    return min(datetime.fromtimestamp(calendar.timegm(parsed), UTC), now)


def _key(entry: Any) -> str | None:
    raw = entry.get("id") or entry.get("link") or entry.get("title")
    return hashlib.sha256(str(raw).strip().encode()).hexdigest() if raw else None


def parse_entries(body: bytes, now: datetime) -> list[dict[str, Any]]:
    """Entries of an RSS or Atom document: key, title, link, text, published. ``FeedError``
    when the document is not a feed (feedparser's *bozo* flag with nothing usable)."""
    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries:
        raise FeedError(f"not a readable RSS/Atom feed: {parsed.get('bozo_exception')}")
    if not parsed.get("version") and not parsed.entries:
        raise FeedError("not an RSS/Atom feed")
    found = []
    for entry in parsed.entries:
        key = _key(entry)
        title = _plain(entry.get("title", ""))
        summary = _plain(entry.get("summary", ""))
        text = ". ".join(t for t in (title, summary) if t)[:MAX_TEXT]
        if key is None or not text:
            continue
        found.append({"key": key, "title": title[:1000] or text[:200], "link": entry.get("link"), "text": text,
                      "published": _published(entry, now)})
    return found


def symbols_named(text: str, instruments: list[Instrument]) -> set[str]:
    """Listed markets a text names by ``$CASHTAG``, by ticker as a word, or by name."""
    by_base: dict[str, list[str]] = {}
    for instrument in instruments:
        by_base.setdefault(instrument.base.upper(), []).append(instrument.symbol)
    found = cashtag_symbols(text, by_base)
    words = set(re.findall(r"\b[A-Z]{3,10}\b", text))
    lowered = text.lower()
    bases = {b for b in by_base if b in words} | {base for name, base in NAMES.items()
                                                  if re.search(rf"\b{re.escape(name)}\b", lowered)}
    return found | {s for b in bases for s in by_base.get(b, [])}


async def _state(session: AsyncSession, feed: FeedSource, now: datetime) -> FeedState:
    state = await session.get(FeedState, feed.name)
    if state is None:
        state = FeedState(feed=feed.name, url=feed.url, status="new", entries_stored=0, fetched_at=now)
        session.add(state)
    if state.url != feed.url:  # the operator pointed the name elsewhere: the old validators do not apply
        state.url, state.etag, state.last_modified = feed.url, None, None
    return state


async def store_entries(session: AsyncSession, feed: FeedSource, entries: list[dict[str, Any]],
                        instruments: list[Instrument], now: datetime) -> int:
    """Score and keep the entries not stored before; the count stored."""
    keys = {e["key"] for e in entries}
    known = set((await session.scalars(select(FeedEntry.entry_key).where(
        FeedEntry.feed == feed.name, FeedEntry.entry_key.in_(keys)))).all())
    listed = {i.symbol for i in instruments}
    fresh: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry["key"] not in known and entry["key"] not in fresh:
            fresh[entry["key"]] = entry
    if not fresh:
        return 0
    items = []
    for entry in fresh.values():
        mapped = {s for s in feed.symbols if s in listed}
        symbols = mapped if feed.symbols else symbols_named(entry["text"], instruments)
        items.append((entry["text"], symbols, entry["published"], f"feed:{feed.name}"))
        session.add(FeedEntry(feed=feed.name, entry_key=entry["key"], link=entry["link"], title=entry["title"],
                              symbols=",".join(sorted(symbols)), published_at=entry["published"], stored_at=now))
    await store_texts(session, sentiment_model(), None, items, now)
    return len(items)


async def fetch_feed(runtime: Runtime, client: httpx.AsyncClient, feed: FeedSource) -> Outcome:
    """One feed: conditional GET, parse, store what is new, record the outcome. Never raises
    for the feed's own faults (they are logged and recorded)."""
    settings, now = runtime.settings, runtime.clock.now()
    async with runtime.db.transaction() as session:
        state = await _state(session, feed, now)
        etag, last_modified = state.etag, state.last_modified
    try:
        document = await fetch_document(client, feed.url, etag=etag, last_modified=last_modified,
                                        max_bytes=settings.ai_feed_max_bytes)
        entries = parse_entries(document.body, now) if document.status == 200 else []
    except FeedError as exc:
        logger.warning("feed %s: %s", feed.name, exc, extra={"feed": feed.name, "url": feed.url})
        async with runtime.db.transaction() as session:
            state = await _state(session, feed, now)
            state.status, state.error, state.fetched_at = "error", str(exc)[:2000], now
        return Outcome(feed.name, "error", error=str(exc))
    instruments = runtime.services["market"].instruments()
    async with runtime.db.transaction() as session:
        stored = await store_entries(session, feed, entries, instruments, now)
        state = await _state(session, feed, now)
        status = "not_modified" if document.status == 304 else "ok"
        state.status, state.error, state.fetched_at = status, None, now
        state.etag, state.last_modified = document.etag, document.last_modified
        state.entries_stored += stored
    if stored:
        logger.info("feed %s: %d new entries", feed.name, stored, extra={"feed": feed.name, "stored": stored})
    return Outcome(feed.name, status, entries=len(entries), stored=stored)


async def fetch_feeds(runtime: Runtime) -> list[Outcome]:
    """Every configured feed, one after the other, each in its own transactions."""
    settings = runtime.settings
    timeout = httpx.Timeout(settings.ai_feed_timeout_seconds)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=3,
                                 headers={"User-Agent": "TradePilot feed reader"}) as client:
        return [await fetch_feed(runtime, client, feed) for feed in settings.ai_feeds]
