"""The test kit for a shop's own actions: rasa_personalize.testing and its pytest plugin.

The fixtures are used here as any suite in this environment gets them: through the
``pytest11`` entry point. The examples of docs/testing.md and docs/plugging-in.md run in
a project of their own, as a shop would run them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk.events import SlotSet

from actions.catalogue import ActionListCategories
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.handlers import ActionRefreshPersonalization
from rasa_personalize.identity import sign_user_id
from rasa_personalize.runtime import personalization_service
from rasa_personalize.testing import (
    TESTING_SECRET_KEY,
    ActionRun,
    ThrowawayStore,
    make_tracker,
    run_action,
    tracker_state,
)

ROOT = Path(__file__).resolve().parent.parent
# The pages whose examples name their files (```python title="actions/x.py").
EXAMPLE_PAGES = (ROOT / "docs" / "testing.md", ROOT / "docs" / "plugging-in.md")
IDENTITY_SECRET = "an-identity-secret-for-tests"


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    """pip installs it: pytest loads it in every suite of the environment."""
    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins["rasa_personalize"] == "rasa_personalize.pytest_plugin"


async def test_the_store_starts_empty_and_migrated(personalize_store: ThrowawayStore) -> None:
    """A store of its own in the test's folder, at the schema's head, with no rows."""
    stats = await personalize_store.store.stats()
    assert (stats.customers, stats.products, stats.interactions) == (0, 0, 0)
    assert personalize_store.database_url.endswith("/personalize/personalize.db")
    assert personalize_store.secret_key == TESTING_SECRET_KEY


async def test_a_known_customer_gets_their_profile_slots(
    personalize_store: ThrowawayStore, personalize_service: PersonalizationService
) -> None:
    """Rows added by external id are what the plugin's own action reads."""
    await personalize_store.add_customer(
        "c-1", loyalty_tier="gold", segment="loyal", tags=("premium", "runner")
    )
    run = await run_action(ActionRefreshPersonalization(), make_tracker(user_id="c-1"))
    assert run.slots["loyalty_tier"] == "gold"
    assert run.slots["customer_segment"] == "loyal"
    assert run.slots["user_tags"] == ["premium", "runner"]  # strongest first
    assert run.slots["is_returning_customer"] is False  # no history yet
    assert personalization_service() is personalize_service


async def test_interactions_make_history_and_favourites(
    personalize_store: ThrowawayStore,
) -> None:
    """Purchases a few days back: a returning customer whose favourite category is theirs."""
    await personalize_store.add_product("RUN-1", "running", price=120.0)
    await personalize_store.add_product("BOOK-1", "books", price=10.0)
    await personalize_store.add_customer("c-2")
    await personalize_store.add_interactions("c-2", "RUN-1", "purchase", 4, days_ago=3)
    await personalize_store.add_interactions("c-2", "BOOK-1", "view", 2)
    await personalize_store.start_service()
    run = await run_action(ActionRefreshPersonalization(), make_tracker(user_id="c-2"))
    assert run.slots["is_returning_customer"] is True
    assert run.slots["favorite_category"] == "running"
    stats = await personalize_store.store.stats()
    assert (stats.customers, stats.products, stats.interactions) == (1, 2, 6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # a tier outside the slot contract
        ({"loyalty_tier": "diamond"}, "loyalty_tier 'diamond': expected one of"),
        # a segment outside the slot contract
        ({"segment": "vip"}, "segment 'vip': expected one of"),
    ],
)
async def test_customers_outside_the_contract_are_refused(
    personalize_store: ThrowawayStore, call: dict[str, Any], message: str
) -> None:
    """A test cannot build a customer the action server could never see."""
    with pytest.raises(ValueError, match=re.escape(message)):
        await personalize_store.add_customer("c-3", **call)


async def test_mistakes_in_test_data_are_clear_errors(personalize_store: ThrowawayStore) -> None:
    """Twice the same customer or sku, or events of unknown rows, say what is wrong."""
    await personalize_store.add_customer("c-4")
    await personalize_store.add_product("SKU-1", "books")
    with pytest.raises(ValueError, match="that customer is in the store already"):
        await personalize_store.add_customer("c-4")
    with pytest.raises(ValueError, match="product 'SKU-1' is in the store already"):
        await personalize_store.add_product("SKU-1", "books")
    with pytest.raises(ValueError, match=r"no such customer: add_customer\(\) first"):
        await personalize_store.add_interactions("c-nobody", "SKU-1")
    with pytest.raises(ValueError, match=r"no product 'SKU-9': add_product\(\) first"):
        await personalize_store.add_interactions("c-4", "SKU-9")
    with pytest.raises(ValueError, match="kind 'bought': expected one of"):
        await personalize_store.add_interactions("c-4", "SKU-1", "bought")


async def test_run_action_returns_events_and_messages(
    personalize_store: ThrowawayStore,
) -> None:
    """The events compare as a list; the messages are the dispatcher's, in order."""
    await personalize_store.add_product("KIT-1", "kitchen")
    await personalize_store.start_service()
    run = await run_action(ActionListCategories(), make_tracker())
    assert isinstance(run, ActionRun)
    assert run == []
    assert run.events == []
    assert run.responses == ["utter_list_categories"]
    assert run.messages[0]["categories"] == "kitchen"
    assert run.texts == []


