"""Real conversations: Rasa 3.6 (own environment) + our action server + a seeded store.

Each test talks to Rasa's REST channel with ``metadata.user_id`` and its ``user_hash`` like a
shop's chat widget for a logged-in customer (the action server runs with an identity
secret) and checks the bot's actual words, then reads slots from Rasa's tracker API.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rasa_personalize.clock import utc_now
from rasa_personalize.demo.assistant import RasaSetup, RunningAssistant
from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.identity import customer_key, sign_user_id
from rasa_personalize.recommend.training import train_from_store
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret-key-0123456789"
# Another trained model to talk to (a candidate being trained elsewhere); default: the demo's.
MODEL_VARIABLE = "PERSONALIZE_TEST_RASA_MODEL"


def _seed(url: str, model_dir: Path) -> None:
    async def job() -> None:
        store = SqlStore(url, StoreTimeouts(statement_s=None))
        try:
            async with store.sessions.begin() as session:
                await seed_demo_shop(
                    session,
                    DemoShopConfig(customers=300, products=120, interactions=8000),
                    secret_key=SECRET,
                    now=utc_now(),
                )
                await rebuild_profile_metrics(session)
            await train_from_store(store, model_dir, precompute=True)
        finally:
            await store.dispose()

    upgrade(url)
    asyncio.run(job())


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAssistant]:
    """Rasa and the action server on free loopback ports, over a freshly seeded store."""
    model = os.environ.get(MODEL_VARIABLE)
    setup = RasaSetup.find(PROJECT, Path(model)) if model else RasaSetup.find(PROJECT)
    if setup is None:
        reason = "no Rasa environment or trained model: run `make rasa-train`"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the e2e suite, but there is {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{folder / 'shop.db'}"
    _seed(url, folder / "models")
    running = RunningAssistant(
        setup,
        database_url=url,
        log_dir=folder,
        extra_env={
            "PERSONALIZE_SECRET_KEY": SECRET,
            "PERSONALIZE_MODEL_DIR": str(folder / "models"),
        },
    )
    with running:
        yield running


def conversation() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}"


def test_bargain_hunter_gets_the_discount_wording(assistant: RunningAssistant) -> None:
    """demo-bargain: greeted as a deal seeker, offered 15% off."""
    sender = conversation()
    assistant.say(sender, "hello", user_id="demo-bargain")
    offer = " ".join(assistant.say(sender, "do you have any offers for me?", "demo-bargain"))
    assert "15% off" in offer
    slots = assistant.slots(sender)
    assert slots["customer_segment"] == "price_sensitive"
    assert slots["offer_type"] == "discount"
    assert slots["discount_pct"] == 15


def test_gold_loyal_customer_gets_exclusive_access(assistant: RunningAssistant) -> None:
    """demo-loyal: welcomed back as a member, offered exclusive access."""
    sender = conversation()
    greeting = " ".join(assistant.say(sender, "hi there", user_id="demo-loyal"))
    offer = " ".join(assistant.say(sender, "any deals for me?", user_id="demo-loyal"))
    status = " ".join(assistant.say(sender, "what's my membership status?", "demo-loyal"))
    assert "Welcome back" in greeting
    assert "exclusive access" in offer
    assert "Gold member" in status
    slots = assistant.slots(sender)
    assert (slots["customer_segment"], slots["loyalty_tier"]) == ("loyal", "gold")
    assert slots["is_returning_customer"] is True


def test_lapsed_customer_is_missed_and_offered_ten_percent(assistant: RunningAssistant) -> None:
    """demo-lapsed: 'we missed you' and 10% off."""
    sender = conversation()
    greeting = " ".join(assistant.say(sender, "hello", user_id="demo-lapsed"))
    offer = " ".join(assistant.say(sender, "any offers?", user_id="demo-lapsed"))
    assert "missed you" in greeting
    assert "10% off" in offer


def test_unknown_customer_gets_the_generic_greeting(assistant: RunningAssistant) -> None:
    """Nobody in the store by that id: the new-visitor welcome and no special offer."""
    sender = conversation()
    greeting = " ".join(assistant.say(sender, "hello", user_id="someone-never-seen"))
    offer = " ".join(assistant.say(sender, "any offers for me?", user_id="someone-never-seen"))
    assert "welcome to our shop" in greeting
    assert "no special offer" in offer
    slots = assistant.slots(sender)
    assert slots["customer_segment"] == "new_visitor"
    assert slots["loyalty_tier"] == "none"


def catalogue(assistant: RunningAssistant) -> dict[str, tuple[str, str, bool]]:
    """sku -> (title, category, in stock) straight from the e2e store."""
    path = assistant.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT sku, title, category, in_stock FROM products").fetchall()
    return {sku: (title, category, bool(in_stock)) for sku, title, category, in_stock in rows}


def test_category_question_recommends_in_stock_products_of_that_category(
    assistant: RunningAssistant,
) -> None:
    """'Do you sell running shoes?' names in-stock running products from the catalogue."""
    sender = conversation()
    assistant.say(sender, "hi", user_id="demo-bargain")
    answer = " ".join(assistant.say(sender, "do you sell running shoes?", "demo-bargain"))
    shown = assistant.slots(sender)["recommended_products"]
    products = catalogue(assistant)
    assert shown, answer
    for item in shown:
        title, category, in_stock = products[item["sku"]]
        assert (category, in_stock) == ("running", True)
        assert title in answer
    assert "in running" in answer


def test_what_do_you_sell_names_the_catalogues_categories(assistant: RunningAssistant) -> None:
    """The demo shop's own action (actions/catalogue.py), served beside the plugin's."""
    sender = conversation()
    answer = " ".join(assistant.say(sender, "what do you sell?", user_id="demo-bargain"))
    in_stock = {category for _, category, stocked in catalogue(assistant).values() if stocked}
    assert answer.startswith("We sell ")
    named = [category for category in in_stock if category in answer]
    assert len(named) >= min(3, len(in_stock)), answer
    assert "because you" not in answer  # not product picks


def test_offer_then_yes_gives_personal_recommendations(assistant: RunningAssistant) -> None:
    """Accepting suggestions after an offer: products from the trained model, with a reason."""
    sender = conversation()
    assistant.say(sender, "hi", user_id="demo-loyal")
    assistant.say(sender, "do you have any offers for me?", user_id="demo-loyal")
    answer = " ".join(assistant.say(sender, "yes please", user_id="demo-loyal"))
    slots = assistant.slots(sender)
    assert slots["recommendation_source"] == "als"
    assert "because you bought" in answer
    for item in slots["recommended_products"]:
        assert item["title"] in answer


def test_liking_recommendations_is_stored_as_feedback(assistant: RunningAssistant) -> None:
    """A yes to the shown products becomes feedback interactions in the store."""
    path = assistant.database_url.removeprefix("sqlite:///")

    def feedback_count() -> int:
        with sqlite3.connect(path) as db:
            return int(
                db.execute("SELECT count(*) FROM interactions WHERE kind='feedback'").fetchone()[0]
            )

    before = feedback_count()
    sender = conversation()
    assistant.say(sender, "what do you recommend?", user_id="demo-lapsed")
    shown = assistant.slots(sender)["recommended_products"]
    reply = " ".join(assistant.say(sender, "yes", user_id="demo-lapsed"))
    assert "Great choice" in reply
    assert feedback_count() == before + len(shown)


@pytest.mark.parametrize(
    "forged",
    [
        {},  # no user_hash at all: what a visitor editing the widget's customData sends
        {"user_hash": "0" * 64},  # a wrong hash
    ],
)
def test_an_unsigned_claim_is_an_anonymous_visitor(
    assistant: RunningAssistant, forged: dict[str, str]
) -> None:
    """Claiming demo-loyal without its hash: new-visitor defaults, no feedback for demo-loyal."""
    path = assistant.database_url.removeprefix("sqlite:///")

    def feedback_of(external_id: str) -> int:
        with sqlite3.connect(path) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM interactions i JOIN customers c ON c.id = i.customer_id"
                    " WHERE i.kind = 'feedback' AND c.customer_key = ?",
                    (customer_key(SECRET, external_id),),
                ).fetchone()[0]
            )

    before = feedback_of("demo-loyal")
    sender = conversation()

    def say(text: str) -> str:
        return " ".join(
            assistant.say(sender, text, user_id="demo-loyal", signed=False, metadata=forged)
        )

    greeting = say("hi there")
    status = say("what's my membership status?")
    assert "Welcome back" not in greeting
    assert "Gold member" not in status
    # an unproven visitor may be a member: the tier 'none' is not claimed as a fact
    assert "can't see a loyalty membership for you" in status
    slots = assistant.slots(sender)
    assert (slots["customer_segment"], slots["loyalty_tier"]) == ("new_visitor", "none")
    assert slots["is_returning_customer"] is False
    say("what do you recommend?")
    assert assistant.slots(sender)["recommended_products"]
    assert "because you bought" not in say("yes")
    assert feedback_of("demo-loyal") == before
    # the anonymous visitor's 'yes' is stored under the conversation, as for any visitor
    assert feedback_of(sender) == len(assistant.slots(sender)["recommended_products"])


def say_raw(
    assistant: RunningAssistant, sender: str, text: str, user_id: str, input_channel: str
) -> list[dict[str, Any]]:
    """Everything Rasa's REST channel answers (text, buttons, attachments), as sent from
    ``input_channel`` (Rasa's REST channel takes the name from the request)."""
    payload = {
        "sender": sender,
        "message": text,
        "input_channel": input_channel,
        "metadata": {
            "user_id": user_id,
            "user_hash": sign_user_id(assistant.identity_secret, user_id),
        },
    }
    request = urllib.request.Request(
        f"{assistant.rasa_url}/webhooks/rest/webhook",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        messages: list[dict[str, Any]] = json.loads(answer.read())
    return messages


def tags_of(assistant: RunningAssistant, external_id: str) -> list[tuple[str, str]]:
    """(tag, source) of a customer's tags in the e2e store."""
    path = assistant.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT t.tag, t.source FROM customer_tags t JOIN customers c"
            " ON c.id = t.customer_id WHERE c.customer_key = ?",
            (customer_key(SECRET, external_id),),
        ).fetchall()
    return sorted((str(tag), str(source)) for tag, source in rows)


def test_new_visitor_is_asked_what_they_shop_for_and_the_answer_is_stored(
    assistant: RunningAssistant,
) -> None:
    """demo-new (signed, no history): asked, says running, which is stored as an interest."""
    sender = conversation()
    greeting = " ".join(assistant.say(sender, "hello", user_id="demo-new"))
    answer = " ".join(assistant.say(sender, "running shoes", user_id="demo-new"))

    assert "welcome to our shop" in greeting
    assert "What are you shopping for today?" in greeting
    assert "Noted: you're shopping for running." in answer
    assert "in running" in answer  # the picks follow the answer
    assert ("interested_in_running", "chat") in tags_of(assistant, "demo-new")


def test_an_anonymous_visitors_answer_stays_in_the_conversation(
    assistant: RunningAssistant,
) -> None:
    """No proof of who they are: asked too, but nothing is stored and nothing is claimed."""
    sender = conversation()

    def say(text: str) -> str:
        return " ".join(assistant.say(sender, text, user_id="demo-new", signed=False))

    greeting = say("hi")
    answer = say("something for the kitchen")

    assert "What are you shopping for today?" in greeting
    assert "Noted" not in answer
    assert "in kitchen" in answer
    assert assistant.slots(sender)["category"] == "kitchen"
    assert tags_of(assistant, sender) == []
    assert ("interested_in_kitchen", "chat") not in tags_of(assistant, "demo-new")


def test_a_category_turned_down_in_the_chat_leaves_the_recommendations(
    assistant: RunningAssistant,
) -> None:
    """demo-loyal says no more of the category their picks are full of: stored, confirmed,
    and the next picks hold none of it; asking for it brings it back for that request,
    and "I love ..." undoes the dislike."""
    products = catalogue(assistant)
    sender = conversation()

    def say(text: str) -> str:
        return " ".join(assistant.say(sender, text, user_id="demo-loyal"))

    say("what do you recommend?")
    before = [products[item["sku"]][1] for item in assistant.slots(sender)["recommended_products"]]
    # The category their picks hold most of (electronics, for this customer).
    category = max(sorted(set(before)), key=before.count)
    reply = say(f"stop showing me {category} stuff")
    picks = say("what do you recommend?")
    after = assistant.slots(sender)["recommended_products"]
    asked = say(f"show me {category}")
    asked_for = assistant.slots(sender)["recommended_products"]
    undone = say(f"actually I do like {category}")

    assert f"Got it: no more {category} in my suggestions" in reply
    assert after, picks
    assert all(products[item["sku"]][1] != category for item in after)
    assert all(item["title"] in picks for item in after)
    assert f"in {category}" not in picks
    assert f"like {category}" not in picks
    assert asked_for, asked
    assert all(products[item["sku"]][1] == category for item in asked_for), asked
    assert f"Noted: you like {category}." in undone
    tags = tags_of(assistant, "demo-loyal")
    assert (f"interested_in_{category}", "chat") in tags
    assert (f"not_interested_in_{category}", "chat") not in tags


def test_an_anonymous_visitors_dislike_is_not_stored_and_the_bot_says_so(
    assistant: RunningAssistant,
) -> None:
    """No proof of who they are: nothing stored for anyone, and an honest answer."""
    sender = conversation()
    reply = " ".join(
        assistant.say(sender, "stop showing me kitchen stuff", user_id="demo-new", signed=False)
    )

    assert "I can only remember what you like and don't like when you're signed in" in reply
    assert ("not_interested_in_kitchen", "chat") not in tags_of(assistant, "demo-new")
    assert tags_of(assistant, sender) == []


def test_lapsed_customer_gets_the_win_back_turn_before_anything_else(
    assistant: RunningAssistant,
) -> None:
    """demo-lapsed: missed, offered 10% at once, and a yes shows picks for them."""
    sender = conversation()
    greeting = assistant.say(sender, "hello", user_id="demo-lapsed")
    picks = " ".join(assistant.say(sender, "yes please", user_id="demo-lapsed"))

    assert "missed you" in greeting[0]
    assert "To welcome you back, you get 10% off your next order." in greeting[1]
    shown = assistant.slots(sender)["recommended_products"]
    assert shown
    assert all(item["title"] in picks for item in shown)


def test_bargain_hunter_hears_the_deal_first(assistant: RunningAssistant) -> None:
    """demo-bargain: the 15% comes with the greeting, before they ask."""
    sender = conversation()
    greeting = assistant.say(sender, "hi", user_id="demo-bargain")

    assert len(greeting) == 2
    assert "15% off" in greeting[1]
    assert "Would you like some product suggestions?" in greeting[1]


def test_unknown_consent_is_asked_once_and_the_answer_is_stored(
    assistant: RunningAssistant,
) -> None:
    """demo-loyal never answered: asked after the greeting, says yes (stored), not asked
    again when the first exchange ends."""
    sender = conversation()
    greeting = " ".join(assistant.say(sender, "hi there", user_id="demo-loyal"))
    answer = " ".join(assistant.say(sender, "yes", user_id="demo-loyal"))
    assistant.say(sender, "any deals for me?", user_id="demo-loyal")
    declined = " ".join(assistant.say(sender, "no thanks", user_id="demo-loyal"))

    assert "may I use what you look at and buy here" in greeting
    assert answer.startswith("Thank you!")
    assert assistant.slots(sender)["personalization_consent"] == "granted"
    assert "may I use" not in declined
    path = assistant.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        stored = db.execute(
            "SELECT purpose, granted, source FROM consent_states WHERE customer_key = ?"
            " ORDER BY purpose",
            (customer_key(SECRET, "demo-loyal"),),
        ).fetchall()
    assert stored == [("personalization", 1, "chat"), ("tracking", 1, "chat")]


def test_why_did_you_recommend_this_speaks_the_stored_reason(
    assistant: RunningAssistant,
) -> None:
    """The reason stored with the last picks, word for word."""
    sender = conversation()
    assistant.say(sender, "what do you recommend?", user_id="demo-bargain")
    why = assistant.say(sender, "why did you recommend these?", user_id="demo-bargain")

    reason = assistant.slots(sender)["recommendation_reason"]
    assert reason
    assert why == [f"I picked them {reason}."]


def test_status_gives_the_tier_and_no_points_the_store_does_not_hold(
    assistant: RunningAssistant,
) -> None:
    """demo-loyal is gold; there is no points balance in the data, so none is said."""
    sender = conversation()
    status = " ".join(assistant.say(sender, "what's my status?", user_id="demo-loyal"))
    points = " ".join(assistant.say(sender, "how many points do I have?", "demo-loyal"))

    assert status.startswith("You're a Gold member of our loyalty programme.")
    assert points == status
    assert "I can't see a points balance here" in points


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a person: where to find one
        ("I want to talk to a human", "customer service team"),
        # an order: honest that it cannot be done yet
        ("where is my order?", "I can't look up orders yet"),
        # anything else out of scope
        ("what's the weather like?", "I can't help with that yet"),
    ],
)
def test_what_the_assistant_cannot_do_is_said_not_recommended_around(
    assistant: RunningAssistant, text: str, expected: str
) -> None:
    """A handoff answer or an honest 'not yet', never product picks."""
    sender = conversation()
    answer = " ".join(assistant.say(sender, text, user_id="demo-bargain"))

    assert expected in answer
    assert not assistant.slots(sender)["recommended_products"]


