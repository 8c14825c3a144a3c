"""The operator's RSS and Atom feeds, served by a real HTTP server the test starts: entries
scored and stored once, conditional GETs, a malformed or oversized feed logged, not fatal."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from sqlalchemy import func, select

from tests import support
from tests.helpers import bearer, new_user
from tradepilot.ai.feed_models import FeedEntry, FeedState
from tradepilot.ai.feeds import fetch_feeds
from tradepilot.ai.feeds_job import FETCH_JOB, SCHEDULE
from tradepilot.ai.models import SentimentText
from tradepilot.config import Settings
from tradepilot.jobs.registry import get_handler
from tradepilot.jobs.scheduler import registered_schedules
from tradepilot.runtime import Runtime

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Crypto wire</title><link>http://example.test/</link>
<item><guid>wire-1</guid><title>$BTC rallies to a record as buyers pile in</title>
<link>http://example.test/1</link><pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate></item>
<item><guid>wire-2</guid><title>Ethereum plunges after exchange hack, analysts downgrade outlook</title>
<description>&lt;p&gt;Losses &lt;b&gt;deepen&lt;/b&gt; as ETH slides.&lt;/p&gt;</description>
<pubDate>Wed, 25 Nov 2026 10:00:00 GMT</pubDate></item>
<item><guid>wire-3</guid><title>Central bank holds rates steady</title>
<pubDate>Wed, 25 Nov 2026 11:00:00 GMT</pubDate></item>
<item><guid>wire-1</guid><title>$BTC rallies to a record as buyers pile in</title></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>ETH desk</title><id>urn:eth-desk</id>
<updated>2026-11-26T09:00:00Z</updated>
<entry><id>urn:eth-desk:1</id><title>Upgrade ships on time, network fees fall sharply</title>
<updated>2026-11-26T08:00:00Z</updated><summary>Developers celebrate a smooth launch.</summary></entry>
<entry><id>urn:eth-desk:2</id><title>Validators report outage, staking withdrawals delayed</title>
<updated>2026-11-26T09:00:00Z</updated></entry>
</feed>"""

ETAG = '"rss-v1"'


class FeedServer(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str | None]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        FeedServer.requests.append((self.path, self.headers.get("If-None-Match")))
        if self.path == "/rss":
            if self.headers.get("If-None-Match") == ETAG:
                self.send_response(304)
                self.end_headers()
                return
            self._send(RSS, "application/rss+xml", ETag=ETAG)
        elif self.path == "/atom":  # no validators: every fetch gets the whole feed
            self._send(ATOM, "application/atom+xml")
        elif self.path == "/broken":
            self._send(b"{ this is not a feed at all", "text/plain")
        elif self.path == "/huge":
            self._send(b"<rss>" + b" " * 40_000 + b"</rss>", "application/rss+xml")
        else:
            self.send_response(404)
            self.end_headers()

    def _send(self, body: bytes, kind: str, **headers: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def feed_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FeedServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FeedServer.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(database_url: str, tmp_path, feed_server: str) -> Settings:  # type: ignore[no-untyped-def]
    feeds = [{"name": "wire", "url": f"{feed_server}/rss"},
             {"name": "eth-desk", "url": f"{feed_server}/atom", "symbols": ["ETH-USDT"]},
             {"name": "broken", "url": f"{feed_server}/broken"},
             {"name": "huge", "url": f"{feed_server}/huge"},
             {"name": "gone", "url": f"{feed_server}/missing"}]
    return support.make_settings(database_url, data_dir=tmp_path / "var", ai_feeds=feeds, ai_feed_max_bytes=20_000)


async def _rows(runtime: Runtime) -> list[SentimentText]:
    async with runtime.db.read() as session:
        return list((await session.scalars(select(SentimentText).order_by(SentimentText.published_at,
                                                                          SentimentText.symbol))).all())


async def test_rss_and_atom_entries_are_scored_and_stored_once(runtime: Runtime, client: httpx.AsyncClient,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tradepilot.ai.feeds"):
        first = {o.feed: o for o in await fetch_feeds(runtime)}
    assert (first["wire"].status, first["wire"].entries, first["wire"].stored) == ("ok", 4, 3)  # wire-1 twice
    assert (first["eth-desk"].status, first["eth-desk"].stored) == ("ok", 2)
    for bad in ("broken", "huge", "gone"):  # logged and recorded; the other feeds went on
        assert first[bad].status == "error" and first[bad].stored == 0
    assert "not a readable RSS/Atom feed" in first["broken"].error
    assert "at most 20000 are read" in first["huge"].error and first["gone"].error == "HTTP 404"
    assert {r.message.split(":")[0] for r in caplog.records} >= {"feed broken", "feed huge", "feed gone"}

    rows = await _rows(runtime)
    assert all(r.user_id is None for r in rows)
    by_text = {(r.text.split(".")[0][:30], r.symbol): r for r in rows}
    # symbols: the cashtag, the name and ticker, none, and the Atom feed's operator mapping
    assert set(by_text) == {("$BTC rallies to a record as bu", "BTC/USDT"),
                            ("Ethereum plunges after exchang", "ETH/USDT"),
                            ("Central bank holds rates stead", None),
                            ("Upgrade ships on time, network", "ETH/USDT"),
                            ("Validators report outage, stak", "ETH/USDT")}
    assert by_text[("$BTC rallies to a record as bu", "BTC/USDT")].label == "bullish"
    plunge = by_text[("Ethereum plunges after exchang", "ETH/USDT")]
    assert plunge.label == "bearish" and plunge.source == "feed:wire"
    assert plunge.text.endswith("Losses deepen as ETH slides.")  # the HTML of the description is gone
    assert plunge.published_at.isoformat().startswith("2026-11-25T10:00:00")

    second = {o.feed: o for o in await fetch_feeds(runtime)}
    assert second["wire"].status == "not_modified" and second["wire"].stored == 0  # a conditional GET
    assert second["eth-desk"].status == "ok" and second["eth-desk"].stored == 0  # fetched again, nothing new
    assert ("/rss", ETAG) in FeedServer.requests
    assert len(await _rows(runtime)) == len(rows)
    async with runtime.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(FeedEntry)) == 5
        states = {s.feed: s for s in (await session.scalars(select(FeedState))).all()}
    assert states["wire"].etag == ETAG and states["wire"].entries_stored == 3
    assert states["broken"].status == "error" and states["eth-desk"].entries_stored == 2

    # every user's sentiment includes the feeds' texts
    _, tokens = await new_user(client)
    history = await client.get("/api/ai/sentiment", params={"symbol": "ETH/USDT", "start": "2026-11-01T00:00:00Z",
                                                            "end": "2026-11-27T00:00:00Z"}, headers=bearer(tokens))
    assert history.status_code == 200, history.text
    assert history.json()["overall"]["texts"] == 3


async def test_the_fetch_is_a_scheduled_job() -> None:
    assert get_handler(FETCH_JOB) is not None
    assert SCHEDULE in registered_schedules() and SCHEDULE.cron == "*/15 * * * *"


def test_feeds_are_validated_at_start(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for feeds in ([{"name": "x", "url": "file:///etc/passwd"}], [{"name": "x", "url": "http://a.test/", "extra": 1}],
                  [{"name": "x", "url": "http://a.test/"}, {"name": "x", "url": "http://b.test/"}],
                  [{"name": "x", "url": "http://a.test/", "symbols": ["BTC"]}]):
        with pytest.raises(ValueError):
            support.make_settings(database_url, data_dir=tmp_path / "var", ai_feeds=feeds)

