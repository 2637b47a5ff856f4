"""A simulated A/B test with known purchase rates, through the real pipeline.

Simulated shoppers start a conversation (the engine assigns their arm and stores the
exposure, as the session action does), hear an offer, and buy at a rate that depends
only on the discount they heard. Their purchases go through event ingestion, and the
report is computed from the store as ``personalize experiments report`` does. Knowing
the true rates shows what the report can and cannot tell.

It runs on a store of its own (a temporary SQLite file), so the demo store stays as
seeded.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from rasa_personalize.clock import utc_now
from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import ConversationRef, PersonalizationRequest, PersonalizationService
from rasa_personalize.events.ingest import ingest_events
from rasa_personalize.experiments.report import analysis_of
from rasa_personalize.experiments.stats import ExperimentAnalysis
from rasa_personalize.identity import CustomerIdentity
from rasa_personalize.rules import RuleBook, load_rules
from rasa_personalize.rules.experiments import Experiment
from rasa_personalize.settings import Settings
from rasa_personalize.store.experiments import ExperimentOutcomes, experiment_outcomes
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Product
from rasa_personalize.store.sql_store import SqlStore

RULES: Final = """\
rules:
  - name: a welcome discount
    when: {segment: new_visitor}
    then: {offer_type: discount, discount_pct: 15}
experiments:
  - name: bigger_discount
    description: Does 20% off sell more than the usual 15%?
    status: running
    arms:
      - {name: control, weight: 50}
      - {name: twenty, weight: 50, then: {discount_pct: 20}}
    goal: purchase
    window_days: 7
"""
# What a shopper does after hearing the offer: the truth the report should find.
PURCHASE_RATE: Final[Mapping[int, float]] = {15: 0.20, 20: 0.26}
PRICE: Final = 40.0
DEFAULT_SHOPPERS: Final = 2_000


@dataclass(frozen=True)
class SimulatedExperiment:
    """The experiment, what the store says about it, the analysis and the true rates."""

    experiment: Experiment
    outcomes: ExperimentOutcomes
    analysis: ExperimentAnalysis
    true_rates: Mapping[str, float]  # arm -> purchase rate


async def simulate_experiment(
    settings: Settings, shoppers: int = DEFAULT_SHOPPERS, seed: int = 7
) -> SimulatedExperiment:
    """Run the simulation on a temporary store; ``settings`` gives the secret key."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="personalize-experiment-") as folder:
        rules_path = Path(folder) / "personalization.yml"
        rules_path.write_text(RULES, encoding="utf-8")
        database_url = f"sqlite:///{Path(folder) / 'experiment.db'}"
        simulated = settings.model_copy(
            update={
                "database_url": database_url,
                "rules_path": rules_path,
                "redis_url": None,
                "consent_default": "granted",
            }
        )
        store = SqlStore(database_url)
        async with store.engine.begin() as connection:
            await upgrade_connection(connection)
        service = PersonalizationService(simulated, store, rules=RuleBook(rules_path))
        try:
            async with store.sessions.begin() as session:
                session.add(
                    Product(sku="DEMO-1", title="Demo product", category="demo", price=PRICE)
                )
            purchases = []
            for index in range(shoppers):
                shopper = f"simulated-shopper-{index:05d}"
                plan = await service.personalize(
                    PersonalizationRequest(
                        CustomerIdentity(shopper, "message_metadata", verified=True),
                        ConversationContext(),
                        ConversationRef(f"simulated-conversation-{index}", "m-1"),
                    )
                )
                if rng.random() < PURCHASE_RATE[int(plan["discount_pct"])]:
                    purchases.append(
                        {
                            "event_id": f"simulated-order-{index}",
                            "customer": shopper,
                            "product": "DEMO-1",
                            "kind": "purchase",
                            "price": PRICE,
                            "timestamp": utc_now().isoformat(),
                        }
                    )
            await service.drain()
            for start in range(0, len(purchases), 500):
                async with store.sessions.begin() as session:
                    await ingest_events(
                        session, purchases[start : start + 500], secret_key=simulated.secret_key
                    )
            (experiment,) = load_rules(rules_path).experiments
            async with store.sessions() as session:
                outcomes = await experiment_outcomes(
                    session,
                    experiment.name,
                    experiment.goal,
                    timedelta(days=experiment.window_days),
                )
        finally:
            await service.close()
    analysis = analysis_of(experiment, outcomes)
    true_rates = {"control": PURCHASE_RATE[15], "twenty": PURCHASE_RATE[20]}
    return SimulatedExperiment(experiment, outcomes, analysis, true_rates)
