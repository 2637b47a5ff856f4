"""The shopper's side in a real browser: the demo shop's page (``make demo-web``), Rasa
Webchat on it, Rasa's socket.io channel, the action server and a seeded store.

Playwright drives Debian's chromium (``make browser-tools`` installs it and the widget;
Playwright's own browser download is never used). Without chromium, Playwright or the
widget these tests skip, except in CI (``CI=true``), where they fail. With
``PERSONALIZE_TEST_SCREENSHOTS=folder`` the chats are also saved there as
``demo-web.png`` and ``demo-web-guest.png`` (the pictures in docs/web-demo.md); they
always go to the tests' own temporary folders.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from rasa_personalize.demo.assistant import RasaSetup, RunningAssistant
from rasa_personalize.demo.shop_site import (
    ShopPage,
    ShopSite,
    shop_origins,
    socketio_channel_problem,
    widget_missing,
)
from rasa_personalize.processes import free_port
from tests.e2e.test_conversations import MODEL_VARIABLE, PROJECT, SECRET, _seed

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "chromium"
SCREENSHOTS_VARIABLE = "PERSONALIZE_TEST_SCREENSHOTS"
# Rasa answers a turn in about a second here; the widget then types each message out.
TURN_TIMEOUT_MS = 60_000


def unavailable(reason: str) -> NoReturn:
    """Skip without what the browser tests need, but fail in CI, which must run them."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI must run the browser tests, but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class WebShop:
    """Rasa with its action server, and the shop's page that talks to them."""

    assistant: RunningAssistant
    site: ShopSite


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, and Playwright to drive it (checked before Rasa starts)."""
    executable = shutil.which(CHROMIUM)
    if executable is None:
        unavailable("chromium is not installed (Debian package chromium: `make browser-tools`)")
    if importlib.util.find_spec("playwright") is None:
        unavailable("Playwright is not installed (`make install` adds the dev extras)")
    return executable


@pytest.fixture(scope="module")
def shop(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebShop]:
    """The seeded e2e store behind Rasa, the action server and the shop's page."""
    model = os.environ.get(MODEL_VARIABLE)
    setup = RasaSetup.find(PROJECT, Path(model)) if model else RasaSetup.find(PROJECT)
    if setup is None:
        unavailable("there is no Rasa environment or trained model: run `make rasa-train`")
    missing = widget_missing(PROJECT) or socketio_channel_problem(setup)
    if missing is not None:
        unavailable(missing)
    folder = tmp_path_factory.mktemp("web")
    url = f"sqlite:///{folder / 'shop.db'}"
    _seed(url, folder / "models")
    port = free_port()
    assistant = RunningAssistant(
        setup,
        database_url=url,
        log_dir=folder,
        extra_env={
            "PERSONALIZE_SECRET_KEY": SECRET,
            "PERSONALIZE_MODEL_DIR": str(folder / "models"),
        },
        cors_origins=shop_origins(port),
    )
    page = ShopPage(assistant.rasa_url, assistant.identity_secret, ("demo-loyal",))
    site = ShopSite(page, project_dir=PROJECT, log_dir=folder, port=port)
    with assistant, site:
        yield WebShop(assistant, site)


@pytest.fixture(scope="module")
def browser(chromium: str, shop: WebShop) -> Iterator[Browser]:
    """Headless chromium driven by Playwright. After the shop: Playwright's sync API keeps
    an event loop in this thread, where the seeding's ``asyncio.run`` would then refuse to
    run."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415  # may be missing

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no stored chat session) with one page."""
    context = browser.new_context(viewport={"width": 1200, "height": 820})
    try:
        yield context.new_page()
    finally:
        context.close()


def open_chat(page: Page) -> None:
    """Click the widget's launcher, as a shopper does (the widget shows once connected)."""
    page.click(".rw-launcher", timeout=TURN_TIMEOUT_MS)
    page.wait_for_selector(".rw-conversation-container", timeout=TURN_TIMEOUT_MS)


def bot_texts(page: Page) -> list[str]:
    """Every text bubble of the bot, in order."""
    texts: list[str] = page.locator(".rw-response .rw-message-text").all_inner_texts()
    return [" ".join(text.split()) for text in texts]


def wait_for_bot_text(page: Page, words: str) -> str:
    """The bot's text bubble that contains ``words``, once the widget shows it."""
    page.locator(".rw-response .rw-message-text", has_text=words).first.wait_for(
        timeout=TURN_TIMEOUT_MS
    )
    return next(text for text in bot_texts(page) if words in text)


def send(page: Page, text: str) -> None:
    """Type ``text`` into the widget and press Enter."""
    page.fill(".rw-new-message", text)
    page.press(".rw-new-message", "Enter")


