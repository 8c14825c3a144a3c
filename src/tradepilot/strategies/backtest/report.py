"""A backtest's report: PNG charts and one self-contained HTML page.

The pictures follow ``portfolio/report_charts.py``'s conventions (Agg canvas, one
object-oriented ``Figure`` per chart, no pyplot state, text drawn with ``parse_math=False``),
so they render safely in worker threads. The HTML embeds them as ``data:`` URIs behind a
Content-Security-Policy that loads nothing else, and autoescapes every text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from jinja2 import Environment, StrictUndefined
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from tradepilot.portfolio.metrics import drawdown_series, simple_returns
from tradepilot.portfolio.report_charts import GAIN, INVESTED, LINE, LOSS, TITLE, _date_axis, new_figure, png_bytes
from tradepilot.portfolio.report_html import png_data_uri
from tradepilot.strategies.backtest.result import BacktestResult

MAX_MARKERS = 2_000  # trades drawn on the price chart; beyond, the latest ones
MAX_POINTS = 20_000  # points per line; a million-bar curve is thinned evenly for drawing


def _thin(n: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_POINTS else np.unique(np.linspace(0, n - 1, MAX_POINTS).astype(np.int64))


def _dates(result: BacktestResult) -> np.ndarray:
    return result.time.astype("datetime64[ms]")


def draw_equity(ax: Axes, result: BacktestResult) -> None:
    """The strategy's equity against buy-and-hold of the same cash."""
    keep, dates = _thin(len(result.time)), _dates(result)
    ax.plot(dates[keep], result.equity[keep], color=LINE, linewidth=1.3, label="Strategy")
    ax.plot(dates[keep], result.benchmark[keep], color=INVESTED, linewidth=1.0, linestyle="--", label="Buy and hold")
    ax.legend(fontsize=8, loc="best", frameon=False)
    ax.set_title("Equity", **TITLE)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    _date_axis(ax)


def draw_drawdown(ax: Axes, result: BacktestResult) -> None:
    keep, dates = _thin(len(result.time)), _dates(result)
    dd = drawdown_series(simple_returns(result.equity)) * 100.0
    ax.fill_between(dates[keep], dd[keep], 0.0, color=LOSS, alpha=0.3, linewidth=0)
    ax.plot(dates[keep], dd[keep], color=LOSS, linewidth=0.8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f} %"))
    ax.set_title("Drawdown", **TITLE)
    _date_axis(ax)


def draw_trades(ax: Axes, result: BacktestResult, symbol: str) -> None:
    """The symbol's close with every buy (▲) and sell (▼) at its fill price."""
    bars = next(b for b in result.bars if b.symbol == symbol)
    keep, dates = _thin(len(bars)), _dates(result)
    ax.plot(dates[keep], bars.close[keep], color=LINE, linewidth=0.9, label=symbol)
    fills = result.fills
    mine = np.flatnonzero(fills.symbol == symbol)[-MAX_MARKERS:]
    for side, marker, colour, label in ((1, "^", GAIN, "Buy"), (-1, "v", LOSS, "Sell")):
        pick = mine[fills.side[mine] == side]
        if pick.size:
            ax.scatter(dates[fills.index[pick]], fills.price[pick], marker=marker, s=28, color=colour, zorder=3,
                       label=label)
    ax.legend(fontsize=8, loc="best", frameon=False)
    ax.set_title(f"Trades on {symbol}", parse_math=False, **TITLE)
    _date_axis(ax)


