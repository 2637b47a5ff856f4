"""Decision-rule evaluation: microseconds per customer with 50 rules, against baselines.

Builds a realistic 50-rule file (segment rules with context refinements, plus rules on
tags, attributes, affinities and time that apply to every segment), compiles it with the
real loader, and evaluates it for 10,000 varied customers. Each evaluation is timed on
its own; the variants run in alternating rounds of the same process:

- ``dict lookup``: a plain dict of offers per segment, as the engine had before rules (the floor);
- ``1 rule``: the evaluator with a one-rule set (the evaluator's fixed cost);
- ``built-in (6)``: the rules used when there is no file;
- ``50 rules``: the realistic file (target: <= 50 us per customer);
- ``50 rules, no index``: 50 rules none of which names a segment, so every customer is
  checked against all of them (the worst case).

    python bench/rules_eval.py [--customers 10000] [--rules 50] [--rounds 3] [--seed 1]

Prints figures; never asserts timings.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from rasa_personalize.rules import Facts, RuleSet, builtin_rules, evaluate, parse_rules
from rasa_personalize.slots import CUSTOMER_SEGMENTS, LOYALTY_TIERS, TIMES_OF_DAY

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CATEGORIES = ("running", "outdoor", "electronics", "books", "home", "kitchen", "fashion")
TAGS = ("interested_in_running", "premium", "gift_buyer", "night_owl", "vip", "student")
COUNTRIES = ("Germany", "France", "Spain", "Italy", "United Kingdom", "United States")

# The offers per segment the engine used before decision rules: the cheapest possible lookup.
SEGMENT_OFFERS = {
    "new_visitor": ("none", 0),
    "browser": ("free_shipping", 0),
    "frequent_buyer": ("bundle", 0),
    "price_sensitive": ("discount", 15),
    "at_risk": ("discount", 10),
    "loyal": ("exclusive_access", 0),
}


def segment_rule(rng: random.Random, index: int, segment: str) -> str:
    """A rule for one segment with a context or profile refinement."""
    refinements = [
        "device: mobile",
        f"time_of_day: {rng.choice(TIMES_OF_DAY)}",
        f"weekday: [{rng.choice(WEEKDAYS)}, {rng.choice(WEEKDAYS)}]",
        f"loyalty_tier: [{rng.choice(LOYALTY_TIERS)}, gold]",
        f"purchase_count: {{gte: {rng.randint(2, 12)}}}",
        f"total_spent: {{between: [{rng.randint(0, 200)}, {rng.randint(300, 2000)}]}}",
        f"tags: {rng.choice(TAGS)}",
        f"category_affinity.{rng.choice(CATEGORIES)}: {{gte: {rng.choice((0.2, 0.4, 0.6))}}}",
        f"days_since_last_purchase: {{lt: {rng.randint(7, 60)}}}",
        "any: [{channel: app}, {is_weekend: true}]",
        f"not: {{country: {rng.choice(COUNTRIES)}}}",
    ]
    when = ", ".join([f"segment: {segment}", *rng.sample(refinements, rng.randint(1, 3))])
    return then_block(rng, index, when)


def open_rule(rng: random.Random, index: int) -> str:
    """A rule that names no segment: every customer must be checked against it."""
    conditions = [
        f"tags: {rng.choice(TAGS)}",
        f"attributes.{rng.choice(('staff', 'vip', 'b2b'))}: true",
        f"category_affinity.{rng.choice(CATEGORIES)}: {{gte: {rng.choice((0.5, 0.7, 0.9))}}}",
        f"hour: {{between: [{rng.randint(0, 11)}, {rng.randint(12, 23)}]}}",
        f"total_spent: {{gt: {rng.randint(500, 5000)}}}",
        f"age: {{lt: {rng.randint(20, 30)}}}",
        f"country: [{rng.choice(COUNTRIES)}, {rng.choice(COUNTRIES)}]",
        "device: tablet",
        f"weekday: {rng.choice(WEEKDAYS)}",
        "favorite_category: {exists: false}",
    ]
    when = ", ".join(rng.sample(conditions, rng.randint(2, 3)))
    return then_block(rng, index, when)


def then_block(rng: random.Random, index: int, when: str) -> str:
    offer = rng.choice(("discount", "free_shipping", "exclusive_access", "bundle", "none"))
    then = f"offer_type: {offer}"
    if offer == "discount":
        then += f", discount_pct: {rng.choice((5, 10, 15, 20))}"
    if rng.random() < 0.5:
        then += f", recommendation_strategy: {rng.choice(('cheapest_first', 'premium'))}"
    return f"  - name: rule {index}\n    when: {{{when}}}\n    then: {{{then}}}\n"


def rule_file(rng: random.Random, count: int, *, open_share: float) -> str:
    """``count`` rules, about ``open_share`` of them naming no segment."""
    rules = []
    for index in range(count):
        if rng.random() < open_share:
            rules.append(open_rule(rng, index))
        else:
            rules.append(segment_rule(rng, index, rng.choice(CUSTOMER_SEGMENTS)))
    return "defaults: {offer_type: none}\nrules:\n" + "".join(rules)


def random_facts(rng: random.Random) -> Facts:
    """One plausible customer at one moment."""
    purchases = rng.choice((0, 0, 1, 2, 4, 8, 15))
    weekday = rng.choice(WEEKDAYS)
    hour = rng.randrange(24)
    affinity = {category: round(rng.random(), 2) for category in rng.sample(CATEGORIES, 3)}
    return Facts(
        segment=rng.choice(CUSTOMER_SEGMENTS),
        loyalty_tier=rng.choice(LOYALTY_TIERS),
        tags=tuple(rng.sample(TAGS, rng.randint(0, 2))),
        is_known_customer=True,
        is_returning_customer=purchases > 0,
        interaction_count=purchases * 5 + rng.randint(0, 20),
        purchase_count=purchases,
        total_spent=round(purchases * rng.uniform(10, 200), 2),
        discounted_purchase_share=rng.random(),
        days_since_last_purchase=rng.uniform(0, 200) if purchases else None,
        favorite_category=max(affinity, key=affinity.__getitem__) if purchases else None,
        category_affinity=MappingProxyType(affinity),
        age=rng.choice((None, rng.randint(18, 80))),
        country=rng.choice((None, *COUNTRIES)),
        attributes=MappingProxyType({"staff": rng.random() < 0.01}),
        time_of_day=TIMES_OF_DAY[(hour // 6 + 1) % 4],
        weekday=weekday,
        hour=hour,
        is_weekend=weekday in ("saturday", "sunday"),
        channel=rng.choice(("web", "app", "chat", None)),
        device=rng.choice(("mobile", "desktop", "tablet", None)),
    )


def time_each(decide: Callable[[Facts], Any], customers: list[Facts]) -> list[float]:
    """Nanoseconds per call, one measurement per customer."""
    clock = time.perf_counter_ns
    samples = []
    for facts in customers:
        start = clock()
        decide(facts)
        samples.append(clock() - start)
    return samples


def percentile(sorted_samples: list[float], share: float) -> float:
    return sorted_samples[min(len(sorted_samples) - 1, int(share * len(sorted_samples)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    text = rule_file(rng, args.rules, open_share=0.2)
    started = time.perf_counter()
    realistic = parse_rules(text, f"<{args.rules} generated rules>")
    load_ms = (time.perf_counter() - started) * 1000
    unindexed = parse_rules(rule_file(rng, args.rules, open_share=1.0), "<open rules>")
    one_rule = parse_rules(
        "rules:\n  - {name: one, when: {segment: loyal}, then: {offer_type: bundle}}\n"
    )
    customers = [random_facts(rng) for _ in range(args.customers)]

    def dict_lookup(facts: Facts) -> Any:
        return SEGMENT_OFFERS.get(facts.segment)

    def with_rules(rules: RuleSet) -> Callable[[Facts], Any]:
        return lambda facts: evaluate(rules, facts)

    variants: dict[str, Callable[[Facts], Any]] = {
        "dict lookup (no rules)": dict_lookup,
        "1 rule": with_rules(one_rule),
        f"built-in ({len(builtin_rules().rules)})": with_rules(builtin_rules()),
        f"{args.rules} rules": with_rules(realistic),
        f"{args.rules} rules, no index": with_rules(unindexed),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for decide in variants.values():  # warm-up: first calls pay for caches
        time_each(decide, customers[:500])
    gc.disable()  # a collection inside one timed call would only add noise
    try:
        for _ in range(args.rounds):
            for name, decide in variants.items():
                samples[name].extend(time_each(decide, customers))
    finally:
        gc.enable()
    overhead = statistics.median(time_each(lambda facts: None, customers))

    decided = Counter(evaluate(realistic, facts).rule is not None for facts in customers)
    print(f"Python {sys.version.split()[0]}; {args.customers} customers x {args.rounds} rounds")
    print(
        f"{args.rules}-rule file: compiled in {load_ms:.1f} ms; a rule decided for "
        f"{decided[True] / len(customers):.0%} of customers, the defaults for the rest"
    )
    print(f"timer overhead per call: {overhead / 1000:.2f} us (included below)")
    baseline = statistics.median(samples["dict lookup (no rules)"])
    one = statistics.median(samples["1 rule"])
    print(f"{'variant':<24}{'median us':>10}{'p99 us':>10}{'x dict':>9}{'x 1 rule':>10}")
    for name, values in samples.items():
        values.sort()
        median = statistics.median(values)
        print(
            f"{name:<24}{median / 1000:>10.2f}{percentile(values, 0.99) / 1000:>10.2f}"
            f"{median / baseline:>9.1f}{median / one:>10.1f}"
        )
    print("target: <= 50 us per customer with 50 rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
