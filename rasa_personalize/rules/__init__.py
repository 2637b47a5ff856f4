"""Decision rules: a YAML file of ordered rules that choose the offer and steer recommendations.

The rule file (``personalization.yml`` in the demo)::

    version: 1                       # optional; 1 is the only version
    defaults:                        # outputs when no rule matches, and for any output
      offer_type: none               #   the deciding rule leaves out
      discount_pct: 0
      recommendation_strategy: default
    rules:
      - name: bargain hunters        # unique; shown in logs and in explanations
        description: optional text
        priority: 0                  # optional whole number; higher is tried first
        enabled: true                # optional; false keeps the rule but skips it
        when:                        # the condition, see below
          segment: price_sensitive
        then:                        # the outputs, see below
          offer_type: discount
          discount_pct: 15
          max_price: 60
          recommendation_strategy: cheapest_first

Conditions. The explicit form is ``{field: <name>, op: <operator>, value: <value>}``
(``op`` defaults to ``eq``; ``exists`` needs no value). Operators: eq, ne, in, not_in, gt,
gte, lt, lte, between (``[low, high]``, both included), contains, exists (true/false).
Combine with ``all: [...]``, ``any: [...]`` and ``not: {...}``. The compact form is
shorter and means the same:

- ``segment: loyal`` is ``eq``; ``loyalty_tier: [gold, platinum]`` is ``in``;
  ``tags: premium`` is ``contains`` (tags is a list);
- ``purchase_count: {gte: 4, lt: 10}`` gives the operators as keys (all must hold);
- several keys in one mapping must all hold: ``{segment: browser, device: mobile}``.

Field names are those of :class:`~rasa_personalize.rules.facts.Facts` (see ``FIELDS``), plus
``category_affinity.<category>``, ``intent_counts.<intent>`` and ``attributes.<name>``.
Text compares without regard to case. Unknown values (``None``) never pass a comparison; see
:mod:`rasa_personalize.rules.conditions` for each operator's exact meaning.

Outputs: ``offer_type`` (none, discount, free_shipping, exclusive_access, bundle);
``discount_pct`` (0-100, only with ``offer_type: discount``, which needs it above 0);
``max_price`` (a price cap for recommendations, ``null`` for none);
``recommendation_strategy`` (default, cheapest_first, premium, new_arrivals,
bought_together). ``offer_type: best`` lets past outcomes choose among the candidates
listed under ``offers`` (each ``{offer_type, discount_pct, value}``, the fallback first),
optionally exploring a share of customers (``explore``): see
:mod:`rasa_personalize.rules.offers`.

Semantics: rules are tried by priority (higher first), then in file order; the first
enabled rule whose condition holds decides, and later rules are never consulted. The
outputs it does not name come from ``defaults`` (not from later rules). The offer and
its discount go together: a rule naming an offer gets its own discount_pct (0 if not a
discount). See :mod:`rasa_personalize.rules.ruleset`.

API: :func:`facts_from` builds the facts; :class:`RuleBook` serves a file's current rules
(reloaded on change); :func:`evaluate` gives a :class:`Decision`; :func:`explain` says
why; :func:`check_file` lists a file's problems; :func:`load_rules`/:func:`parse_rules`
compile or raise :class:`RulesError`.
"""

from __future__ import annotations

from rasa_personalize.rules.book import RuleBook
from rasa_personalize.rules.builtin import builtin_rules
from rasa_personalize.rules.conditions import OPERATORS, AllOf, AnyOf, Compare, Condition, Not
from rasa_personalize.rules.explain import Explanation, RuleOutcome, explain
from rasa_personalize.rules.facts import (
    FIELDS,
    WEEKDAYS,
    Facts,
    FieldSpec,
    facts_from,
    with_overrides,
)
from rasa_personalize.rules.loader import check_file, load_rules, parse_rules, validate
from rasa_personalize.rules.problems import Problem, RulesError
from rasa_personalize.rules.ruleset import (
    OUTPUT_NAMES,
    RECOMMENDATION_STRATEGIES,
    Decision,
    Rule,
    RuleSet,
    evaluate,
)

__all__ = [
    "FIELDS",
    "OPERATORS",
    "OUTPUT_NAMES",
    "RECOMMENDATION_STRATEGIES",
    "WEEKDAYS",
    "AllOf",
    "AnyOf",
    "Compare",
    "Condition",
    "Decision",
    "Explanation",
    "Facts",
    "FieldSpec",
    "Not",
    "Problem",
    "Rule",
    "RuleBook",
    "RuleOutcome",
    "RuleSet",
    "RulesError",
    "builtin_rules",
    "check_file",
    "evaluate",
    "explain",
    "facts_from",
    "load_rules",
    "parse_rules",
    "validate",
    "with_overrides",
]
