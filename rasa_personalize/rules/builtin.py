"""The rules used when there is no rule file: one offer per segment, as before YAML rules.

Cautious by design: nobody unknown or new gets a discount. Written in the rule language
itself, so the built-in rules go through the same checks and evaluator as a file.
"""

from __future__ import annotations

import functools
from typing import Final

from rasa_personalize.rules.loader import parse_rules
from rasa_personalize.rules.ruleset import RuleSet

BUILTIN_SOURCE: Final = "<built-in rules>"

BUILTIN_RULES_YAML: Final = """\
version: 1
defaults: {offer_type: none, discount_pct: 0, recommendation_strategy: default}
rules:
  - {name: price sensitive, when: {segment: price_sensitive},
     then: {offer_type: discount, discount_pct: 15}}
  - {name: at risk, when: {segment: at_risk}, then: {offer_type: discount, discount_pct: 10}}
  - {name: loyal, when: {segment: loyal}, then: {offer_type: exclusive_access}}
  - {name: frequent buyer, when: {segment: frequent_buyer}, then: {offer_type: bundle}}
  - {name: browser, when: {segment: browser}, then: {offer_type: free_shipping}}
  - {name: new visitor, when: {segment: new_visitor}, then: {offer_type: none}}
"""


@functools.cache
def builtin_rules() -> RuleSet:
    """The built-in rule set (compiled once, on first use)."""
    return parse_rules(BUILTIN_RULES_YAML, BUILTIN_SOURCE)