def charts(result: BacktestResult) -> dict[str, bytes]:
    """``equity.png`` (equity and drawdown) and ``trades-<symbol>.png`` per symbol."""
    figure = new_figure(10.0, 5.6)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    draw_equity(top, result)
    draw_drawdown(bottom, result)
    out = {"equity.png": png_bytes(figure)}
    for symbol in result.symbols:
        figure = new_figure(10.0, 3.6)
        draw_trades(figure.add_subplot(), result, symbol)
        out[f"trades-{symbol.replace('/', '-')}.png"] = png_bytes(figure)
    return out


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>Backtest — {{ s.strategy }} — {{ s.symbols | join(", ") }}</title>
<style>body{font-family:"DejaVu Sans",Arial,sans-serif;color:#202020;margin:0;background:#fafafa}
main{max-width:1040px;margin:0 auto;padding:24px;background:#fff}img{max-width:100%;display:block;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:.88em}th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.neg{color:#c62828}.pos{color:#2e7d32}</style></head>
<body><main>
<h1>Backtest: {{ s.strategy }}</h1>
<p>{{ s.symbols | join(", ") }} · {{ s.timeframe or "" }} · {{ s.start }} → {{ s.end }} · {{ s.bars }} bars · path: {{ s.path }}</p>
<p>Parameters: <code>{{ params }}</code></p>
{% for name, uri in images %}<img src="{{ uri }}" alt="{{ name }}">{% endfor %}
<h2>Results</h2>
<table><thead><tr><th>Figure</th><th class="num">Strategy</th><th class="num">Buy and hold</th></tr></thead><tbody>
{% for label, mine, bench in rows %}<tr><td>{{ label }}</td><td class="num">{{ mine }}</td><td class="num">{{ bench }}</td></tr>
{% endfor %}</tbody></table>
<h2>Conventions</h2>
<p>Signals are decided on a bar's close and filled at the next bar's open ± slippage ({{ s.slippage }});
fees maker {{ s.fees_rates.maker }}, taker {{ s.fees_rates.taker }}; stops and limits fill inside a bar when its
high/low reach them, a stop-loss before a take-profit when both are inside one bar; volume cap: {{ s.volume_cap }}.
Metrics from portfolio.metrics ({{ "%g" | format(s.annualization) }} periods a year, simple returns).</p>
<h2>Trades ({{ trades | length }}{% if more %} of {{ more }}{% endif %})</h2>
<table><thead><tr><th>Symbol</th><th>Entry</th><th class="num">Price</th><th>Exit</th><th class="num">Price</th>
<th class="num">Quantity</th><th class="num">P&amp;L</th><th class="num">Return</th><th>Reason</th></tr></thead><tbody>
{% for t in trades %}<tr><td>{{ t.symbol }}</td><td>{{ t.entry_time }}</td><td class="num">{{ "%.6g" | format(t.entry_price) }}</td>
<td>{{ t.exit_time or "open" }}</td><td class="num">{{ "%.6g" | format(t.exit_price) if t.exit_price is not none else "—" }}</td>
<td class="num">{{ "%.6g" | format(t.quantity) }}</td><td class="num {{ 'neg' if t.pnl < 0 else 'pos' }}">{{ "%.2f" | format(t.pnl) }}</td>
<td class="num">{{ "%.2f %%" | format(t["return"] * 100) }}</td><td>{{ t.exit_reason }}</td></tr>
{% endfor %}</tbody></table>
</main></body></html>
"""
_PAGE = Environment(autoescape=True, undefined=StrictUndefined).from_string(_TEMPLATE)
MAX_TRADE_ROWS = 500


def _fmt(value: object, percent: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value * 100:.2f} %" if percent else f"{value:,.2f}"
    return str(value)


def html_page(result: BacktestResult, images: dict[str, bytes] | None = None) -> str:
    s = result.summary()
    images = images if images is not None else charts(result)
    b = s["buy_and_hold"]
    rows = [("Final equity", _fmt(s["final_equity"]), _fmt(b["final_equity"])),
            ("Total return", _fmt(s["total_return"], True), _fmt(b["total_return"], True)),
            ("CAGR", _fmt(s["cagr"], True), "—"),
            ("Sharpe", _fmt(s["sharpe"]), _fmt(b["sharpe"])),
            ("Sortino", _fmt(s["sortino"]), "—"),
            ("Max drawdown", _fmt(s["max_drawdown"], True), _fmt(b["max_drawdown"], True)),
            ("Trades", str(s["trades"]), "—"),
            ("Win rate", _fmt(s["win_rate"], True), "—"),
            ("Profit factor", _fmt(s["profit_factor"]), "—"),
            ("Fees paid", _fmt(s["fees"]), "—"),
            ("Time in market", _fmt(s["time_in_market"], True), "100.00 %")]
    trades = result.trade_rows()
    return _PAGE.render(s=s, params=json.dumps(s["params"], sort_keys=True), rows=rows,
                        images=[(name, png_data_uri(png)) for name, png in images.items()],
                        trades=trades[-MAX_TRADE_ROWS:], more=len(trades) if len(trades) > MAX_TRADE_ROWS else 0)


def write_report(result: BacktestResult, folder: Path) -> list[Path]:
    """``report.html``, the PNGs, ``summary.json``, ``trades.json`` and ``equity.csv`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = charts(result)
    written = []
    for name, png in images.items():
        (folder / name).write_bytes(png)
        written.append(folder / name)
    (folder / "report.html").write_text(html_page(result, images), encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps(result.summary(), indent=2), encoding="utf-8")
    (folder / "trades.json").write_text(json.dumps(result.trade_rows(), indent=1), encoding="utf-8")
    with (folder / "equity.csv").open("w", encoding="utf-8") as fh:
        fh.write("time,equity,buy_and_hold\n")
        for t, e, bh in zip(result.time.tolist(), result.equity.tolist(), result.benchmark.tolist(), strict=True):
            fh.write(f"{t},{e!r},{bh!r}\n")
    written += [folder / n for n in ("report.html", "summary.json", "trades.json", "equity.csv")]
    return written
