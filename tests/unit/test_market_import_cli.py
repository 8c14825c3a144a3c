"""`tradepilot data import FILE --symbol S --timeframe TF`: exact bars into the configured venue's store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.market_support import COINBASE_1H, candle_rows
from tradepilot.cli import main
from tradepilot.config import load_settings
from tradepilot.market.store import CandleStore


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DATA_DIR", "MARKET_FEED", "DATABASE_URL"):
        monkeypatch.delenv(f"TRADEPILOT_{name}", raising=False)
    monkeypatch.setenv("TRADEPILOT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path / "var"


def test_import_writes_the_file_and_its_derived_timeframes(data_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["data", "import", str(COINBASE_1H), "--symbol", "btc-usdt", "--timeframe", "1h"]) == 0
    assert "simulated BTC/USDT 1h: 720 bars imported" in capsys.readouterr().out
    store = CandleStore.for_settings(load_settings(), "simulated")
    rows = candle_rows(COINBASE_1H)
    bars = store.read_bars("BTC/USDT", "1h")
    assert [(b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (r.time, r.value("open"), r.value("high"), r.value("low"), r.value("close"), r.value("volume")) for r in rows]
    assert len(store.read_bars("BTC/USDT", "1d")) == len({r.time.date() for r in rows})
    # importing again changes nothing (upsert by open time)
    assert main(["data", "import", str(COINBASE_1H), "--symbol", "BTC/USDT", "--timeframe", "1h"]) == 0
    assert store.read_bars("BTC/USDT", "1h") == bars


def test_a_broken_file_is_refused_with_the_reason(data_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,10,9,8,10,1\n")
    assert main(["data", "import", str(bad), "--symbol", "BTC/USDT", "--timeframe", "1h"]) == 1
    assert "high is below open or close" in capsys.readouterr().err
    odd = tmp_path / "odd.csv"
    odd.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:30:00Z,10,11,9,10,1\n")
    assert main(["data", "import", str(odd), "--symbol", "BTC/USDT", "--timeframe", "1h"]) == 1
    assert "multiples of 1h" in capsys.readouterr().err
    assert main(["data", "import", str(tmp_path / "missing.csv"), "--symbol", "BTC/USDT", "--timeframe", "1h"]) == 1
