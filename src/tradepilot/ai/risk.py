"""Risk of a set of holdings, from the shared metrics (``portfolio.metrics``), in one answer.

Historical simulation: today's weights applied to each past day's returns of the assets give
the returns the portfolio *as it is now* would have had. From them: one-day VaR and CVaR
(historical and normal), annualised volatility, the drawdowns that path went through;
from the weights: concentration (Herfindahl, effective number of holdings, largest weight);
from the assets' returns: their correlation matrix and the mean pairwise correlation (how
much diversification there really is). Floats: these are statistics, not money.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tradepilot.portfolio import metrics

DAYS_PER_YEAR = 365.0  # crypto trades every day (as the portfolio optimiser's conventions)


def _r(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def assess_risk(closes: np.ndarray, symbols: list[str], weights: dict[str, float],
                level: float = 0.95) -> dict[str, Any]:
    """``closes``: (days, symbols) daily closes, oldest first; ``weights``: symbol → weight of
    the invested value (normalised here; cash carries no price risk and is left out)."""
    w = np.array([max(float(weights.get(s, 0.0)), 0.0) for s in symbols])
    if w.sum() <= 0:
        raise ValueError("no holding with a positive weight")
    w = w / w.sum()
    asset_returns = closes[1:] / closes[:-1] - 1.0
    portfolio = asset_returns @ w
    dd = metrics.drawdown_series(portfolio)
    corr = np.corrcoef(asset_returns.T) if len(symbols) > 1 else np.ones((1, 1))
    pairs = [corr[i, j] for i in range(len(symbols)) for j in range(i + 1, len(symbols))]
    return {
        "level": level,
        "observations": int(portfolio.size),
        "weights": {s: round(float(x), 6) for s, x in zip(symbols, w)},
        "value_at_risk": {"historical": _r(metrics.value_at_risk(portfolio, level, "historical")),
                          "parametric": _r(metrics.value_at_risk(portfolio, level, "parametric"))},
        "conditional_value_at_risk": {
            "historical": _r(metrics.conditional_value_at_risk(portfolio, level, "historical")),
            "parametric": _r(metrics.conditional_value_at_risk(portfolio, level, "parametric"))},
        "volatility": _r(metrics.volatility(portfolio, DAYS_PER_YEAR)),
        "concentration": {"herfindahl": _r(metrics.herfindahl(w)),
                          "effective_holdings": _r(metrics.effective_holdings(w)),
                          "largest_weight": _r(float(w.max())), "largest": symbols[int(np.argmax(w))]},
        "correlation": {"matrix": {a: {b: _r(float(corr[i, j])) for j, b in enumerate(symbols)}
                                   for i, a in enumerate(symbols)},
                        "mean_pairwise": _r(float(np.mean(pairs))) if pairs else None},
        "drawdown": {"max": _r(metrics.max_drawdown(portfolio)), "current": _r(float(dd[-1])) if dd.size else None,
                     "worst_day": _r(float(portfolio.min()))},
        "conventions": {"returns": "simple daily, from closed daily bars", "method": "historical simulation with "
                        "today's weights", "var": "one-day loss as a positive fraction of the invested value",
                        "annualization": DAYS_PER_YEAR},
    }
