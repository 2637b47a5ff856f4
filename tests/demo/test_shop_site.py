"""The demo shop's server: the page it renders for a customer or a guest, and what it refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sanic import Sanic
from typer.testing import CliRunner

from rasa_personalize.cli.main import app as cli_app
from rasa_personalize.demo.assistant import RasaSetup
from rasa_personalize.demo.shop_site import (
    IDENTITY_SECRET_VARIABLE,
    ShopPage,
    create_shop_app,
    logged_in_customer,
    main,
    render_shop_page,
    script_json,
    socketio_channel_problem,
    widget_missing,
)
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import sign_user_id, user_hash_matches

SECRET = "shop-identity-secret-0123456789"
PAGE = ShopPage("http://127.0.0.1:5005", SECRET, ("demo-loyal", "demo-new"))


def widget_props_of(page_html: str) -> dict[str, Any]:
    """The props the page's data block hands to ``WebChat.default``."""
    found = re.search(
        r'<script type="application/json" id="webchat-props">(.*?)</script>', page_html
    )
    assert found is not None, page_html
    props: dict[str, Any] = json.loads(found.group(1))
    return props


@pytest.fixture
def app(tmp_path: Path) -> Sanic[Any, Any]:
    bundle = tmp_path / "index.js"
    bundle.write_text("window.WebChat = {};\n")
    return create_shop_app(PAGE, bundle)


async def test_a_signed_in_customers_page_carries_their_id_and_its_hash(
    app: Sanic[Any, Any],
) -> None:
    """customData is the id and sign_user_id of it; the secret itself never reaches the page."""
    _, answer = await app.asgi_client.get("/", params={"customer": "demo-loyal"})

    assert answer.status == 200
    assert answer.headers["cache-control"] == "no-store"
    data = widget_props_of(answer.text)["customData"]
    assert data == {"user_id": "demo-loyal", "user_hash": sign_user_id(SECRET, "demo-loyal")}
    assert user_hash_matches(SECRET, "demo-loyal", data["user_hash"])
    assert SECRET not in answer.text
    assert '<strong id="customer">demo-loyal</strong>' in answer.text
    assert '<a href="/">Sign out</a>' in answer.text


async def test_a_guests_page_sends_no_identity(app: Sanic[Any, Any]) -> None:
    """No login: 'guest', an empty customData, and sign-in links for the shop's accounts."""
    _, answer = await app.asgi_client.get("/")

    props = widget_props_of(answer.text)
    assert props["customData"] == {}
    assert props["socketUrl"] == "http://127.0.0.1:5005"
    assert props["initPayload"] == "/greet"
    assert '<strong id="customer">guest</strong>' in answer.text
    assert '<a href="/?customer=demo-loyal">demo-loyal</a>' in answer.text


@pytest.mark.parametrize(
    "customer",
    [
        "</script><script>alert(1)</script>",  # markup: would end the widget's script
        "demo loyal",  # a space
        "-leading-dash",  # must start with a letter or digit
        "a" * 65,  # longer than a login name
        "démo",  # not ASCII
    ],
)
async def test_a_customer_that_is_no_login_name_is_refused(
    app: Sanic[Any, Any], customer: str
) -> None:
    """A 400 that says what a login name is, and nothing of the value is echoed."""
    _, answer = await app.asgi_client.get("/", params={"customer": customer})

    assert answer.status == 400
    assert "customer must be 1 to 64 letters, digits" in answer.text
    assert customer not in answer.text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),  # no parameter: a guest
        ("  ", None),  # empty: a guest
        (" demo-loyal ", "demo-loyal"),  # trimmed, as sign_user_id trims
        ("c.1842@shop+eu_1", "c.1842@shop+eu_1"),  # every allowed character
    ],
)
def test_logged_in_customer(raw: str | None, expected: str | None) -> None:
    """Who a request is signed in as."""
    assert logged_in_customer(raw) == expected


