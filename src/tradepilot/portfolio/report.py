"""Performance reports with pictures: one account's analytics as HTML, PDF or PNG.

Pure: no database, no network, no clock. The analytics service reads the equity history,
builds a :class:`ReportInput` (``ReportInput.from_equity`` computes the metrics), and calls
one renderer. Rendering draws charts with matplotlib and is CPU-bound (a few hundred
milliseconds), so the functions are synchronous: call them from a worker thread
(``await anyio.to_thread.run_sync(render_pdf, data)``), never on the event loop.

The pieces: ``report_input`` (the input and its checks), ``report_tables`` (every figure
as text, shared by HTML and PDF), ``report_charts`` (the four charts), ``report_html`` and
``report_pdf`` (the documents). ``docs/metrics.md`` ("Performance report") describes it.
"""

from __future__ import annotations

from typing import Literal

from tradepilot.portfolio.report_charts import dashboard_figure, png_bytes
from tradepilot.portfolio.report_html import html_page
from tradepilot.portfolio.report_input import (
    MIN_POINTS,
    AllocationSlice,
    InsufficientHistory,
    ReportInput,
)
from tradepilot.portfolio.report_pdf import PDF_PAGES, pdf_document

__all__ = [
    "MIN_POINTS",
    "PDF_PAGES",
    "AllocationSlice",
    "InsufficientHistory",
    "ReportFormat",
    "ReportInput",
    "render",
    "render_html",
    "render_pdf",
    "render_png",
]

ReportFormat = Literal["html", "pdf", "png"]
MEDIA_TYPES: dict[str, str] = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "png": "image/png"}


def render_html(data: ReportInput) -> str:
    """One self-contained HTML page: the four charts inline, the metrics with their
    definitions and conventions, the top drawdowns, the monthly returns, the allocation."""
    return html_page(data)


def render_pdf(data: ReportInput) -> bytes:
    """A multi-page A4 PDF (pages: :data:`PDF_PAGES`) with deterministic metadata."""
    return pdf_document(data)


def render_png(data: ReportInput) -> bytes:
    """One dashboard image (1600 × 1000 px) with the four charts."""
    return png_bytes(dashboard_figure(data))


def render(data: ReportInput, fmt: ReportFormat) -> tuple[bytes, str]:
    """The report in ``fmt`` (``html``, ``pdf`` or ``png``) as bytes with its media type,
    for an endpoint's ``?format=``; an unknown format is a ``ValueError``."""
    if fmt == "html":
        return render_html(data).encode("utf-8"), MEDIA_TYPES[fmt]
    if fmt == "pdf":
        return render_pdf(data), MEDIA_TYPES[fmt]
    if fmt == "png":
        return render_png(data), MEDIA_TYPES[fmt]
    raise ValueError(f"unknown report format {fmt!r}; expected one of {sorted(MEDIA_TYPES)}")
