"""``RuleStrategy``: a parsed rule document evaluated as vectorised signals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import ConfigDict

from tradepilot.strategies import indicators as ta
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import SignalStrategy, Signals, StrategyParams, StrategyParamsError
from tradepilot.strategies.rules.nodes import AllOf, AnyOf, Compare, Condition, IndicatorRef, Not, Number, Operand
from tradepilot.strategies.rules.parse import RuleDocument, RuleError, parse_rules
from tradepilot.strategies.rules.schema import RULES_JSON_SCHEMA


class RuleParams(StrategyParams):
    """The rule document itself (validated by ``parse_rules``, not by pydantic)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return RULES_JSON_SCHEMA


def _indicator(spec: Any, bars: Bars) -> dict[str | None, np.ndarray]:
    kind = spec.type
    if kind == "atr":
        return {None: ta.atr(bars.high, bars.low, bars.close, spec.period)}
    if kind == "macd":
        line, signal, hist = ta.macd(bars.close, spec.fast, spec.slow, spec.signal)
        return {"macd": line, "signal": signal, "hist": hist}
    source = bars.field(spec.source)
    if kind == "bbands":
        upper, middle, lower = ta.bbands(source, spec.period, spec.deviations)
        return {"upper": upper, "middle": middle, "lower": lower}
    return {None: getattr(ta, kind)(source, spec.period)}


class RuleStrategy(SignalStrategy):
    """A user's rule document as a signal strategy (the same fills as any built-in)."""

    name = "rules"
    title = "Rules (declarative)"
    description = "Your own entry and exit rules over indicators and prices, with sizing and protective exits."
    Params: ClassVar[type[StrategyParams]] = RuleParams

    def __init__(self, params: StrategyParams | Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.document: RuleDocument = parse_rules(self.params.model_dump())

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any]) -> StrategyParams:
        try:
            parse_rules(dict(raw))
        except RuleError as exc:
            raise StrategyParamsError(cls.name, exc.errors) from None
        return RuleParams.model_validate(dict(raw))

    def signals(self, bars: Bars) -> Signals:
        doc = self.document
        values = {name: _indicator(spec, bars) for name, spec in doc.indicators.items()}

        def operand(x: Operand) -> np.ndarray | float:
            if isinstance(x, Number):
                return x.value
            if isinstance(x, IndicatorRef):
                return values[x.name][x.output]
            return bars.field(x.field)

        def evaluate(c: Condition) -> np.ndarray:
            if isinstance(c, AllOf):
                return np.logical_and.reduce([evaluate(p) for p in c.conditions])
            if isinstance(c, AnyOf):
                return np.logical_or.reduce([evaluate(p) for p in c.conditions])
            if isinstance(c, Not):
                return ~evaluate(c.condition)
            assert isinstance(c, Compare)
            a, b = operand(c.left), operand(c.right)
            with np.errstate(invalid="ignore"):
                if c.op == "crosses_above":
                    return ta.crossed_above(a, b)
                if c.op == "crosses_below":
                    return ta.crossed_below(a, b)
                result = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}[c.op](a, b)
            return np.broadcast_to(result, bars.close.shape).copy()

        entries = evaluate(doc.entry)
        exits = evaluate(doc.exit) if doc.exit is not None else np.zeros(len(bars), dtype=bool)
        return Signals(entries, exits, doc.size, doc.stop_loss, doc.take_profit, doc.trailing_stop)
