"""The performance report renderer (portfolio.report) and monthly_returns (portfolio.metrics).

The account: a real price series — Bitstamp BTC/USD daily closes, 2017-11-09 .. 2018-11-09
(tests/data/market/bitstamp_multi_1d/, see its README) — held as a buy-and-hold of 10,000
USD, with a 5,000 USD deposit on 2018-02-06 that buys more BTC and a 2,000 USD withdrawal on
2018-06-12 paid by selling BTC; the closed trades' P&L are those of one 0.1 BTC trade per
day. Because every flow buys or sells BTC at that day's close, the account's time-weighted
returns are BTC's own price returns: the independent reference for the monthly table.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import empyrical as ep
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import Normalize
from PIL import Image

from tradepilot.portfolio import metrics as m
from tradepilot.portfolio.report import (
    PDF_PAGES,
    AllocationSlice,
    InsufficientHistory,
    ReportInput,
    render,
    render_html,
    render_pdf,
)
from tradepilot.portfolio.report_charts import (
    chart_png,
    draw_equity,
    draw_monthly_heatmap,
    new_figure,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "market" / "bitstamp_multi_1d"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABEL = '<script>alert("pwned")</script> Alice & $Bob$'
GENERATED = datetime(2018, 11, 10, 6, 30, tzinfo=UTC)
DEPOSIT_DAY, DEPOSIT = "2018-02-06", 5_000.0
WITHDRAWAL_DAY, WITHDRAWAL = "2018-06-12", -2_000.0


def _closes() -> tuple[list[datetime], np.ndarray]:
    with open(DATA / "BTC_USD-1d-2017-11-09_2018-11-09.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    dates = [datetime.fromisoformat(r["timestamp"]) for r in rows]
    return dates, np.array([float(r["close"]) for r in rows])


DATES, BTC = _closes()
DAYS = [d.date().isoformat() for d in DATES]


def _account() -> tuple[np.ndarray, np.ndarray]:
    units = np.full(BTC.size, 10_000.0 / BTC[0])
    flows = np.zeros(BTC.size)
    for day, amount in ((DEPOSIT_DAY, DEPOSIT), (WITHDRAWAL_DAY, WITHDRAWAL)):
        k = DAYS.index(day)
        units[k:] += amount / BTC[k]
        flows[k] = amount
    return units * BTC, flows


EQUITY, FLOWS = _account()
TRADE_PNLS = 0.1 * np.diff(BTC)  # one 0.1 BTC trade a day, closed at the next close
ALLOCATION = {"BTC": (8_000.0, 0.8), "USDT": (2_000.0, 0.2)}


def _input(**overrides: object) -> ReportInput:
    args: dict[str, object] = {
        "title": "Performance report", "account_label": LABEL, "period_label": "All time",
        "generated_at": GENERATED, "currency": "USD", "dates": DATES, "equity": EQUITY,
        "flows": FLOWS, "allocation": ALLOCATION, "trade_pnls": TRADE_PNLS,
    }  # fmt: skip
    args.update(overrides)
    return ReportInput.from_equity(**args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> ReportInput:
    return _input()


@pytest.fixture(scope="module")
def html(data: ReportInput) -> str:
    return render_html(data)


@pytest.fixture(scope="module")
def pdf(data: ReportInput) -> bytes:
    return render_pdf(data)


def _images(page: str) -> dict[str, bytes]:
    found = re.findall(r'id="chart-(\w+)">\s*<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return {name: base64.b64decode(b64, validate=True) for name, b64 in found}


def _metric_cell(page: str, key: str) -> str:
    match = re.search(rf'<tr data-metric="{re.escape(key)}"><td>[^<]*</td><td class="num">([^<]*)</td>', page)
    assert match, f"no row for {key}"
    return match.group(1)


# ------------------------------------------------------------------ monthly_returns


def test_monthly_returns_equal_empyrical_on_the_price_returns() -> None:
    """Flows removed, the account's months are BTC's months (empyrical on the prices)."""
    table = m.monthly_returns(DATES, EQUITY, FLOWS)
    price_returns = pd.Series(BTC[1:] / BTC[:-1] - 1.0, index=pd.DatetimeIndex(DATES[1:]))
    expected = ep.aggregate_returns(price_returns, "monthly")
    assert table.years == (2017, 2018)
    assert np.isfinite(table.values).sum() == len(expected) == 13
    for (year, month), value in expected.items():
        assert table.get(year, month) == pytest.approx(value, rel=1e-9)
    yearly = ep.aggregate_returns(price_returns, "yearly")
    np.testing.assert_allclose(table.yearly, yearly.to_numpy(), rtol=1e-9)
    assert np.isnan(table.get(2017, 10)) and np.isnan(table.get(2018, 12))


def test_a_mid_month_deposit_is_not_a_monthly_return() -> None:
    """Worked by hand: +10 % then -10 % around the month end, a 1,000 deposit on 2 Feb
    (flat day), +10 % on 3 Feb, then a 500 withdrawal on 4 Feb (flat day)."""
    dates = ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02", "2024-02-03", "2024-02-04"]
    equity = [100.0, 110.0, 99.0, 1_099.0, 1_208.9, 708.9]
    flows = [0.0, 0.0, 0.0, 1_000.0, 0.0, -500.0]
    table = m.monthly_returns(dates, equity, flows)
    assert table.years == (2024,)
    assert table.get(2024, 1) == pytest.approx(0.10, rel=1e-12)
    assert table.get(2024, 2) == pytest.approx(0.9 * 1.0 * 1.1 * 1.0 - 1.0, rel=1e-12)  # -1 %
    assert table.yearly[0] == pytest.approx(1.1 * 0.99 - 1.0, rel=1e-12)
    assert np.isnan(table.values[0, 2:]).all()
    # the naive month-end ratio would call the deposit a +544 % February
    assert table.get(2024, 2) < 0


def test_monthly_returns_edge_cases() -> None:
    assert m.monthly_returns([], []).years == ()
    assert m.monthly_returns(["2024-01-01"], [5.0]).values.shape == (0, 12)
    # a missing equity point leaves wealth unchanged; a month without any return is NaN
    table = m.monthly_returns(["2024-01-31", "2024-02-01", "2024-03-01"], [100, np.nan, 120])
    assert np.isnan(table.get(2024, 2)) and np.isnan(table.get(2024, 3))
    aware = [datetime(2024, 1, 31, 23, 0, tzinfo=UTC), datetime(2024, 2, 1, 1, 0, tzinfo=UTC)]
    assert m.monthly_returns(aware, [100, 105]).get(2024, 2) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="ascending"):
        m.monthly_returns(["2024-02-01", "2024-01-01"], [1.0, 2.0])
    with pytest.raises(ValueError):
        m.monthly_returns(["2024-01-01"], [1.0, 2.0])


# ------------------------------------------------------------------ HTML


def test_html_embeds_the_four_charts_as_readable_pngs(html: str) -> None:
    images = _images(html)
    assert sorted(images) == ["allocation", "drawdown", "equity", "monthly"]
    for name, png in images.items():
        assert png.startswith(PNG_SIGNATURE), name
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            assert image.format == "PNG"
            width, height = image.size
        assert width == 1000 and 150 <= height <= 900, (name, image.size)


def test_html_is_self_contained(html: str) -> None:
    assert "http://" not in html.lower() and "https://" not in html.lower()
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert re.findall(r'src="([^"]{0,22})', html) == ["data:image/png;base64,"] * 4
    assert "default-src 'none'" in html  # the page itself forbids fetching anything


def test_user_text_is_escaped(html: str) -> None:
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; Alice &amp; $Bob$" in html


def test_the_numbers_shown_are_the_reports(data: ReportInput, html: str) -> None:
    r = data.report
    assert r.trades is not None
    expected = {
        "time_weighted_return": f"{r.time_weighted_return * 100:.2f} %",
        "annualized_return": f"{r.annualized_return * 100:.2f} %",
        "money_weighted_return": f"{r.money_weighted_return * 100:.2f} %",
        "volatility": f"{r.volatility * 100:.2f} %",
        "sharpe": f"{r.sharpe:.2f}",
        "sortino": f"{r.sortino:.2f}",
        "calmar": f"{r.calmar:.2f}",
        "max_drawdown": f"{r.max_drawdown * 100:.2f} %",
        "longest_drawdown": f"{r.longest_drawdown:,}",
        "var_0.95": f"{r.var[0.95] * 100:.2f} %",
        "cvar_0.99": f"{r.cvar[0.99] * 100:.2f} %",
        "trades.win_rate": f"{r.trades.win_rate * 100:.2f} %",
        "trades.expectancy": f"{r.trades.expectancy:,.2f} USD",
        "trades.count": "365",
    }
    for key, text in expected.items():
        assert _metric_cell(html, key) == text, key
    # the TWR is BTC's price return: the deposit and the withdrawal are not returns
    assert _metric_cell(html, "time_weighted_return") == f"{(BTC[-1] / BTC[0] - 1) * 100:.2f} %"
    assert 'data-metric="beta"' not in html  # no benchmark, no benchmark section
    for name, value in (("annualization", "365"), ("flow_timing", "end_of_period"),
                        ("var_method", "historical"), ("var_levels", "0.95, 0.99")):  # fmt: skip
        assert f'<tr data-convention="{name}"><th>{name}</th><td>{value}</td></tr>' in html
    assert "Π(1 + r_t) − 1" in html  # each metric carries its definition


def test_html_tables_of_drawdowns_and_months(data: ReportInput, html: str) -> None:
    drawdowns = re.search(r'<table class="drawdowns">(.*?)</table>', html, re.DOTALL)
    assert drawdowns
    rows = re.findall(r"<tr><td>(\d)</td><td>([\d-]+)</td><td>([\d-]+)</td><td>([^<]+)</td>"
                      r"<td>([^<]+)</td>", drawdowns.group(1))  # fmt: skip
    assert len(rows) == 5
    for (rank, peak, trough, _, depth), period in zip(rows, data.report.top_drawdowns, strict=True):
        assert peak == period.start.strftime("%Y-%m-%d")
        assert trough == period.trough.strftime("%Y-%m-%d")
        assert depth == f"{period.depth * 100:.2f} %"
    row_2018 = re.search(r'<tr data-year="2018">(.*?)</tr>', html)
    assert row_2018
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row_2018.group(1))
    table = data.monthly
    assert cells[:11] == [f"{v * 100:.1f} %" for v in table.values[1, :11]]
    assert cells[11] == "—" and cells[12] == f"{table.yearly[1] * 100:.1f} %"


def test_undefined_figures_show_as_a_dash() -> None:
    """Two points: one return, so no volatility, Sharpe, Sortino or Omega (each needs 2)."""
    page = render_html(_input(dates=DATES[:2], equity=EQUITY[:2], flows=FLOWS[:2],
                              trade_pnls=None, allocation=None))  # fmt: skip
    for key in ("volatility", "sharpe", "sortino", "omega"):
        assert _metric_cell(page, key) == "—", key
    assert _metric_cell(page, "time_weighted_return") == f"{(BTC[1] / BTC[0] - 1) * 100:.2f} %"
    assert "No holdings." in page and 'data-metric="trades.count"' not in page
    assert len(_images(page)) == 4


def test_too_little_history_is_a_domain_error() -> None:
    for n in (0, 1):
        with pytest.raises(InsufficientHistory) as caught:
            _input(dates=DATES[:n], equity=EQUITY[:n], flows=FLOWS[:n])
        assert caught.value.status == 422 and caught.value.code == "insufficient_history"


def test_input_is_checked() -> None:
    report = m.performance_report(EQUITY[:10], FLOWS[:10], DATES[:10])
    with pytest.raises(ValueError, match="different equity series"):
        ReportInput("t", "a", "p", GENERATED, "USD", np.asarray(DATES[:11]), EQUITY[:11],
                    FLOWS[:11], report)  # fmt: skip
    with pytest.raises(ValueError, match="one value per equity point"):
        ReportInput("t", "a", "p", GENERATED, "USD", np.asarray(DATES[:9]), EQUITY[:10],
                    FLOWS[:10], report)  # fmt: skip
    with pytest.raises(ValueError, match="unknown report format"):
        render(_input(dates=DATES[:3], equity=EQUITY[:3], flows=FLOWS[:3]), "csv")  # type: ignore[arg-type]


# ------------------------------------------------------------------ charts


def test_heat_map_cells_are_the_monthly_returns(data: ReportInput) -> None:
    ax = new_figure(10, 3).add_subplot()
    draw_monthly_heatmap(ax, data.monthly)
    cells = ax.images[0].get_array()
    expected = m.monthly_returns(DATES, EQUITY, FLOWS).values * 100
    np.testing.assert_array_equal(np.ma.getmaskarray(cells), np.isnan(expected))
    np.testing.assert_allclose(cells.compressed(), expected[np.isfinite(expected)], rtol=1e-12)
    labels = [t.get_text() for t in ax.texts]
    assert labels == [f"{v:.1f} %" for v in expected.ravel() if np.isfinite(v)]
    norm = ax.images[0].norm
    assert isinstance(norm, Normalize) and norm.vmin == -norm.vmax  # diverging around 0
    assert norm.vmax == pytest.approx(np.nanmax(np.abs(expected)))


def test_equity_chart_marks_the_deposit_and_the_withdrawal(data: ReportInput) -> None:
    ax = new_figure(10, 3).add_subplot()
    draw_equity(ax, data)
    markers = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert sorted(markers) == ["Deposit", "Withdrawal"]
    for label, day in (("Deposit", DEPOSIT_DAY), ("Withdrawal", WITHDRAWAL_DAY)):
        ((_, y),) = np.asarray(markers[label])
        assert y == pytest.approx(EQUITY[DAYS.index(day)])


def test_a_single_month_renders() -> None:
    feb = slice(DAYS.index("2018-02-01"), DAYS.index("2018-02-28") + 1)
    single = _input(dates=DATES[feb], equity=EQUITY[feb], flows=FLOWS[feb])
    assert single.monthly.years == (2018,) and np.isfinite(single.monthly.values).sum() == 1
    ax = new_figure(10, 2).add_subplot()
    draw_monthly_heatmap(ax, single.monthly)
    assert [t.get_text() for t in ax.texts] == [f"{single.monthly.get(2018, 2) * 100:.1f} %"]
    assert chart_png("monthly", single).startswith(PNG_SIGNATURE)


def test_many_holdings_are_summed_into_other() -> None:
    holdings = [AllocationSlice(f"C{i:02d}", 100.0 - i, (100.0 - i) / 4_000) for i in range(20)]
    few = _input(dates=DATES[:5], equity=EQUITY[:5], flows=FLOWS[:5], allocation=holdings)
    assert few.allocation[0].asset == "C00"
    ax = new_figure(10, 5).add_subplot()
    from tradepilot.portfolio.report_charts import draw_allocation

    draw_allocation(ax, few)
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "Other (8)"


def test_charts_render_the_same_from_several_threads(data: ReportInput, html: str) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        pngs = list(pool.map(lambda _: chart_png("drawdown", data), range(2)))
    assert pngs[0] == pngs[1] == _images(html)["drawdown"]  # and the page shows that chart


# ------------------------------------------------------------------ PDF and PNG


def test_pdf_has_its_pages_and_fixed_metadata(pdf: bytes) -> None:
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    pages = re.findall(rb"/Type\s*/Page\b(?!s)", pdf)
    assert len(pages) == len(PDF_PAGES) == 4
    assert b"/CreationDate (D:20181110063000Z)" in pdf
    assert b"/Producer (TradePilot)" in pdf and b"matplotlib" not in pdf.lower()


def test_pdf_is_deterministic(pdf: bytes) -> None:
    assert render_pdf(_input()) == pdf


def test_png_dashboard_decodes(data: ReportInput) -> None:
    png, media_type = render(data, "png")
    assert media_type == "image/png"
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        assert image.format == "PNG" and image.size == (1600, 1000)
        colours = image.convert("RGB").reduce(4).getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 100  # four charts, not a blank page
