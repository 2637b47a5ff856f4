"""Regret of Thompson-sampling allocation against a fixed even split, on known rates.

Customers arrive one by one; each is assigned to an arm, and converts with that arm's
true rate. Three policies, on the same arrivals (the same seeds):

- ``fixed split``: every arm gets the same share for the whole experiment (the baseline);
- ``thompson``: the allocation weights are ``thompson_weights`` of the counts so far,
  recomputed every ``--batch`` customers, with its default floor of 1% per arm;
- ``thompson, as served``: what ``allocation: thompson`` does in the action server with
  its defaults: the configured (even) split until every arm has 100 exposures, then
  ``thompson_weights`` with a floor of 5% per arm, recomputed every ``--batch``
  customers (the customers of one ``refresh_minutes`` interval).

With ``--delay D`` a conversion reaches the allocation only after an exponential delay of
mean ``D`` customers (a purchase comes days after the chat, while the exposure is stored
at once), which is what the served weights see between refreshes.

Regret is the expected conversions lost against sending everybody to the best arm:
``sum over customers of (best rate - rate of the arm chosen)``. It uses the true rates, not
the conversions drawn, so it measures the allocation, not the luck of the draws. Each
scenario is repeated ``--runs`` times; the script prints the mean regret (with the 10th
and 90th percentiles), the ratio to the fixed split's, the share of customers sent to the
best arm, and how often the final counts show the best arm ahead of every other arm at
p < 0.05 (the price of a bandit: the arms it starves are measured less precisely; with
adaptive allocation that p-value is only indicative). It also times ``thompson_weights``
and ``analyze`` calls (median, p99).

    python bench/thompson_regret.py [--customers 20000] [--batch 500] [--runs 200] [--seed 1]
        [--delay 0]

Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from harness import percentile
from rasa_personalize.experiments.stats import (
    ArmCounts,
    analyze,
    newcombe_p_value,
    thompson_weights,
)
from rasa_personalize.rules.experiments import DEFAULT_MIN_EXPOSURES_PER_ARM, THOMPSON_FLOOR

SCENARIOS: dict[str, tuple[float, ...]] = {
    "2 arms, 5.0% vs 6.0%": (0.05, 0.06),
    "2 arms, 5.0% vs 5.5%": (0.05, 0.055),
    "3 arms, 5.0% / 5.5% / 6.5%": (0.05, 0.055, 0.065),
}


@dataclass(frozen=True)
class Outcome:
    regret: float  # expected conversions lost against the best arm
    best_share: float  # share of customers sent to the best arm
    best_significant: bool  # at the end, the best arm beats every other one at p < 0.05


def simulate(
    rates: Sequence[float],
    *,
    customers: int,
    batch: int,
    seed: int,
    allocate: Callable[[list[ArmCounts], int], Sequence[float]],
    delay: float = 0.0,
) -> Outcome:
    """One experiment: batches of customers assigned by ``allocate``'s weights.

    With ``delay``, a conversion is seen by the allocation only after an exponential delay
    of mean ``delay`` customers (the exposure is seen at once), as a purchase comes days
    after the chat; regret and the final test use every conversion.
    """
    rng = np.random.default_rng(seed)
    # Its own generator: the other draws are the same with or without delays.
    delays = np.random.default_rng([seed, 1])
    true_rates = np.asarray(rates)
    exposures = np.zeros(len(rates), dtype=np.int64)
    conversions = np.zeros(len(rates), dtype=np.int64)
    seen_at: list[NDArray[np.float64]] = [np.empty(0) for _ in rates]
    for start in range(0, customers, batch):
        size = min(batch, customers - start)
        seen = conversions
        if delay:
            seen = np.array([np.count_nonzero(times <= start) for times in seen_at])
        counts = [
            ArmCounts(f"arm{index}", 1, int(exposures[index]), int(seen[index]))
            for index in range(len(rates))
        ]
        weights = np.asarray(allocate(counts, seed * 100_003 + start), dtype=np.float64)
        assigned = rng.multinomial(size, weights / weights.sum())
        exposures += assigned
        converted = rng.binomial(assigned, true_rates)
        conversions = conversions + converted
        if delay:
            for index, count in enumerate(converted):
                arrival = start + delays.uniform(0, size, count)
                seen_at[index] = np.concatenate(
                    (seen_at[index], arrival + delays.exponential(delay, count))
                )
    best = int(true_rates.argmax())
    regret = float(((true_rates[best] - true_rates) * exposures).sum())
    best_share = float(exposures[best] / customers)
    others = [index for index in range(len(rates)) if index != best]
    significant = all(
        exposures[index] > 0
        and exposures[best] > 0
        and conversions[best] / exposures[best] > conversions[index] / exposures[index]
        and newcombe_p_value(
            conversions[best], exposures[best], conversions[index], exposures[index]
        )
        < 0.05
        for index in others
    )
    return Outcome(regret, best_share, significant)


def fixed_split(counts: list[ArmCounts], _seed: int) -> list[float]:
    return [1.0] * len(counts)


def thompson(counts: list[ArmCounts], seed: int) -> list[float]:
    return list(thompson_weights(counts, seed=seed).values())


def served_thompson(counts: list[ArmCounts], seed: int) -> list[float]:
    """``allocation: thompson`` with its defaults (see ``experiments.allocation``)."""
    if min(arm.exposures for arm in counts) < DEFAULT_MIN_EXPOSURES_PER_ARM:
        return fixed_split(counts, seed)
    return list(thompson_weights(counts, seed=seed, min_share=THOMPSON_FLOOR).values())


def describe(outcomes: list[Outcome]) -> tuple[float, float, float, float, float]:
    regrets = [outcome.regret for outcome in outcomes]
    return (
        statistics.fmean(regrets),
        percentile(regrets, 10),
        percentile(regrets, 90),
        statistics.fmean(outcome.best_share for outcome in outcomes),
        statistics.fmean(outcome.best_significant for outcome in outcomes),
    )


def time_calls(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and p99 of one call, in milliseconds."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), percentile(timings, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="customers between reweightings")
    parser.add_argument("--runs", type=int, default=200, help="repetitions per scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--delay",
        type=float,
        default=0.0,
        help="mean delay of a conversion, in customers (0: seen at once)",
    )
    args = parser.parse_args()

    print(
        f"{args.customers:,} customers, weights recomputed every {args.batch:,}, "
        f"{args.runs} runs per scenario (seeds {args.seed} to {args.seed + args.runs - 1}), "
        f"conversions seen after {args.delay:,.0f} customers on average"
    )
    header = (
        "| scenario | policy | regret, mean (p10 to p90) | regret vs fixed split "
        "| customers to the best arm | best arm significantly ahead at the end |"
    )
    print(header)
    print("|---|---|---|---|---|---|")
    for name, rates in SCENARIOS.items():
        results = {}
        policies = (
            ("fixed split", fixed_split),
            ("thompson", thompson),
            ("thompson, as served", served_thompson),
        )
        for policy_name, policy in policies:
            outcomes = [
                simulate(
                    rates,
                    customers=args.customers,
                    batch=args.batch,
                    seed=args.seed + run,
                    delay=args.delay,
                    allocate=policy,
                )
                for run in range(args.runs)
            ]
            results[policy_name] = describe(outcomes)
        baseline = results["fixed split"][0]
        for policy_name, (mean, low, high, best_share, significant) in results.items():
            print(
                f"| {name} | {policy_name} | {mean:.1f} ({low:.1f} to {high:.1f}) "
                f"| {mean / baseline:.2f} | {best_share:.1%} | {significant:.0%} |"
            )

    arms = [
        ArmCounts("control", 1, 10_000, 500),
        ArmCounts("b", 1, 10_000, 560),
        ArmCounts("c", 1, 10_000, 530),
    ]
    weights_ms = time_calls(lambda: thompson_weights(arms, seed=1), 200)
    analyze_ms = time_calls(lambda: analyze(arms, "control"), 200)
    print()
    print("| call (3 arms, 10,000 exposures each) | median ms | p99 ms |")
    print("|---|---|---|")
    print(f"| thompson_weights (10,000 draws) | {weights_ms[0]:.2f} | {weights_ms[1]:.2f} |")
    print(f"| analyze | {analyze_ms[0]:.2f} | {analyze_ms[1]:.2f} |")


if __name__ == "__main__":
    main()
