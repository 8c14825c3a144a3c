"""The report's four charts, drawn with matplotlib's object-oriented API.

User text (account labels, asset names, currencies) is drawn with ``parse_math=False``:
a ``$`` in a label is a dollar sign, never the start of a formula.

Rendering runs in worker threads of the API process (the caller hands it to a thread), so
nothing here touches pyplot's global state or ``rcParams``: each chart is its own
``Figure`` with its own Agg canvas, styled through arguments only. The Agg backend is set
explicitly: no GUI, no display, and the fonts are the DejaVu family matplotlib ships (no
font is ever downloaded). Each ``draw_*`` function draws one chart onto an ``Axes``, so
the same drawing fills the HTML's images, the PDF's pages and the PNG dashboard.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib: never a GUI backend

import matplotlib.dates as mdates
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tradepilot.portfolio.metrics import MONTHS, MonthlyReturns
from tradepilot.portfolio.report_input import AllocationSlice, ReportInput
from tradepilot.portfolio.report_tables import format_percent

__all__ = [
    "CHARTS",
    "PNG_DPI",
    "Chart",
    "allocation_height",
    "chart_figure",
    "chart_png",
    "dashboard_figure",
    "draw_allocation",
    "draw_equity",
    "draw_monthly_heatmap",
    "draw_underwater",
    "new_figure",
    "png_bytes",
]

PNG_DPI = 100
LINE = "#1f4e79"
INVESTED = "#7f7f7f"
GAIN = "#2e7d32"
LOSS = "#c62828"
HEATMAP_CMAP = colormaps["RdYlGn"].with_extremes(bad="#f2f2f2")  # diverging: red < 0 < green
ALLOCATION_BARS = 12
"""Holdings shown one by one; the rest are summed into one "Other" bar."""
TITLE = {"fontsize": 11, "loc": "left", "fontweight": "bold"}


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A figure with its own Agg canvas (inches), by default laid out so labels never
    overlap (``layout=None`` for pages placed by hand)."""
    figure = Figure(figsize=(width, height), dpi=PNG_DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG; no software/version chunk, so the same input gives the same bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _date_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(True, color="#e0e0e0", linewidth=0.6)
    ax.tick_params(labelsize=8)


def draw_equity(ax: Axes, data: ReportInput) -> None:
    """The account's equity, the money paid in (when anything was deposited or withdrawn
    after the start) and a marker on each deposit (▲) and withdrawal (▼)."""
    dates, equity, flows = data.dates, data.equity, data.flows
    ax.plot(dates, equity, color=LINE, linewidth=1.4, label="Equity")
    later = flows.copy()
    later[0] = 0.0  # the first flow is part of the opening equity, not a movement
    if later.any():
        invested = equity[0] + np.cumsum(later)
        ax.step(dates, invested, where="post", color=INVESTED, linewidth=1.0,
                linestyle="--", label="Net paid in")  # fmt: skip
        for mask, marker, colour, label in (
            (later > 0, "^", GAIN, "Deposit"),
            (later < 0, "v", LOSS, "Withdrawal"),
        ):
            if mask.any():
                ax.scatter(dates[mask], equity[mask], marker=marker, s=46, color=colour,
                           zorder=3, label=label)  # fmt: skip
        ax.legend(fontsize=8, loc="best", frameon=False)
    ax.set_title(f"Equity ({data.currency})", parse_math=False, **TITLE)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    _date_axis(ax)


def draw_underwater(ax: Axes, data: ReportInput) -> None:
    """How far the time-weighted wealth index is below its running peak, in percent (the
    deposits neither hide nor create a drawdown); the deepest point is labelled."""
    dd = data.report.drawdown * 100.0
    ax.fill_between(data.dates, dd, 0.0, color=LOSS, alpha=0.3, linewidth=0)
    ax.plot(data.dates, dd, color=LOSS, linewidth=0.9)
    deepest = data.report.max_drawdown_period
    if deepest is not None:
        i = deepest.trough_index
        ax.annotate(format_percent(deepest.depth, 1), (data.dates[i], dd[i]),
                    xytext=(4, -2), textcoords="offset points", fontsize=8, color=LOSS,
                    va="top")  # fmt: skip
    low = float(np.nanmin(dd)) if np.isfinite(dd).any() else 0.0
    ax.set_ylim(min(low * 1.12, -1.0), 0.5)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f} %"))
    ax.set_title("Drawdown (underwater)", **TITLE)
    _date_axis(ax)


def heatmap_limit(values: np.ndarray) -> float:
    """Half-width of the colour scale in percent: symmetric around 0, so 0 is the neutral
    colour, gains green and losses red; 1 % when there is nothing to scale."""
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