def card_titles(page: Page) -> list[str]:
    """The titles of the carousel's cards, once the carousel shows (at least one card)."""
    page.wait_for_selector(".rw-carousel-card", timeout=TURN_TIMEOUT_MS)
    titles: list[str] = page.locator(".rw-carousel-card-title").all_inner_texts()
    return [title.strip() for title in titles]


def session_id(page: Page) -> str:
    """The conversation's id: Rasa's sender id, kept by the widget in session storage."""
    stored = json.loads(page.evaluate("window.sessionStorage.getItem('chat_session')"))
    return str(stored["session_id"])


def save_screenshot(page: Page, folder: Path, name: str) -> None:
    """The page as the shopper sees it, into ``folder`` and the asked-for one, if any."""
    page.screenshot(path=str(folder / name))
    wanted = os.environ.get(SCREENSHOTS_VARIABLE)
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, Path(wanted) / name)


def test_the_page_carries_the_signature_and_never_the_secret(shop: WebShop, tab: Page) -> None:
    """Signed in as demo-loyal: the header names them, the widget's customData holds their
    id and user_hash, and the identity secret is nowhere in what the browser gets."""
    tab.goto(shop.site.page_url("demo-loyal"))

    assert tab.inner_text("#customer") == "demo-loyal"
    html = tab.content()
    assert '"user_id": "demo-loyal"' in html
    assert '"user_hash": "' in html
    assert shop.assistant.identity_secret not in html


def test_a_signed_in_gold_member_is_welcomed_back_and_sees_product_cards(
    shop: WebShop, tab: Page, tmp_path: Path
) -> None:
    """demo-loyal opens the chat: welcomed back, asked about their data (clicks Yes), and
    their picks come as a carousel of cards, the same products Rasa's tracker holds."""
    tab.goto(shop.site.page_url("demo-loyal"))
    open_chat(tab)

    greeting = wait_for_bot_text(tab, "Welcome back")
    wait_for_bot_text(tab, "may I use what you look at and buy here")
    tab.click(".rw-reply >> text=Yes")
    wait_for_bot_text(tab, "Thank you!")
    send(tab, "what do you recommend?")
    titles = card_titles(tab)
    spoken = wait_for_bot_text(tab, titles[0])  # the list said after the cards

    slots = shop.assistant.slots(session_id(tab))
    assert greeting.startswith("Welcome back!")
    assert (slots["customer_segment"], slots["loyalty_tier"]) == ("loyal", "gold")
    assert slots["recommendation_source"] == "als"
    assert titles == [item["title"] for item in slots["recommended_products"]]
    assert all(title in spoken for title in titles)
    # The picture in the docs: the cards and the words that come with them.
    tab.locator(".rw-carousel-card").first.evaluate(
        "card => card.scrollIntoView({block: 'center'})"
    )
    save_screenshot(tab, tmp_path, "demo-web.png")


def test_a_guest_is_a_new_visitor_and_sees_cards_of_what_they_asked_for(
    shop: WebShop, tab: Page, tmp_path: Path
) -> None:
    """No login: 'guest' on the page, no customData, the new visitor's welcome and
    question; the answer brings cards from that category."""
    tab.goto(shop.site.page_url())
    assert tab.inner_text("#customer") == "guest"
    assert '"customData": {}' in tab.content()
    open_chat(tab)

    wait_for_bot_text(tab, "welcome to our shop")
    wait_for_bot_text(tab, "What are you shopping for today?")
    send(tab, "running shoes")
    titles = card_titles(tab)
    spoken = wait_for_bot_text(tab, titles[0])

    slots = shop.assistant.slots(session_id(tab))
    assert "Welcome back" not in " ".join(bot_texts(tab))
    assert (slots["customer_segment"], slots["loyalty_tier"]) == ("new_visitor", "none")
    assert slots["category"] == "running"
    assert titles == [item["title"] for item in slots["recommended_products"]]
    assert all(title in spoken for title in titles)
    save_screenshot(tab, tmp_path, "demo-web-guest.png")


def test_signing_out_starts_a_new_conversation_as_a_guest(shop: WebShop, tab: Page) -> None:
    """demo-loyal chats, then signs out in the same tab: the widget starts a conversation
    of its own, and the guest is greeted as a new visitor, not as demo-loyal."""
    tab.goto(shop.site.page_url("demo-loyal"))
    open_chat(tab)
    wait_for_bot_text(tab, "Welcome back")
    signed_in = session_id(tab)

    tab.click("text=Sign out")
    tab.wait_for_url(shop.site.page_url())
    open_chat(tab)
    wait_for_bot_text(tab, "welcome to our shop")

    as_guest = session_id(tab)
    assert as_guest != signed_in
    assert "Welcome back" not in " ".join(bot_texts(tab))
    assert shop.assistant.slots(as_guest)["customer_segment"] == "new_visitor"
    assert shop.assistant.slots(signed_in)["customer_segment"] == "loyal"
