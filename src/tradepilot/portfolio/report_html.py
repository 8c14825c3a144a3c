"""The performance report as one self-contained HTML page.

It is e-mailed and downloaded, so it must show the same anywhere, offline: the CSS is
inline, the charts are PNG ``data:`` URIs, and there is no link, font or script to fetch
(a Content-Security-Policy meta tag forbids loading anything but those images). Every
piece of text goes through Jinja2's autoescaping: an account label is the user's own text
and stays text.
"""

from __future__ import annotations

import base64

from jinja2 import Environment, StrictUndefined

from tradepilot.portfolio.report_charts import CHARTS, chart_png
from tradepilot.portfolio.report_input import ReportInput
from tradepilot.portfolio.report_tables import (
    DRAWDOWN_HEADER,
    allocation_rows,
    convention_rows,
    drawdown_rows,
    metric_rows,
    monthly_header,
    monthly_rows,
    period_covered,
)

__all__ = ["html_page", "png_data_uri"]

_TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{{ title }} — {{ account_label }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: #202020; margin: 0; background: #fafafa; }
main { max-width: 1040px; margin: 0 auto; padding: 24px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.15em; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; margin: 0 0 16px; }
.meta span { margin-right: 18px; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.88em; }
th, td { padding: 4px 8px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.section th { background: #f3f6f9; font-size: 0.95em; }
td.definition { color: #555; }
.monthly td, .monthly th { text-align: right; padding: 4px 5px; }
.pos { color: #2e7d32; } .neg { color: #c62828; }
footer { color: #777; font-size: 0.8em; margin-top: 28px; }
</style>
</head>
<body>
<main>
<header>
<h1>{{ title }}</h1>
<p class="meta"><span>Account: <strong class="account">{{ account_label }}</strong></span>
<span>Period: {{ period_label }} ({{ covered }})</span>
<span>Currency: {{ currency }}</span>
<span>Generated: {{ generated_at }}</span></p>
</header>

{% for chart in charts %}
<section class="chart" id="chart-{{ chart.name }}">
<img src="{{ chart.uri }}" alt="{{ chart.alt }}" width="{{ chart.width }}">
</section>
{% endfor %}

<h2>Metrics</h2>
<table class="metrics">
<thead><tr><th>Metric</th><th class="num">Value</th><th>Definition</th></tr></thead>
<tbody>
{% for section, rows in metric_sections %}
<tr class="section"><th colspan="3">{{ section }}</th></tr>
{% for row in rows %}
<tr data-metric="{{ row.key }}"><td>{{ row.label }}</td><td class="num">{{ row.text }}</td><td class="definition">{{ row.definition }}</td></tr>
{% endfor %}
{% endfor %}
</tbody>
</table>

<h2>Method</h2>
<p>Simple daily returns, deposits and withdrawals excluded (a flow arrives at the end of its
day and is never a return); P = {{ annualization }} periods a year; rates are annual.
Undefined figures (too little history, a zero denominator) are shown as “—”.</p>
<table class="conventions">
<tbody>
{% for name, value in conventions %}
<tr data-convention="{{ name }}"><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}
</tbody>
</table>

<h2>Top drawdowns</h2>
{% if drawdowns %}
<table class="drawdowns">
<thead><tr>{% for h in drawdown_header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in drawdowns %}
<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p>Never below a previous peak in this period.</p>
{% endif %}

<h2>Monthly returns</h2>
<table class="monthly">
<thead><tr>{% for h in monthly_header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in monthly %}
<tr data-year="{{ row[0] }}"><th>{{ row[0] }}</th>{% for cell in row[1:] %}<td class="{{ cell | sign }}">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>

<h2>Allocation</h2>
{% if allocation %}
<table class="allocation">
<thead><tr><th>Asset</th><th class="num">Value</th><th class="num">Weight</th></tr></thead>
<tbody>
{% for asset, value, weight in allocation %}
<tr><td>{{ asset }}</td><td class="num">{{ value }}</td><td class="num">{{ weight }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p>No holdings.</p>
{% endif %}

<footer>TradePilot performance report. Figures computed by portfolio.metrics; see the method above.</footer>
</main>
</body>
</html>
"""


def _sign(cell: str) -> str:
    """CSS class of a formatted return: green when positive, red when negative."""
    if cell.startswith("-"):
        return "neg"
    return "pos" if cell[:1].isdigit() and cell.strip("0. %") else ""


_ENVIRONMENT = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_ENVIRONMENT.filters["sign"] = _sign
_PAGE = _ENVIRONMENT.from_string(_TEMPLATE)  # compiled once; rendering it is thread-safe


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _sections(data: ReportInput) -> list[tuple[str, list[object]]]:
    sections: dict[str, list[object]] = {}
    for row in metric_rows(data):
        sections.setdefault(row.section, []).append(row)
    return list(sections.items())


def html_page(data: ReportInput) -> str:
    """The whole page; the four charts are rendered here (CPU-bound: run it in a thread)."""
    charts = []
    for name, (alt, _, _) in CHARTS.items():
        png = chart_png(name, data)
        charts.append({"name": name, "alt": alt, "uri": png_data_uri(png),
                       "width": int.from_bytes(png[16:20], "big")})  # fmt: skip  # IHDR width
    return _PAGE.render(
        title=data.title,
        account_label=data.account_label,
        period_label=data.period_label,
        covered=period_covered(data),
        currency=data.currency,
        generated_at=data.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        charts=charts,
        metric_sections=_sections(data),
        annualization=f"{data.report.annualization:g}",
        conventions=convention_rows(data.report),
        drawdown_header=DRAWDOWN_HEADER,
        drawdowns=drawdown_rows(data.report),
        monthly_header=monthly_header(),
        monthly=monthly_rows(data),
        allocation=allocation_rows(data),
    )
