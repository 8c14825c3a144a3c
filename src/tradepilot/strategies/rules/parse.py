"""Validating a rule document: every problem is reported, each with the path to it.

Errors are ``{"loc": ["entry", "all", 1, "crosses_above", 0], "msg": "..."}``, the shape of
the API's field errors, so a user sees exactly which part of the document to fix. Size limits
(nesting depth, number of conditions and indicators) keep a hostile document cheap to refuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tradepilot.strategies.rules.nodes import (
    COMPARISONS, OUTPUTS, PRICES, AllOf, AnyOf, Compare, Condition, IndicatorRef, IndicatorSpec, Not, Number, Operand,
    Price,
)

MAX_DEPTH = 12
MAX_CONDITIONS = 200
MAX_INDICATORS = 50
TOP_LEVEL = ("indicators", "entry", "exit", "sizing", "stop_loss", "take_profit", "trailing_stop")
Loc = tuple[str | int, ...]
_SPEC = TypeAdapter(IndicatorSpec)


class RuleError(ValueError):
    """A rule document that does not validate; ``errors`` lists each problem with its path."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc'])) or '(document)'}: {e['msg']}" for e in errors))


@dataclass(frozen=True, slots=True)
class RuleDocument:
    indicators: dict[str, Any]
    entry: Condition
    exit: Condition | None
    size: float
    stop_loss: float | None
    take_profit: float | None
    trailing_stop: float | None