def draw_monthly_heatmap(ax: Axes, monthly: MonthlyReturns) -> None:
    """Years down, months across, each cell coloured and labelled with its return in
    percent (one decimal); months outside the series stay blank."""
    percent = monthly.values * 100.0
    limit = heatmap_limit(percent)
    ax.imshow(np.ma.masked_invalid(percent), cmap=HEATMAP_CMAP, aspect="auto",
              norm=Normalize(vmin=-limit, vmax=limit), interpolation="nearest")  # fmt: skip
    for (row, col), value in np.ndenumerate(monthly.values):
        if math.isfinite(value):
            strong = abs(value * 100.0) > 0.65 * limit
            ax.text(col, row, format_percent(value, 1), ha="center", va="center", fontsize=7,
                    color="white" if strong else "#202020")  # fmt: skip
    ax.set_xticks(range(12), MONTHS, fontsize=8)
    ax.set_yticks(range(len(monthly.years)), [str(y) for y in monthly.years], fontsize=8)
    ax.tick_params(length=0)
    ax.set_title("Monthly returns (time-weighted)", **TITLE)
    for side in ax.spines.values():
        side.set_visible(False)


def _bars(slices: tuple[AllocationSlice, ...]) -> list[tuple[str, float, float]]:
    shown = [(s.asset, s.weight, s.value) for s in slices[:ALLOCATION_BARS]]
    rest = slices[ALLOCATION_BARS:]
    if rest:
        shown.append((f"Other ({len(rest)})", sum(s.weight for s in rest),
                      sum(s.value for s in rest)))  # fmt: skip
    return shown


def draw_allocation(ax: Axes, data: ReportInput) -> None:
    """Each holding's weight as a horizontal bar, largest on top, labelled with weight and
    value."""
    ax.set_title("Allocation", **TITLE)
    bars = _bars(data.allocation)
    if not bars:
        ax.text(0.5, 0.5, "No holdings", ha="center", va="center", fontsize=10,
                color=INVESTED, transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
        return
    names = [name for name, _, _ in bars]
    weights = np.array([weight * 100.0 for _, weight, _ in bars])
    rows = np.arange(len(bars))
    ax.barh(rows, weights, color=LINE, height=0.6)
    for row, (_, weight, value) in zip(rows, bars, strict=True):
        ax.text(weights[row], row, f"  {format_percent(weight, 1)} · {value:,.2f} {data.currency}",
                va="center", fontsize=8, parse_math=False)  # fmt: skip
    ax.set_yticks(rows, names, fontsize=8, parse_math=False)
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(np.nanmax(weights)), 1.0) * 1.6)  # room for the labels
    ax.xaxis.set_visible(False)  # each bar carries its weight
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)


Chart = Callable[[Axes, ReportInput], None]


def _heatmap(ax: Axes, data: ReportInput) -> None:
    draw_monthly_heatmap(ax, data.monthly)


def _heatmap_height(data: ReportInput) -> float:
    return 1.3 + 0.42 * max(len(data.monthly.years), 1)


def allocation_height(data: ReportInput) -> float:
    """Inches for the allocation chart: a bar is a third of an inch."""
    return 1.2 + 0.32 * max(len(_bars(data.allocation)), 2)


CHARTS: dict[str, tuple[str, Chart, Callable[[ReportInput], float]]] = {
    "equity": ("Equity curve with deposits and withdrawals", draw_equity, lambda _: 3.6),
    "drawdown": ("Underwater drawdown chart", draw_underwater, lambda _: 2.8),
    "monthly": ("Monthly returns heat map", _heatmap, _heatmap_height),
    "allocation": ("Allocation by asset", draw_allocation, allocation_height),
}
"""name -> (alt text, how to draw it, its height in inches for a given report)."""
CHART_WIDTH = 10.0


def chart_figure(name: str, data: ReportInput, width: float = CHART_WIDTH) -> Figure:
    """One chart on its own figure."""
    _, draw, height = CHARTS[name]
    figure = new_figure(width, height(data))
    draw(figure.add_subplot(), data)
    return figure


def chart_png(name: str, data: ReportInput) -> bytes:
    return png_bytes(chart_figure(name, data))


def dashboard_figure(data: ReportInput) -> Figure:
    """The four charts on one page (2 × 2), titled with the report and the account."""
    figure = new_figure(16.0, 10.0)
    grid = figure.add_gridspec(2, 2)
    for (_, draw, _), cell in zip(CHARTS.values(), (grid[0, 0], grid[1, 0], grid[0, 1],
                                                     grid[1, 1]), strict=True):  # fmt: skip
        draw(figure.add_subplot(cell), data)
    figure.suptitle(f"{data.title} — {data.account_label} — {data.period_label}",
                    fontsize=13, fontweight="bold", parse_math=False)  # fmt: skip
    return figure
