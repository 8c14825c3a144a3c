"""The declarative rule language for user strategies (docs/strategies.md, "Rule language").

A rule document is JSON: named indicators, an entry and an exit condition over indicators,
prices and numbers (and/or/not, comparisons, crossovers), sizing and protective exits.
``parse_rules`` validates it, reporting every problem with the path to the bad field;
``RuleStrategy`` compiles it to a vectorised signal strategy — never user code.
"""

from tradepilot.strategies.rules.parse import RuleDocument, RuleError, parse_rules
from tradepilot.strategies.rules.strategy import RuleStrategy

__all__ = ["RuleDocument", "RuleError", "RuleStrategy", "parse_rules"]
