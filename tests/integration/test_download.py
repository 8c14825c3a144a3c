"""Downloading candles through ccxt (market/download.py, `tradepilot data download`) from the fake Binance."""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.binance import KLINES, FakeBinance, fake_binance_in_thread
from tradepilot import cli
from tradepilot.market.download import DownloadProgress, download_candles
from tradepilot.market.feeds.ccxt_errors import ExchangeBadRequest, ExchangeBadSymbol
from tradepilot.market.feeds.ccxt_venues import create_exchange
from tradepilot.market.store import CandleStore
from tradepilot.market.types import Bar

pytestmark = pytest.mark.slow


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def recorded_bars() -> list[Bar]:
    with KLINES[("BTCUSDT", "1h")].open() as handle:
        return [Bar("BTC/USDT", "1h", datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")),
                    Decimal(r["open"]), Decimal(r["high"]), Decimal(r["low"]), Decimal(r["close"]),
                    Decimal(r["volume"])) for r in csv.DictReader(handle)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    server = await FakeBinance(speed=0).start()
    yield server
    await server.stop()


@pytest.fixture
async def exchange(fake: FakeBinance) -> AsyncIterator[Any]:
    ex = create_exchange("binance", websocket=False, rest_url=fake.rest_url)
    yield ex
    await ex.close()


def kline_starts(fake: FakeBinance) -> list[datetime]:
    return [datetime.fromtimestamp(int(q["startTime"]) / 1000, tz=timezone.utc) for n, q in fake.requests if n == "klines"]


async def test_download_writes_every_bar_with_progress(fake: FakeBinance, exchange: Any, tmp_path: Path) -> None:
    store = CandleStore(tmp_path, "binance")
    seen: list[DownloadProgress] = []
    result = await download_candles(exchange, store, symbol="BTC/USDT", timeframe="1h", since=utc("2017-07-01"),
                                    page_limit=100, progress=seen.append)
    expected = recorded_bars()
    assert (result.bars, result.resumed, result.first_open_time, result.last_open_time) == (
        720, False, expected[0].open_time, expected[-1].open_time)
    assert store.read_bars("BTC/USDT", "1h") == expected
    assert [p.bars for p in seen] == [100, 200, 300, 400, 500, 600, 700, 720]
    assert all(a.fraction < b.fraction for a, b in zip(seen, seen[1:])) and 0 < seen[0].fraction < 0.2
    assert kline_starts(fake)[:2] == [utc("2017-07-01"), utc("2017-07-05 15:00")]  # page 2 after page 1's last bar


async def test_a_second_run_resumes_from_the_last_stored_bar(fake: FakeBinance, exchange: Any, tmp_path: Path) -> None:
    store = CandleStore(tmp_path, "binance")
    first = await download_candles(exchange, store, symbol="BTC/USDT", timeframe="1h", since=utc("2017-07-01"),
                                   until=utc("2017-07-10"), page_limit=500)
    assert (first.bars, first.last_open_time) == (205, utc("2017-07-09 23:00"))
    fake.requests.clear()
    second = await download_candles(exchange, store, symbol="BTC/USDT", timeframe="1h", since=utc("2017-07-01"),
                                    page_limit=500)
    assert second.resumed and second.start == utc("2017-07-09 23:00")
    assert kline_starts(fake)[0] == utc("2017-07-09 23:00")  # not from --since again
    assert second.bars == 720 - 205 + 1  # the last stored bar is fetched again, in case it was unfinished
    assert store.read_bars("BTC/USDT", "1h") == recorded_bars()


async def test_temporary_errors_are_retried_and_bad_requests_are_not(fake: FakeBinance, exchange: Any, tmp_path: Path) -> None:
    store = CandleStore(tmp_path, "binance")
    fake.fail_next("klines", 503, times=2)
    result = await download_candles(exchange, store, symbol="BTC/USDT", timeframe="1h", since=utc("2017-07-01"),
                                    until=utc("2017-07-02"), backoff_seconds=0.01)
    assert result.bars == 13
    with pytest.raises(ExchangeBadSymbol):
        await download_candles(exchange, store, symbol="NOPE/USDT", timeframe="1h", since=utc("2017-07-01"))
    with pytest.raises(ExchangeBadRequest, match="timeframe"):
        await download_candles(exchange, store, symbol="BTC/USDT", timeframe="7m", since=utc("2017-07-01"))


def test_cli_data_download_prints_progress_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADEPILOT_DATA_DIR", str(tmp_path / "var"))
    with fake_binance_in_thread() as fake:
        argv = ["data", "download", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h",
                "--since", "2017-07-01", "--page", "300", "--rest-url", fake.rest_url]
        assert cli.main(argv) == 0
        out, err = capsys.readouterr()
        assert "binance BTC/USDT 1h: 720 bars written (2017-07-01T11:00Z .. 2017-07-31T10:00Z; from 2017-07-01T00:00Z)" in out
        assert err.splitlines() == [  # one progress line per page (the fraction is of the time up to now)
            line for line in err.splitlines() if re.fullmatch(r"  BTC/USDT 1h: \d+ bars, up to \S+ \(\d+%\)", line)]
        assert [line.split()[2] for line in err.splitlines()] == ["300", "600", "720"]
        assert cli.main(argv) == 0
        out, _ = capsys.readouterr()
        assert "1 bars written" in out and "resumed at 2017-07-31T10:00Z" in out
        assert cli.main([*argv[:5], "DOGE/NOPE", *argv[6:]]) == 1
        assert "does not list DOGE/NOPE" in capsys.readouterr().err
    store = CandleStore(tmp_path / "var" / "market" / "candles", "binance")
    assert store.read_bars("BTC/USDT", "1h") == recorded_bars()
