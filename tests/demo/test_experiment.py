"""The demo's simulated A/B test: known rates in, a report that finds them out."""

from __future__ import annotations

import pytest

from rasa_personalize.demo.experiment import simulate_experiment
from rasa_personalize.settings import Settings
from tests.conftest import TEST_SECRET


async def test_the_simulated_report_holds_the_true_rates() -> None:
    result = await simulate_experiment(Settings(secret_key=TEST_SECRET), shoppers=600, seed=3)
    analysis = result.analysis
    assert sum(arm.exposures for arm in analysis.arms) == 600
    assert not analysis.srm_flagged
    for arm in analysis.arms:
        assert arm.rate_ci_low is not None
        assert arm.rate_ci_high is not None
        assert arm.rate_ci_low <= result.true_rates[arm.name] <= arm.rate_ci_high
        assert arm.revenue_per_exposed == pytest.approx(40.0 * arm.conversions / arm.exposures)
    assert [day.arms for day in result.outcomes.daily][-1] == {
        name: (outcome.exposures, outcome.conversions)
        for name, outcome in result.outcomes.arms.items()
    }
