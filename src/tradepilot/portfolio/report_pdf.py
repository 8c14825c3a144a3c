"""The performance report as a multi-page A4 PDF, made by matplotlib's own PDF backend.

Pages, in order (:data:`PDF_PAGES`): a cover with the metrics and the method as text, the
equity curve above the underwater chart, the monthly heat map above the top drawdowns, and
the allocation. The metadata is fixed (creator, producer, the report's ``generated_at`` as
the creation date), so the same report gives the same bytes: an e-mailed PDF can be
compared or cached by hash.
"""

from __future__ import annotations

import io

from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.table import Table

from tradepilot.portfolio.report_charts import (
    allocation_height,
    draw_allocation,
    draw_equity,
    draw_monthly_heatmap,
    draw_underwater,
    new_figure,
)
from tradepilot.portfolio.report_input import ReportInput
from tradepilot.portfolio.report_tables import (
    DRAWDOWN_HEADER,
    convention_rows,
    drawdown_rows,
    metric_rows,
    period_covered,
)

__all__ = ["PDF_PAGES", "pdf_document"]

A4 = (8.27, 11.69)  # inches, portrait
PDF_PAGES = ("cover", "equity and drawdown", "monthly returns and top drawdowns", "allocation")
PRODUCER = "TradePilot"
MARGINS = {"left": 0.1, "right": 0.95, "top": 0.96, "bottom": 0.04, "hspace": 0.22}


def _table(ax: Axes, rows: list[tuple[str, ...]], header: tuple[str, ...] | None,
           widths: list[float], bold_rows: frozenset[int] | set[int] = frozenset()) -> Table:
    """A plain text table filling ``ax``; user text is never read as math (``$``)."""
    ax.set_axis_off()
    table = ax.table(cellText=[list(r) for r in rows] or [["—"] * len(widths)],
                     colLabels=list(header) if header else None, colWidths=widths,
                     cellLoc="left", bbox=(0.0, 0.0, 1.0, 1.0), edges="horizontal")  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    offset = 1 if header else 0
    for (row, _), cell in table.get_celld().items():
        cell.get_text().set_parse_math(False)
        cell.set_edgecolor("#dddddd")
        if (header and row == 0) or (row - offset) in bold_rows:
            cell.get_text().set_fontweight("bold")
    return table


def _cover(data: ReportInput) -> Figure:
    figure = new_figure(*A4, layout=None)
    lines = (
        (data.title, 17, "bold"),
        (f"Account: {data.account_label}", 10, "normal"),
        (f"Period: {data.period_label} ({period_covered(data)})", 10, "normal"),
        (f"Currency: {data.currency}    Generated: {data.generated_at:%Y-%m-%d %H:%M} UTC",
         10, "normal"),
    )  # fmt: skip
    y = 0.955
    for text, size, weight in lines:
        figure.text(0.06, y, text, fontsize=size, fontweight=weight, parse_math=False)
        y -= 0.03 if size > 10 else 0.02

    rows: list[tuple[str, ...]] = []
    sections: set[int] = set()
    section = None
    for row in metric_rows(data):
        if row.section != section:
            section = row.section
            sections.add(len(rows))
            rows.append((section, ""))
        rows.append((row.label, row.text))
    height = min(0.84, 0.0165 * (len(rows) + 1))
    metrics_ax = figure.add_axes((0.06, 0.87 - height, 0.5, height))
    _table(metrics_ax, rows, ("Metric", "Value"), [0.65, 0.35], sections)

    conventions = convention_rows(data.report)
    height = 0.0165 * (len(conventions) + 1)
    method_ax = figure.add_axes((0.6, 0.87 - height, 0.34, height))
    _table(method_ax, conventions, ("Convention", "Value"), [0.55, 0.45])
    figure.text(0.6, 0.85 - height, "Definitions of every figure: docs/metrics.md\n"
                "and the HTML report. “—”: undefined for this history.",
                fontsize=7, color="#555555", va="top")  # fmt: skip
    return figure


def _page() -> Figure:
    """A chart page. Margins are fixed rather than computed: A4 always has room for the
    tick labels, and a computed (constrained) layout would double the time to draw it."""
    figure = new_figure(*A4, layout=None)
    figure.subplots_adjust(**MARGINS)
    return figure


def _equity_page(data: ReportInput) -> Figure:
    figure = _page()
    top, bottom = figure.subplots(2, 1, height_ratios=(3, 2))
    draw_equity(top, data)
    draw_underwater(bottom, data)
    return figure


def _panels(figure: Figure, heights: list[float]) -> list[Axes]:
    """Panels of the given heights (inches) from the top of the page; a blank spacer takes
    what is left, so a short table keeps its natural row height instead of stretching."""
    spare = max(A4[1] * (MARGINS["top"] - MARGINS["bottom"]) - 0.6 - sum(heights), 0.1)
    *panels, spacer = figure.subplots(len(heights) + 1, 1, height_ratios=[*heights, spare])
    spacer.set_axis_off()
    return list(panels)


def _monthly_page(data: ReportInput) -> Figure:
    figure = _page()
    drawdowns = drawdown_rows(data.report)
    heat_height = min(1.2 + 0.5 * max(len(data.monthly.years), 1), 6.5)
    heat, table = _panels(figure, [heat_height, 0.6 + 0.26 * (len(drawdowns) + 1)])
    draw_monthly_heatmap(heat, data.monthly)
    table.set_title("Top drawdowns", fontsize=11, loc="left", fontweight="bold")
    _table(table, drawdowns, DRAWDOWN_HEADER, [0.05, 0.16, 0.16, 0.16, 0.13, 0.17, 0.17])
    return figure


def _allocation_page(data: ReportInput) -> Figure:
    figure = _page()
    (chart,) = _panels(figure, [min(allocation_height(data), 8.0)])
    draw_allocation(chart, data)
    return figure


def pdf_document(data: ReportInput) -> bytes:
    """The report's pages (:data:`PDF_PAGES`) as one PDF; CPU-bound, run it in a thread."""
    buffer = io.BytesIO()
    metadata = {
        "Title": f"{data.title} — {data.account_label}",
        "Creator": PRODUCER,
        "Producer": PRODUCER,
        "CreationDate": data.generated_at,
    }
    with PdfPages(buffer, metadata=metadata) as pdf:
        for page in (_cover, _equity_page, _monthly_page, _allocation_page):
            pdf.savefig(page(data))
    return buffer.getvalue()
