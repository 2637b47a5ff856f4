"""`personalize offers train` and `personalize rules explain` with a `best` rule, on a real
SQLite file: JSON values, the choice explained, consent respected, clear errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.store.consent import set_consent
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import NOW, add_customer
from tests.offers.test_training import seed_shop

runner = CliRunner()
RULES = """\
rules:
  - name: win back
    when: {segment: at_risk}
    then:
      offer_type: best
      offers:
        - {offer_type: discount, discount_pct: 10, value: 6}
        - {offer_type: bundle, value: 5}
"""


@pytest.fixture
def shop(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The hand-made shop of test_training, plus Ann (at risk) and Quinn (at risk, no
    marketing); the environment points the CLI at it, a rule file and a model dir."""

    async def seed() -> None:
        store = await migrated_store(sqlite_url)
        await seed_shop(store)
        async with store.sessions.begin() as session:
            await add_customer(session, "ann", segment="at_risk")
            quinn = await add_customer(session, "quinn", segment="at_risk")
            await set_consent(
                session, quinn.customer_key, {"marketing": False}, source="cli",
                policy_version=None, now=NOW,
            )  # fmt: skip
        await store.dispose()

    asyncio.run(seed())
    rules = tmp_path / "personalization.yml"
    rules.write_text(RULES, encoding="utf-8")
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("PERSONALIZE_RULES_PATH", str(rules))
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path


def explain_json(customer: str) -> dict[str, object]:
    result = runner.invoke(app, ["rules", "explain", customer, "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_train_prints_the_estimates_as_json(shop: Path) -> None:
    result = runner.invoke(
        app,
        ["offers", "train", "--json", "--as-of", NOW.isoformat(), "--min-exposures", "20",
         "--prior-strength", "10"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["goal"], summary["window_days"], summary["min_exposures"]) == (
        "purchase", 7, 20,
    )  # fmt: skip
    assert (summary["exposures"], summary["accepted"], summary["pending"]) == (60, 18, 1)
    cells = {cell["offer"]: cell for cell in summary["cells"]}
    assert cells["discount_10"]["p_accept"] == pytest.approx(0.252)
    assert (cells["bundle"]["exposures"], cells["bundle"]["enough_data"]) == (20, True)
    assert summary["model_version"] == (shop / "models" / "offers" / "CURRENT").read_text().strip()


def test_train_prints_a_table(shop: Path) -> None:
    result = runner.invoke(app, ["offers", "train", "--as-of", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert "discount_10" in result.stdout
    assert "60 exposures of 61 customers counted, 18 accepted; 1 still inside" in result.stdout
    # Fewer than the default 30 exposures: marked as not compared yet.
    assert "20 *" in result.stdout


def test_train_with_nothing_old_enough_fails_with_the_reason(shop: Path) -> None:
    result = runner.invoke(
        app, ["offers", "train", "--as-of", NOW.isoformat(), "--window-days", "30"]
    )
    assert result.exit_code == 1
    assert "no offer exposure is older than the 30-day window yet" in result.output


def test_a_window_out_of_range_is_a_usage_error(shop: Path) -> None:
    result = runner.invoke(app, ["offers", "train", "--window-days", "0"])
    assert result.exit_code == 2


def test_explain_shows_the_candidates_and_the_choice(shop: Path) -> None:
    """Before training: the first offer, and why; after: the best by expected value
    (discount 0.252 x 6 = 1.51 < bundle 0.389 x 5 = 1.94)."""
    before = explain_json("ann")
    choice = before["offer_choice"]
    assert isinstance(choice, dict)
    assert (choice["chosen"], choice["reason"], choice["model_version"]) == (
        "discount_10", "no_model", None,
    )  # fmt: skip
    assert before["slots"]["offer_type"] == "discount"  # type: ignore[index]
    assert before["decision"]["offers"][1]["offer"] == "bundle"  # type: ignore[index]

    trained = runner.invoke(
        app, ["offers", "train", "--as-of", NOW.isoformat(), "--min-exposures", "20",
              "--prior-strength", "10"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    after = explain_json("ann")
    choice = after["offer_choice"]
    assert isinstance(choice, dict)
    assert (choice["chosen"], choice["reason"]) == ("bundle", "expected_value")
    expected = {row["offer"]: row["expected_value"] for row in choice["candidates"]}
    assert expected == pytest.approx({"discount_10": 1.512, "bundle": 5 * (8 + 110 / 30) / 30})
    assert [row["exposures"] for row in choice["candidates"]] == [40, 20]
    assert (after["slots"]["offer_type"], after["slots"]["discount_pct"]) == ("bundle", 0)  # type: ignore[index]

    text = runner.invoke(app, ["rules", "explain", "ann"])
    assert text.exit_code == 0, text.output
    assert "Best offer for segment 'at_risk'" in text.stdout
    assert "Chosen: 'bundle': the highest expected value (p x value)" in text.stdout


def test_explain_without_marketing_consent_makes_no_offer(shop: Path) -> None:
    document = explain_json("quinn")
    assert document["offer_choice"]["reason"] == "no_marketing_consent"  # type: ignore[index]
    assert document["offer_choice"]["chosen"] is None  # type: ignore[index]
    assert (document["slots"]["offer_type"], document["slots"]["discount_pct"]) == ("none", 0)  # type: ignore[index]