def test_recommendations_are_cards_on_a_card_channel_and_text_elsewhere(
    assistant: RunningAssistant,
) -> None:
    """Through REST as socket.io: a generic-template carousel of the picks; as REST: text."""
    sender = conversation()
    as_widget = say_raw(assistant, sender, "what do you recommend?", "demo-bargain", "socketio")
    shown = assistant.slots(sender)["recommended_products"]
    plain = say_raw(assistant, conversation(), "what do you recommend?", "demo-bargain", "rest")

    cards = [m["attachment"] for m in as_widget if "attachment" in m]
    assert len(cards) == 1
    assert cards[0]["type"] == "template"
    assert cards[0]["payload"]["template_type"] == "generic"
    elements = cards[0]["payload"]["elements"]
    assert [e["title"] for e in elements] == [item["title"] for item in shown]
    assert [e["subtitle"] for e in elements] == [f"{item['price']:.2f}" for item in shown]
    assert all(e["buttons"][0]["title"] == "More like this" for e in elements)
    assert any("text" in m for m in as_widget)  # the spoken summary still comes
    assert not [m for m in plain if "attachment" in m]
    assert all(item["title"] in " ".join(m.get("text", "") for m in plain) for item in shown)


def test_dont_use_my_data_turns_personalization_off_at_once(
    assistant: RunningAssistant,
) -> None:
    """demo-loyal says no: confirmed, and the next offer is the visitor's, not gold's."""
    sender = conversation()
    assistant.say(sender, "hi there", user_id="demo-loyal")
    answer = " ".join(assistant.say(sender, "don't use my data", user_id="demo-loyal"))
    offer = " ".join(assistant.say(sender, "any deals for me?", user_id="demo-loyal"))
    summary = " ".join(assistant.say(sender, "what do you know about me?", "demo-loyal"))

    assert "won't use your data" in answer
    assert "exclusive access" not in offer
    slots = assistant.slots(sender)
    assert slots["personalization_consent"] == "denied"
    assert slots["loyalty_tier"] == "none"
    assert summary.startswith("Here is what I know about you: Your loyalty tier is gold")


