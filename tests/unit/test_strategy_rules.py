"""The declarative rule language: what compiles, what does not, and where the error is."""

from __future__ import annotations

import numpy as np
import pytest

from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import StrategyParamsError
from tradepilot.strategies.catalog import build_strategy
from tradepilot.strategies.rules import RuleError, parse_rules

SMA_RULES = {
    "indicators": {"fast": {"type": "sma", "period": 10}, "slow": {"type": "sma", "period": 30}},
    "entry": {"crosses_above": ["fast", "slow"]},
    "exit": {"crosses_below": ["fast", "slow"]},
}


def _bars(n: int = 800, seed: int = 3) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    return Bars.from_arrays("X/USDT", np.arange(n) * 3_600_000, open_, np.maximum(open_, close) * 1.003,
                            np.minimum(open_, close) * 0.997, close, np.full(n, 50.0))


def test_a_rule_document_reproduces_the_builtin_sma_crossover() -> None:
    bars = _bars()
    rules, builtin = build_strategy("rules", SMA_RULES), build_strategy("sma_cross", {"fast": 10, "slow": 30})
    a, b = rules.signals(bars), builtin.signals(bars)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a.entries, b.entries)
    np.testing.assert_array_equal(a.exits, b.exits)
    assert run_backtest(rules, bars).final_equity == run_backtest(builtin, bars).final_equity


def test_and_or_not_thresholds_multi_output_indicators_sizing_and_stops() -> None:
    doc = {
        "indicators": {"rsi": {"type": "rsi", "period": 14}, "bb": {"type": "bbands", "period": 20},
                       "m": {"type": "macd"}, "atr": {"type": "atr", "period": 14}},
        "entry": {"all": [{"lt": ["rsi", 45]}, {"any": [{"lte": ["close", "bb.lower"]},
                                                        {"crosses_above": ["m.macd", "m.signal"]}]},
                          {"not": {"gt": ["atr", 1000]}}]},
        "exit": {"gte": ["close", "bb.upper"]},
        "sizing": {"fraction": 0.5}, "stop_loss": 0.03, "take_profit": 0.06, "trailing_stop": 0.04,
    }
    bars = _bars()
    strategy = build_strategy("rules", doc)
    signals = strategy.signals(bars)  # type: ignore[attr-defined]
    import talib
    rsi, (upper, _, lower), (macd, sig, _) = talib.RSI(bars.close, 14), talib.BBANDS(bars.close, 20), talib.MACD(bars.close)
    with np.errstate(invalid="ignore"):
        cross = np.r_[False, (macd[:-1] < sig[:-1]) & (macd[1:] > sig[1:])]
        expected = (rsi < 45) & ((bars.close <= lower) | cross)
    np.testing.assert_array_equal(signals.entries, expected)
    assert signals.entries.any()
    assert (signals.size, signals.stop_loss, signals.take_profit, signals.trailing_stop) == (0.5, 0.03, 0.06, 0.04)
    result = run_backtest(strategy, bars, BacktestConfig())
    assert {t.exit_reason for t in result.closed_trades} & {"stop_loss", "take_profit", "trailing_stop"}


@pytest.mark.parametrize(("doc", "loc", "message"), [
    ({"exit": {"gt": ["close", 1]}}, ["entry"], "required"),
    ({**SMA_RULES, "entry": {"crosses_above": ["fsat", "slow"]}}, ["entry", "crosses_above", 0], "unknown operand 'fsat'"),
    ({**SMA_RULES, "entry": {"all": [{"gt": ["close", 1]}, {"between": [1, 2]}]}}, ["entry", "all", 1, "between"],
     "unknown condition"),
    ({**SMA_RULES, "entry": {"all": []}}, ["entry", "all"], "non-empty"),
    ({**SMA_RULES, "entry": {"gt": ["close"]}}, ["entry", "gt"], "two operands"),
    ({**SMA_RULES, "entry": {"gt": [1, 2]}}, ["entry", "gt"], "two numbers"),
    ({**SMA_RULES, "entry": {"gt": ["close", 1], "lt": ["close", 2]}}, ["entry"], "exactly one"),
    ({**SMA_RULES, "exit": {"not": {"gt": ["close", True]}}}, ["exit", "not", "gt", 1], "operand"),
    ({**SMA_RULES, "indicators": {"fast": {"type": "sma", "period": 0}, "slow": {"type": "sma", "period": 30}}},
     ["indicators", "fast", "period"], "greater than or equal to 1"),
    ({**SMA_RULES, "indicators": {**SMA_RULES["indicators"], "x": {"type": "vwap"}}}, ["indicators", "x"], "tag"),
    ({**SMA_RULES, "indicators": {"close": {"type": "sma", "period": 3}}}, ["indicators", "close"], "not one of the prices"),
    ({"indicators": {"bb": {"type": "bbands"}}, "entry": {"gt": ["close", "bb"]}, "stop_loss": 0.1},
     ["entry", "gt", 1], "bb.upper"),
    ({"indicators": {"m": {"type": "macd", "fast": 30, "slow": 10}}, "entry": {"gt": ["m.macd", 0]}, "stop_loss": 0.1},
     ["indicators", "m", "fast"], "less than slow"),
    ({**SMA_RULES, "stop_loss": 1.5}, ["stop_loss"], "below 1"),
    ({**SMA_RULES, "sizing": {"fraction": 2}}, ["sizing"], "fraction"),
    ({**SMA_RULES, "leverage": 5}, ["leverage"], "unknown field"),
    ({"entry": {"gt": ["close", 1]}}, ["exit"], "required unless"),
])
def test_invalid_documents_name_the_bad_field(doc: dict, loc: list, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(RuleError) as caught:
        parse_rules(doc)
    assert any(e["loc"] == loc and message in e["msg"] for e in caught.value.errors), caught.value.errors
    with pytest.raises(StrategyParamsError):
        build_strategy("rules", doc)


def test_every_problem_is_reported_at_once() -> None:
    doc = {"indicators": {"fast": {"type": "ema", "period": -1}}, "entry": {"gt": ["nope", 1]}, "stop_loss": 0}
    with pytest.raises(RuleError) as caught:
        parse_rules(doc)
    assert [e["loc"] for e in caught.value.errors] == [["indicators", "fast", "period"], ["entry", "gt", 0],
                                                       ["stop_loss"]]


def test_hostile_documents_are_refused_cheaply() -> None:
    deep: dict = {"gt": ["close", 1]}  # type: ignore[type-arg]
    for _ in range(50):
        deep = {"not": deep}
    with pytest.raises(RuleError, match="nested deeper"):
        parse_rules({"entry": deep, "stop_loss": 0.1})
    wide = {"any": [{"gt": ["close", i]} for i in range(500)]}
    with pytest.raises(RuleError, match="too many conditions"):
        parse_rules({"entry": wide, "stop_loss": 0.1})
