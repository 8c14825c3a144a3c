"""The backtest report (PNG + self-contained HTML) and ``tradepilot backtest`` on stored candles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tradepilot.cli import main
from tradepilot.strategies.backtest import run_backtest
from tradepilot.strategies.backtest.report import charts, html_page
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.catalog import build_strategy

DATA = Path(__file__).resolve().parents[1] / "data" / "market" / "coinbase_btc_usd_1h" / "BTC_USD-1h-first720.csv"


def test_report_has_pictures_and_is_self_contained() -> None:
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    bars = Bars.from_arrays("BTC/USDT", np.arange(400) * 3_600_000, close, close * 1.01, close * 0.99, close)
    result = run_backtest(build_strategy("sma_cross", {"fast": 5, "slow": 20}), bars, timeframe="1h")
    images = charts(result)
    assert set(images) == {"equity.png", "trades-BTC-USDT.png"}
    assert all(png.startswith(b"\x89PNG") for png in images.values())
    page = html_page(result, images)
    assert page.count("data:image/png;base64,") == 2
    assert "default-src 'none'" in page and "http://" not in page and "https://" not in page
    assert "Buy and hold" in page and "sma_cross" in page


def test_cli_backtests_stored_candles_and_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRADEPILOT_DATA_DIR", str(tmp_path / "var"))
    assert main(["data", "import", str(DATA), "--symbol", "BTC/USDT", "--timeframe", "1h", "--venue", "bt",
                 "--no-derive"]) == 0
    out = tmp_path / "report"
    code = main(["backtest", "--strategy", "sma_cross", "--symbol", "BTC/USDT", "--timeframe", "1h", "--venue", "bt",
                 "--from", "2017-07-02", "--to", "2017-07-30", "--param", "fast=10", "--param", "slow=30",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bars"] == 28 * 24 and summary["trades"] >= 3
    assert summary["start"] == "2017-07-02T00:00:00Z"
    assert summary["fees_rates"] == {"maker": 0.001, "taker": 0.001}  # the paper exchange's defaults
    assert json.loads(captured.out[captured.out.index("{"):])["final_equity"] == summary["final_equity"]
    assert "100%" in captured.err  # the progress bar
    assert {p.name for p in out.iterdir()} >= {"report.html", "equity.png", "trades-BTC-USDT.png", "trades.json"}


def test_cli_refuses_bad_parameters_with_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRADEPILOT_DATA_DIR", str(tmp_path / "var"))
    code = main(["backtest", "--strategy", "sma_cross", "--symbol", "BTC/USDT", "--timeframe", "1h",
                 "--param", "fast=50", "--param", "slow=20", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "fast (50) must be less than slow (20)" in capsys.readouterr().err
