"""``AdvancedAI``: the plan's AI use cases in one place, for code that is not an HTTP route.

Like ``portfolio.manager.PortfolioManager``: strategies, jobs, the CLI or a notebook get the
AI engine's answers from one object built on the runtime, and the routes of
``ai/advanced_router.py`` call the same methods. Every method delegates to the module that
owns the work — the direction registry, the regime classifier and the backtester
(``strategy_generation``), the strategy optimiser, the shared risk metrics (``ai/risk.py``),
the sentiment model, the pattern detectors, the portfolio manager — and adds no model of its
own. Numeric work runs in a thread so an event loop calling it stays free.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from tradepilot.ai.candlesticks import candlestick_patterns
from tradepilot.ai.chart_patterns import detect_chart_patterns
from tradepilot.ai.market_candles import bars_of
from tradepilot.ai.models_catalog import regime_model, sentiment_model
from tradepilot.ai.predictions import closed_bars, direction_forecast
from tradepilot.ai.risk import assess_risk
from tradepilot.ai.strategy_generation import GeneratedStrategy, NotEnoughBars, generate_strategy
from tradepilot.core.errors import Unprocessable
from tradepilot.identity.principal import AuthUser
from tradepilot.portfolio.manager import manager_of
from tradepilot.portfolio.optimize_service import load_closes
from tradepilot.portfolio.rebalance_service import RebalanceResult
from tradepilot.strategies.backtest import BacktestConfig
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.catalog import get_strategy
from tradepilot.strategies.optimize.evaluate import Objective, Problem
from tradepilot.strategies.optimize.run import Optimizer, OptimizeSpec
from tradepilot.strategies.optimize.space import parse_space
from tradepilot.strategies.optimize.study import Sampler, close_storage, open_storage
from tradepilot.strategies.optimize.windows import WindowError

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.runtime import Runtime



@dataclass(frozen=True, slots=True)
class MarketConditions:
    """Which market to read: the newest ``bars`` closed bars of ``symbol`` at ``timeframe``."""

    symbol: str
    timeframe: str = "1h"
    bars: int = 2000


def _texts(items: list[Any] | None) -> list[str]:
    """Texts from strings or dicts with a ``text`` (or ``title`` / ``summary``) field."""
    out = []
    for item in items or []:
        text = item if isinstance(item, str) else " ".join(
            str(item.get(k, "")) for k in ("text", "title", "summary") if item.get(k))
        if text.strip():
            out.append(text.strip())
    return out


class AdvancedAI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def market(self) -> MarketService:
        return self.runtime.services["market"]  # type: ignore[no-any-return]

    async def closed_bars(self, conditions: MarketConditions) -> Bars:
        """The newest closed bars (a bar whose period has not ended is left out); 404 for an
        unknown symbol."""
        symbol = self.market.instrument(conditions.symbol).symbol
        return bars_of(symbol, await closed_bars(self.market, symbol, conditions.timeframe, conditions.bars))

    async def _bars(self, market_conditions: MarketConditions | Bars) -> tuple[Bars, str | None]:
        if isinstance(market_conditions, Bars):
            return market_conditions, None
        return await self.closed_bars(market_conditions), market_conditions.timeframe

    # --- predictions -----------------------------------------------------------------------------

    async def predict_price_movement(self, symbol: str, timeframe: str = "1h", horizon: int = 1) -> dict[str, Any]:
        """P(up) and the return forecast of the trained direction model, with its walk-forward
        scores beside the baselines' (as ``GET /api/ai/predictions``); 503 ``model_not_ready``
        until that model is trained."""
        prediction = await direction_forecast(self.runtime, self.market, symbol, timeframe, horizon)
        return prediction.model_dump(mode="json")

    # --- strategies ------------------------------------------------------------------------------

    async def generate_trading_strategy(self, market_conditions: MarketConditions | Bars) -> GeneratedStrategy:
        """The regime → a strategy family → parameters fitted on the fit window → backtested on the
        later test window beside buy-and-hold (``strategy_generation``). 422 ``insufficient_data``
        without enough bars."""
        bars, timeframe = await self._bars(market_conditions)
        config = BacktestConfig.from_settings(self.runtime.settings)
        try:
            return await asyncio.to_thread(generate_strategy, bars, regime_model(), config, timeframe)
        except NotEnoughBars as exc:
            raise Unprocessable(f"Cannot generate a strategy for {bars.symbol}: {exc}.",
                                code="insufficient_data") from None

    async def optimize_parameters(self, market_conditions: MarketConditions | Bars, strategy: str,
                                  space: dict[str, dict[str, Any]], *, base_params: dict[str, Any] | None = None,
                                  objective: Objective = "sharpe", sampler: Sampler = "tpe", n_trials: int = 30,
                                  windows: int = 3, in_sample: float = 0.7, min_trades: int = 1,
                                  seed: int = 0) -> dict[str, Any]:
        """Walk-forward optimisation of ``strategy`` over ``space`` (the strategy optimiser's
        report: each window's best in-sample parameters judged out of sample, and the aggregate)."""
        bars, timeframe = await self._bars(market_conditions)
        spec = OptimizeSpec(sampler=sampler, n_trials=n_trials, seed=seed, objective=objective,
                            min_trades=min_trades, windows=windows, in_sample=in_sample,
                            space=parse_space(get_strategy(strategy), space))
        problem = Problem(strategy=strategy, base_params=base_params or {}, series=[bars],
                          config=BacktestConfig.from_settings(self.runtime.settings), objective=objective,
                          min_trades=min_trades, timeframe=timeframe)

        def work() -> dict[str, Any]:
            storage = open_storage(None)  # in memory: one caller's study, nothing to share
            try:
                report, _ = Optimizer(problem, spec, storage, f"ai-{uuid.uuid4().hex[:12]}", workers=1,
                                      worker_label="ai").run()
                return report
            finally:
                close_storage(storage)

        try:
            return await asyncio.to_thread(work)
        except WindowError as exc:
            raise Unprocessable(f"Too few bars to optimise on: {exc}.", code="insufficient_data") from None

    # --- risk and portfolio ----------------------------------------------------------------------

    async def holdings_weights(self, user_id: uuid.UUID, account_id: uuid.UUID | None) -> dict[str, float]:
        """Symbol (``ASSET/QUOTE``) → share of the invested value now, from the portfolio manager;
        cash and assets without a listed market are left out."""
        series = await manager_of(self.runtime).series(user_id, account_id, "1d")
        values = series.values[-1] if series.dates else {}
        listed = {i.symbol for i in self.market.instruments()}
        held = {f"{a}/{series.currency}": float(v) for a, v in values.items()
                if a != series.currency and v > 0 and f"{a}/{series.currency}" in listed}
        total = sum(held.values())
        return {s: v / total for s, v in held.items()} if total > 0 else {}

    async def risk_assessment(self, user_id: uuid.UUID, *, account_id: uuid.UUID | None = None,
                              weights: dict[str, float] | None = None, lookback_days: int = 365,
                              level: float = 0.95) -> dict[str, Any]:
        """VaR / CVaR, volatility, concentration, correlation and drawdown risk of ``weights``
        (default: the account's holdings now) over the stored daily closes (``ai/risk.py``).
        422 ``no_holdings`` when there is nothing but cash to assess."""
        if weights is None:
            weights = await self.holdings_weights(user_id, account_id)
            source = "holdings"
        else:
            weights = {self.market.instrument(s).symbol: w for s, w in weights.items()}  # 404 unknown_symbol
            source = "given"
        weights = {s: w for s, w in weights.items() if w > 0}
        if not weights:
            raise Unprocessable("Nothing to assess: no holding besides cash (or every weight is 0).",
                                code="no_holdings")
        symbols = sorted(weights)
        closes = await load_closes(self.market, self.runtime.clock, symbols, lookback_days)
        answer = await asyncio.to_thread(assess_risk, closes.closes, symbols, weights, level)
        return {**answer, "source": source, "start": closes.days[0], "end": closes.days[-1]}

    async def portfolio_rebalancing(self, principal: AuthUser, target_allocation: dict[str, Decimal], *,
                                    tolerance: Decimal = Decimal("0.01"), dry_run: bool = True,
                                    account_id: uuid.UUID | None = None) -> RebalanceResult:
        """The orders that bring the account to ``target_allocation`` (the portfolio manager's
        rebalance: planned, and placed only when ``dry_run`` is false)."""
        return await manager_of(self.runtime).rebalance_portfolio(principal, target_allocation, tolerance=tolerance,
                                                                  dry_run=dry_run, account_id=account_id)

    # --- texts and patterns ----------------------------------------------------------------------

    async def sentiment_analysis(self, news_data: list[Any] | None = None,
                                 social_data: list[Any] | None = None) -> dict[str, Any]:
        """Each text's label and score (the sentiment model), and the mean per source and over
        both; nothing is stored (``POST /api/ai/sentiment`` keeps texts)."""
        groups = {"news": _texts(news_data), "social": _texts(social_data)}
        everything = groups["news"] + groups["social"]
        readings = await asyncio.to_thread(sentiment_model().read, everything) if everything else []
        out: dict[str, Any] = {}
        at = 0
        for name, texts in groups.items():
            mine = readings[at:at + len(texts)]
            at += len(texts)
            out[name] = {"texts": len(mine), "score": round(float(np.mean([r.score for r in mine])), 4) if mine else None,
                         "items": [{"text": t, "label": r.label, "score": round(r.score, 4)} for t, r in zip(texts, mine)]}
        mean = float(np.mean([r.score for r in readings])) if readings else 0.0
        out["overall"] = {"texts": len(readings), "score": round(mean, 4),
                          "label": "bullish" if mean >= 0.1 else "bearish" if mean <= -0.1 else "neutral"}
        return out

    async def pattern_recognition(self, market_conditions: MarketConditions | Bars,
                                  candlesticks_since: int | None = None) -> dict[str, Any]:
        """TA-Lib candlestick patterns (of the last 3 bars by default) and the confirmed chart
        patterns (double tops/bottoms, head and shoulders, triangles, range breakouts)."""
        bars, _ = await self._bars(market_conditions)
        since = max(len(bars) - 3, 0) if candlesticks_since is None else candlesticks_since

        def work() -> dict[str, Any]:
            candles = candlestick_patterns(bars.open, bars.high, bars.low, bars.close, since=since)
            charts = detect_chart_patterns(bars.high, bars.low, bars.close)
            stamp = lambda i: int(bars.time[i])
            return {"symbol": bars.symbol, "bars": len(bars),
                    "candlesticks": [{"name": c.name, "time_ms": stamp(c.index), "direction": c.direction,
                                      "strength": c.strength} for c in candles],
                    "chart_patterns": [{"kind": p.kind, "direction": p.direction, "start_ms": stamp(p.start),
                                        "confirmed_ms": stamp(p.end), "level": p.level, "target": p.target,
                                        "height_sigmas": round(p.height, 3)} for p in charts]}

        return await asyncio.to_thread(work)


def advanced_ai(runtime: Runtime) -> AdvancedAI:
    found = runtime.services.get("advanced_ai")
    if found is None:
        found = runtime.services["advanced_ai"] = AdvancedAI(runtime)
    return found  # type: ignore[no-any-return]