def test_forget_me_asks_first_then_erases(assistant: RunningAssistant) -> None:
    """A verified customer says 'forget me', then yes: erased, and a stranger from then on."""
    sender = conversation()
    assistant.say(sender, "hello", user_id="demo-lapsed")
    question = " ".join(assistant.say(sender, "please forget me", user_id="demo-lapsed"))
    done = " ".join(assistant.say(sender, "yes", user_id="demo-lapsed"))
    summary = " ".join(assistant.say(sender, "what do you know about me?", "demo-lapsed"))

    assert "cannot be undone" in question
    assert "deleted your data" in done
    assert "don't have anything stored about you" in summary
    path = assistant.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        key = customer_key(SECRET, "demo-lapsed")
        assert db.execute(
            "SELECT COUNT(*) FROM customers WHERE customer_key = ?", (key,)
        ).fetchone() == (0,)


def test_rasa_still_answers_with_the_action_server_stopped(
    assistant: RunningAssistant,
) -> None:
    """Last, since it stops the action server: Rasa falls back and keeps talking."""
    assistant.stop_action_server()
    sender = conversation()
    greeting = assistant.say(sender, "hello", user_id="demo-loyal")
    offer = assistant.say(sender, "do you have any offers?", user_id="demo-loyal")
    assert greeting, "Rasa gave no answer without the action server"
    assert offer
    assert assistant.rasa.running