async def test_slot_events_compare_with_rasa_sdk_events(
    personalize_service: PersonalizationService,
) -> None:
    """An unknown customer's refresh equals the SlotSet events rasa-sdk would build."""
    run = await run_action(ActionRefreshPersonalization(), make_tracker(user_id="nobody"))
    assert SlotSet("customer_segment", "new_visitor") in run
    assert SlotSet("loyalty_tier", "none") in run


def test_the_tracker_factory_builds_the_latest_message() -> None:
    """Text, intent, entities, metadata, slots and sender id land where Rasa puts them."""
    tracker = make_tracker(
        sender_id="conv-1",
        user_id="c-1",
        text="any running shoes?",
        intent="ask_category",
        entities=[{"entity": "category", "value": "running"}],
        slots={"category": "running"},
        message_metadata={"timezone": "Europe/Paris"},
    )
    assert tracker.sender_id == "conv-1"
    assert tracker.latest_message["text"] == "any running shoes?"
    assert tracker.latest_message["intent"]["name"] == "ask_category"
    assert tracker.latest_message["entities"] == [{"entity": "category", "value": "running"}]
    assert tracker.latest_message["metadata"] == {"timezone": "Europe/Paris", "user_id": "c-1"}
    assert tracker.get_slot("category") == "running"


def test_an_identity_secret_signs_every_user_id() -> None:
    """The message's and the session's user ids get the hash a shop's server would send;
    a hash given already (a forged one) is left as it is."""
    state = tracker_state(
        user_id="c-1", session_metadata={"user_id": "c-1"}, identity_secret=IDENTITY_SECRET
    )
    expected = sign_user_id(IDENTITY_SECRET, "c-1")
    assert state["latest_message"]["metadata"]["user_hash"] == expected
    assert state["slots"]["session_started_metadata"]["user_hash"] == expected
    forged = tracker_state(
        user_id="c-1", message_metadata={"user_hash": "0" * 64}, identity_secret=IDENTITY_SECRET
    )
    assert forged["latest_message"]["metadata"]["user_hash"] == "0" * 64
    assert "user_hash" not in tracker_state(user_id="c-1")["latest_message"]["metadata"]


async def test_a_signed_tracker_is_trusted_and_a_claim_is_not(
    personalize_store: ThrowawayStore,
) -> None:
    """A service with an identity secret, as in production: only the signed id is gold."""
    await personalize_store.add_customer("c-5", loyalty_tier="gold")
    await personalize_store.start_service(identity_secret=IDENTITY_SECRET)
    signed = make_tracker(user_id="c-5", identity_secret=IDENTITY_SECRET)
    claimed = make_tracker(user_id="c-5")
    action = ActionRefreshPersonalization()
    assert (await run_action(action, signed)).slots["loyalty_tier"] == "gold"
    assert (await run_action(action, claimed)).slots["loyalty_tier"] == "none"


def doc_files(markdown: str) -> dict[str, str]:
    """The code blocks of a page that name a file (```python title="path"), by path."""
    blocks = re.findall(r'^```python title="([^"]+)"\n(.*?)^```$', markdown, re.M | re.S)
    return dict(blocks)


def run_pytest(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``project`` as its own process, as a shop runs its suite."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture
def shop_project(tmp_path: Path) -> Path:
    """A shop's project with the examples of the docs, plus a test that must fail."""
    project = tmp_path / "shop"
    files = {
        name: code
        for page in EXAMPLE_PAGES
        for name, code in doc_files(page.read_text(encoding="utf-8")).items()
    }
    assert sorted(files) == [
        "actions/loyalty.py",
        "actions/session.py",
        "tests/test_loyalty.py",
        "tests/test_session.py",
    ]
    for name, code in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(code, encoding="utf-8")
    (project / "actions" / "__init__.py").write_text("", encoding="utf-8")
    # A wrong expectation fails: the example's passes are real.
    (project / "tests" / "test_wrong.py").write_text(
        "from actions.loyalty import ActionLoyaltyStatus\n"
        "from rasa_personalize.testing import make_tracker, run_action\n\n\n"
        "async def test_wrong_tier(personalize_store, personalize_service):\n"
        '    await personalize_store.add_customer("c-9", loyalty_tier="silver")\n'
        '    run = await run_action(ActionLoyaltyStatus(), make_tracker(user_id="c-9"))\n'
        '    assert run.slots["loyalty_tier"] == "gold"\n',
        encoding="utf-8",
    )
    (project / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "pythonpath = .\n",
        encoding="utf-8",
    )
    return project


def test_the_documented_example_runs_in_a_shop_project(shop_project: Path) -> None:
    """The pages' actions and tests pass through the entry point; the wrong one fails."""
    result = run_pytest(shop_project)
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\b1 failed, 4 passed\b", summary), result.stdout + result.stderr
    assert "FAILED tests/test_wrong.py::test_wrong_tier" in result.stdout


def test_without_pytest_asyncio_the_fixtures_say_what_to_install(tmp_path: Path) -> None:
    """No pytest-asyncio: a test asking for a fixture errors with the install line."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pytest_asyncio.py").write_text("raise ImportError('not installed')\n")
    project = tmp_path / "shop"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "test_store.py").write_text(
        "def test_store(personalize_store):\n    assert personalize_store\n", encoding="utf-8"
    )
    # pytest-asyncio's own plugin cannot load either: -p no:asyncio, as if not installed.
    result = run_pytest(project, "-p", "no:asyncio", PYTHONPATH=str(shadow))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout  # in the fixture, before the test body
    assert 'pip install "rasa-personalize[testing]"' in result.stdout
