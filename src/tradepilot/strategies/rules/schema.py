"""The rule language's JSON Schema, published in the strategy catalog for editors and UIs.

``parse_rules`` is the authority (it also checks that operands name declared indicators);
this schema describes the same shape for clients.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from tradepilot.strategies.rules.nodes import COMPARISONS, PRICES, IndicatorSpec

_OPERAND = {"description": "a number, a price (open, high, low, close, volume), an indicator name, or "
                           "name.output for bbands (upper, middle, lower) and macd (macd, signal, hist)",
            "anyOf": [{"type": "number"}, {"type": "string"}]}
_FRACTION = {"type": "number", "exclusiveMinimum": 0}

RULES_JSON_SCHEMA: dict[str, Any] = {
    "title": "Rule document",
    "type": "object",
    "additionalProperties": False,
    "required": ["entry"],
    "properties": {
        "indicators": {"type": "object", "maxProperties": 50,
                       "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "not": {"enum": list(PRICES)}},
                       "additionalProperties": {"$ref": "#/$defs/Indicator"}},
        "entry": {"$ref": "#/$defs/Condition"},
        "exit": {"$ref": "#/$defs/Condition"},
        "sizing": {"type": "object", "additionalProperties": False, "required": ["fraction"],
                   "properties": {"fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}},
        "stop_loss": {**_FRACTION, "exclusiveMaximum": 1},
        "take_profit": _FRACTION,
        "trailing_stop": {**_FRACTION, "exclusiveMaximum": 1},
    },
    "$defs": {
        "Operand": _OPERAND,
        "Condition": {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {
            "all": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Condition"}},
            "any": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Condition"}},
            "not": {"$ref": "#/$defs/Condition"},
            **{op: {"type": "array", "minItems": 2, "maxItems": 2, "items": {"$ref": "#/$defs/Operand"}}
               for op in COMPARISONS},
        }, "additionalProperties": False},
    },
}
_indicator_schema = TypeAdapter(IndicatorSpec).json_schema(ref_template="#/$defs/{model}")
RULES_JSON_SCHEMA["$defs"].update(_indicator_schema.pop("$defs", {}))
RULES_JSON_SCHEMA["$defs"]["Indicator"] = _indicator_schema
