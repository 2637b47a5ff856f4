"""Purchase propensity on the demo shop at scale: seconds per stage, and the figures.

The demo generator seeds a SQLite file (``--customers``, ``--interactions`` per customer
on average; the seeding is timed but is not part of the target), then
:func:`~rasa_personalize.propensity.training.train_propensity` runs on it as
``personalize propensity train`` does: features as of the cut-off, labels, fit and
calibration, both baselines, features as of now, scoring, and storing every score (row
and profile document). Each round runs in a transaction that is rolled back, so rounds
see the same data. Per stage, the seconds from its first to its last progress report.

Targets (the issue's): ROC AUC >= 0.80 and at least 0.05 above the recency-only
baseline, and the whole run <= 60 s for 100,000 customers on 2 cores.

    python bench/propensity.py [--customers 100000] [--interactions 25] [--rounds 1]
        [--seed 42] [--threads 1] [--database FILE]

With ``--database FILE`` an existing seeded file is reused (seeding 100k customers takes
minutes). Prints figures; never asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select

from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.propensity.model import PropensityParams
from rasa_personalize.propensity.training import PropensityReport, train_propensity
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Customer
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
SECRET = "bench-propensity-secret"


async def open_store(path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{path}", StoreTimeouts(connect_s=10.0, statement_s=None))
    async with store.engine.begin() as connection:
        await upgrade_connection(connection)
    return store


async def seed(store: SqlStore, config: DemoShopConfig) -> float:
    """Seed the shop unless the file already holds customers; seconds spent (0: reused)."""
    async with store.sessions() as session:
        if await session.scalar(select(func.count()).select_from(Customer)):
            return 0.0
    started = time.perf_counter()
    async with store.sessions.begin() as session:
        await seed_demo_shop(session, config, secret_key=SECRET, now=NOW)
        await rebuild_profile_metrics(session, NOW)
    return time.perf_counter() - started


async def one_round(store: SqlStore, threads: int) -> tuple[PropensityReport, dict[str, float]]:
    """One training run, rolled back; the report and seconds per stage."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}

    def progress(stage: str, _done: int, _total: int) -> None:
        now = time.perf_counter()
        first.setdefault(stage, now)
        last[stage] = now

    async with store.sessions() as session:
        run = await train_propensity(
            session, now=NOW, params=PropensityParams(n_threads=threads), progress=progress
        )
        await session.rollback()
    return run.report, {stage: last[stage] - first[stage] for stage in first}


async def main(arguments: argparse.Namespace) -> None:
    config = DemoShopConfig(
        customers=arguments.customers,
        products=300,
        interactions=arguments.customers * arguments.interactions,
        seed=arguments.seed,
    )
    directory = None
    path = arguments.database
    if path is None:
        directory = tempfile.TemporaryDirectory(prefix="bench-propensity-")
        path = Path(directory.name) / "shop.db"
    store = await open_store(path)
    try:
        seeded = await seed(store, config)
        print(
            f"demo shop: {config.customers:,} customers, ~{config.interactions:,} interactions "
            f"(seed {config.seed}); seeding {seeded:.0f} s{' (reused)' if not seeded else ''}"
        )
        totals: list[float] = []
        report = None
        for round_number in range(1, arguments.rounds + 1):
            report, stages = await one_round(store, arguments.threads)
            totals.append(report.seconds)
            breakdown = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in stages.items())
            print(f"round {round_number}: {report.seconds:.1f} s ({breakdown})")
        assert report is not None
        recency, segment_rule = report.baselines["recency"], report.baselines["segment_rule"]
        print(f"median of {len(totals)}: {statistics.median(totals):.1f} s (target <= 60 s)")
        print(
            f"training customers {report.training_customers:,}, test {report.test_customers:,}, "
            f"buyers in the week {report.positives:,}; {report.boosting_rounds} boosting rounds, "
            f"{report.calibration_method} calibration"
        )
        print("                     ROC AUC  PR AUC   Brier")
        for name, figures in (
            ("model", report.model),
            ("recency baseline", recency),
            ("segment rule", segment_rule),
        ):
            print(f"{name:<20} {figures.auc:7.3f} {figures.pr_auc:7.3f} {figures.brier:7.4f}")
        if report.truth is not None:
            truth = report.truth
            print(
                f"{'true probabilities':<20} {truth.auc:7.3f}       - {truth.brier:7.4f}"
                f"   (model vs truth: mean |error| {truth.mean_abs_error:.3f})"
            )
        print(
            f"AUC - recency AUC: {report.model.auc - recency.auc:+.3f} (target >= +0.05); "
            f"bands {dict(report.band_counts)}"
        )
    finally:
        await store.dispose()
        if directory is not None:
            directory.cleanup()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=25, help="per customer, on average")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--database", type=Path, default=None, help="reuse or keep this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