class _Parser:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []
        self.indicators: dict[str, Any] = {}
        self.count = 0

    def fail(self, loc: Loc, msg: str) -> None:
        self.errors.append({"loc": list(loc), "msg": msg})

    def parse_indicators(self, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.fail(("indicators",), "must be an object of name → indicator")
            return
        if len(raw) > MAX_INDICATORS:
            self.fail(("indicators",), f"at most {MAX_INDICATORS} indicators")
            return
        for name, spec in raw.items():
            loc: Loc = ("indicators", name)
            if not (isinstance(name, str) and name.isidentifier() and name not in PRICES):
                self.fail(loc, "an indicator's name is letters, digits and _ (not starting with a digit) and not "
                               f"one of the prices ({', '.join(PRICES)})")
                continue
            try:
                self.indicators[name] = _SPEC.validate_python(spec)
            except ValidationError as exc:
                for e in exc.errors():
                    self.fail(loc + tuple(p for p in e["loc"] if p not in OUTPUTS_AND_TYPES), e["msg"])
                continue
            spec_ = self.indicators[name]
            if getattr(spec_, "type", "") == "macd" and spec_.fast >= spec_.slow:
                self.fail(loc + ("fast",), f"fast ({spec_.fast}) must be less than slow ({spec_.slow})")

    def operand(self, raw: Any, loc: Loc) -> Operand | None:
        if isinstance(raw, bool) or raw is None:
            self.fail(loc, "an operand is a number, a price or an indicator name")
            return None
        if isinstance(raw, int | float):
            if not math.isfinite(raw):
                self.fail(loc, "numbers must be finite")
                return None
            return Number(float(raw))
        if not isinstance(raw, str):
            self.fail(loc, "an operand is a number, a price or an indicator name")
            return None
        if raw in PRICES:
            return Price(raw)
        name, _, output = raw.partition(".")
        spec = self.indicators.get(name)
        if spec is None:
            known = ", ".join(sorted(self.indicators)) or "none declared"
            self.fail(loc, f"unknown operand {raw!r}: not a price ({', '.join(PRICES)}) nor a declared indicator "
                           f"({known})")
            return None
        outputs = OUTPUTS.get(spec.type)
        if outputs and output not in outputs:
            self.fail(loc, f"{name!r} is {spec.type}: name one of its outputs, "
                           f"{', '.join(f'{name}.{o}' for o in outputs)}")
            return None
        if not outputs and output:
            self.fail(loc, f"{name!r} ({spec.type}) has a single output: write {name!r}")
            return None
        return IndicatorRef(name, output or None)

    def condition(self, raw: Any, loc: Loc, depth: int = 0) -> Condition | None:
        self.count += 1
        if self.count > MAX_CONDITIONS:
            if self.count == MAX_CONDITIONS + 1:
                self.fail(loc, f"too many conditions (at most {MAX_CONDITIONS})")
            return None
        if depth > MAX_DEPTH:
            self.fail(loc, f"conditions nested deeper than {MAX_DEPTH}")
            return None
        keys = ("all", "any", "not", *COMPARISONS)
        if not isinstance(raw, dict) or len(raw) != 1:
            self.fail(loc, f"a condition is an object with exactly one of: {', '.join(keys)}")
            return None
        (op, arg), = raw.items()
        here = loc + (op,)
        if op in ("all", "any"):
            if not isinstance(arg, list) or not arg:
                self.fail(here, "must be a non-empty list of conditions")
                return None
            parts = [self.condition(c, here + (i,), depth + 1) for i, c in enumerate(arg)]
            if any(p is None for p in parts):
                return None
            return (AllOf if op == "all" else AnyOf)(tuple(p for p in parts if p is not None))
        if op == "not":
            inner = self.condition(arg, here, depth + 1)
            return None if inner is None else Not(inner)
        if op not in COMPARISONS:
            self.fail(here, f"unknown condition {op!r}; one of {', '.join(keys)}")
            return None
        if not isinstance(arg, list) or len(arg) != 2:
            self.fail(here, "must be a list of two operands, e.g. [\"close\", \"sma_50\"]")
            return None
        left, right = self.operand(arg[0], here + (0,)), self.operand(arg[1], here + (1,))
        if left is None or right is None:
            return None
        if isinstance(left, Number) and isinstance(right, Number):
            self.fail(here, "compares two numbers: at least one side must be a price or an indicator")
            return None
        return Compare(op, left, right)

    def fraction(self, raw: dict[str, Any], key: str, upper: float | None) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0 \
                or (upper is not None and value >= upper):
            bound = f" and below {upper:g}" if upper is not None else ""
            self.fail((key,), f"must be a number above 0{bound} (a fraction: 0.05 = 5 %)")
            return None
        return float(value)


OUTPUTS_AND_TYPES = {"sma", "ema", "wma", "rsi", "roc", "stddev", "atr", "bbands", "macd"}
"""Pydantic prefixes a discriminated union member's errors with its tag: dropped from paths."""


def parse_rules(raw: Any) -> RuleDocument:
    """Validate a rule document, raising :class:`RuleError` with every problem found."""
    p = _Parser()
    if not isinstance(raw, dict):
        raise RuleError([{"loc": [], "msg": "a rule document is a JSON object"}])
    for key in raw:
        if key not in TOP_LEVEL:
            p.fail((key,), f"unknown field; one of {', '.join(TOP_LEVEL)}")
    p.parse_indicators(raw.get("indicators"))
    entry = p.condition(raw["entry"], ("entry",)) if "entry" in raw else None
    if "entry" not in raw:
        p.fail(("entry",), "required: when to buy")
    exit_ = p.condition(raw["exit"], ("exit",)) if raw.get("exit") is not None else None
    size = 1.0
    sizing = raw.get("sizing")
    if sizing is not None:
        fraction = sizing.get("fraction") if isinstance(sizing, dict) else None
        if not isinstance(sizing, dict) or set(sizing) != {"fraction"} or isinstance(fraction, bool) \
                or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
            p.fail(("sizing",), 'must be {"fraction": f} with 0 < f ≤ 1 (the share of equity each entry spends)')
        else:
            size = float(fraction)
    stops = {key: p.fraction(raw, key, upper) for key, upper in
             (("stop_loss", 1.0), ("take_profit", None), ("trailing_stop", 1.0))}
    if exit_ is None and "exit" not in raw and not any(stops.values()) and not p.errors:
        p.fail(("exit",), "required unless a stop_loss, take_profit or trailing_stop ends the trades")
    if p.errors or entry is None:
        raise RuleError(p.errors)
    return RuleDocument(p.indicators, entry, exit_, size, stops["stop_loss"], stops["take_profit"],
                        stops["trailing_stop"])