def test_logged_in_customer_refuses_markup() -> None:
    """The error says what is allowed."""
    with pytest.raises(InvalidInputError, match="starting with a letter or digit"):
        logged_in_customer("<b>")


def test_script_json_cannot_close_the_script_element() -> None:
    """'<', '>' and '&' become escapes, and the JSON still reads back the same."""
    value = {"title": "</script><!-- & -->"}
    text = script_json(value)

    assert "<" not in text
    assert ">" not in text
    assert "&" not in text
    assert json.loads(text) == value


def test_the_rendered_page_keeps_the_widget_props_inside_its_script() -> None:
    """An account name is escaped in the header links (it is also validated on start)."""
    page = ShopPage("http://127.0.0.1:5005", SECRET, ("a&b",))
    rendered = render_shop_page(page, None)

    assert ">a&amp;b</a>" in rendered
    assert rendered.count("<script") == 3  # the props' data block and two scripts


async def test_the_widget_script_is_served_as_javascript(app: Sanic[Any, Any]) -> None:
    """The bundle from web/node_modules, under /static/webchat.js."""
    _, answer = await app.asgi_client.get("/static/webchat.js")

    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.text == "window.WebChat = {};\n"


def test_without_the_widget_installed_the_reason_names_the_make_target(tmp_path: Path) -> None:
    """No web/node_modules: say how to get it."""
    assert widget_missing(tmp_path) == (
        "the chat widget is not installed "
        "(web/node_modules/rasa-webchat/lib/index.js): run `make web-widget`"
    )


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_the_shops_process_refuses_to_start_without_a_usable_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], secret: str | None
) -> None:
    """Exit 2 with the variable's name, never its value."""
    if secret is None:
        monkeypatch.delenv(IDENTITY_SECRET_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(IDENTITY_SECRET_VARIABLE, secret)
    with pytest.raises(SystemExit) as stopped:
        main(["--rasa-url", "http://127.0.0.1:5005"])

    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"{IDENTITY_SECRET_VARIABLE} must be set" in error
    assert "too-short" not in error


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("False", False),  # python-socketio < 5.10: enter_room runs as Rasa calls it
        ("True", True),  # 5.10 and later: a coroutine Rasa never awaits
    ],
)
def test_the_rasa_environments_socketio_is_checked(
    tmp_path: Path, answer: str, problem: bool
) -> None:
    """The check asks the Rasa environment's own interpreter, and names the fix."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(f"#!/bin/sh\necho {answer}\n")
    python.chmod(0o755)
    setup = RasaSetup(tmp_path, bin_dir / "rasa", tmp_path / "model.tar.gz")

    found = socketio_channel_problem(setup)

    if problem:
        assert found is not None
        assert "'python-socketio>=5.8,<5.10'" in found
    else:
        assert found is None


async def test_the_page_runs_only_the_shops_own_scripts_and_talks_only_to_rasa(
    app: Sanic[Any, Any],
) -> None:
    """The policy: scripts from the shop alone (the props are a data block, not a script),
    connections to Rasa over HTTP and WebSocket, and no third-party font or style."""
    _, answer = await app.asgi_client.get("/")
    policy = dict(
        directive.split(" ", 1)
        for directive in answer.headers["content-security-policy"].split("; ")
    )
    _, script = await app.asgi_client.get("/static/shop.js")

    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self' http://127.0.0.1:5005 ws://127.0.0.1:5005"
    assert policy["style-src"] == "'self' 'unsafe-inline'"
    assert policy["default-src"] == "'self'"
    assert policy["font-src"] == "'self' data:"
    assert script.status == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert 'getElementById("webchat-props")' in script.text
    assert "<script>" not in answer.text  # no inline script to allow


def test_personalize_demo_web_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a project with Rasa set up: exit 1 and the make target to run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")

    result = CliRunner().invoke(cli_app, ["demo-web", "--port", "8765"])

    assert result.exit_code == 1
    assert "the web demo needs Rasa: run `make rasa-train` first" in result.output
