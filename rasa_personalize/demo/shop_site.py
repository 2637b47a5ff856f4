"""The demo shop's web page: a tiny shop backend that puts the chat widget on its page.

It does what a real shop's server does for its chat widget, and no more. It knows who is
logged in (here ``?customer=demo-loyal`` stands in for a login; no parameter is a guest),
renders the page with that customer's id and its ``user_hash``
(:func:`rasa_personalize.identity.sign_user_id`) in the widget's ``customData``, and keeps
the identity secret on the server. The widget, Rasa Webchat from the npm registry
(``make web-widget``), talks to Rasa's socket.io channel, which hands ``customData`` on as
the message metadata (``metadata_key`` in ``credentials.yml``), where the action server
verifies it.

``personalize demo-web`` runs the page beside Rasa and the action server
(:func:`run_web_demo`); ``python -m rasa_personalize.demo.shop_site`` is the shop's own
process, which reads the identity secret from ``PERSONALIZE_IDENTITY_SECRET``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from sanic import Request, Sanic, response
from sanic.response import HTTPResponse

from rasa_personalize.demo.assistant import RasaSetup, RunningAssistant
from rasa_personalize.errors import ConfigurationError, InvalidInputError, PersonalizeError
from rasa_personalize.identity import sign_user_id
from rasa_personalize.processes import ServerProcess, free_port

if TYPE_CHECKING:
    from rich.console import Console

    from rasa_personalize.settings import Settings

# The standalone bundle of the pinned Rasa Webchat (web/package.json), React included.
WIDGET_BUNDLE: Final = Path("web/node_modules/rasa-webchat/lib/index.js")
WIDGET_ROUTE: Final = "/static/webchat.js"
# Mounts the widget with the props the server rendered into the page as a JSON data block:
# a script of its own, so that the page runs no inline script (see content_security_policy).
SHOP_SCRIPT_ROUTE: Final = "/static/shop.js"
SHOP_SCRIPT: Final = """\
const props = JSON.parse(document.getElementById("webchat-props").textContent);
// A conversation belongs to whoever was signed in when it began (Rasa keeps a signed
// session's customer): after a sign-in, a sign-out or another login in this tab, the
// widget starts a new conversation instead of carrying on the previous one.
const owner = props.customData.user_id || "";
if (sessionStorage.getItem("shop_chat_owner") !== owner) {
  sessionStorage.removeItem("chat_session");
  sessionStorage.setItem("shop_chat_owner", owner);
}
WebChat.default(props, document.getElementById("webchat"));
"""
IDENTITY_SECRET_VARIABLE: Final = "PERSONALIZE_IDENTITY_SECRET"  # noqa: S105  # its name
MIN_SECRET_LENGTH: Final = 16
# The payload the widget sends when the chat opens: the assistant greets first.
GREETING_PAYLOAD: Final = "/greet"
# A login name of the shop; anything else in ?customer= is refused, not escaped and used.
_CUSTOMER_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


@dataclass(frozen=True)
class ShopPage:
    """What the shop's server renders its pages with.

    ``accounts`` are offered as "sign in as" links; ``identity_secret`` only ever signs ids
    on the server (it is kept out of ``repr`` so that no log line shows it).
    """

    rasa_url: str
    identity_secret: str = field(repr=False)
    accounts: tuple[str, ...] = ()


def logged_in_customer(raw: str | None) -> str | None:
    """The customer a request is logged in as: ``?customer=`` of the demo, None for a guest.

    Raises:
        InvalidInputError: the value is no login name of this shop (1 to 64 letters,
            digits and ``. _ @ + -``, starting with a letter or digit).
    """
    if raw is None or not raw.strip():
        return None
    customer = raw.strip()
    if not _CUSTOMER_ID.fullmatch(customer):
        raise InvalidInputError(
            "customer must be 1 to 64 letters, digits or '. _ @ + -', "
            "starting with a letter or digit"
        )
    return customer


def widget_custom_data(identity_secret: str, customer: str | None) -> dict[str, str]:
    """The widget's ``customData``: the logged-in id with its ``user_hash``; empty for a
    guest, who is then known by the conversation alone."""
    if customer is None:
        return {}
    return {"user_id": customer, "user_hash": sign_user_id(identity_secret, customer)}


def widget_props(page: ShopPage, customer: str | None) -> dict[str, Any]:
    """The Rasa Webchat props of one page, as JSON-able values."""
    return {
        "socketUrl": page.rasa_url,
        "socketPath": "/socket.io/",
        "customData": widget_custom_data(page.identity_secret, customer),
        "initPayload": GREETING_PAYLOAD,
        "title": "Demo Shop",
        "subtitle": "Shopping assistant",
        "inputTextFieldHint": "Ask about offers or products...",
        # Per tab: a new tab (or another customer's login in a new browser) starts afresh.
        "params": {"storage": "session"},
        # Rules are a Botfront server feature; without them the widget shows at once.
        "withRules": False,
    }


def script_json(value: object) -> str:
    """``value`` as JSON that cannot end the ``<script>`` element it is written into."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _account_links(page: ShopPage, customer: str | None) -> str:
    if customer is not None:
        return '<a href="/">Sign out</a>'
    links = " ".join(
        f'<a href="/?{html.escape(urlencode({"customer": account}))}">{html.escape(account)}</a>'
        for account in page.accounts
    )
    return f"Sign in as {links}" if links else ""


def content_security_policy(rasa_url: str) -> str:
    """What the shop's page may load: its own scripts, and Rasa for the widget's socket.

    Also keeps the widget's stylesheet from fetching its web font from a third party,
    which would tell that party about every visitor of the shop.
    """
    socket_url = re.sub(r"^http", "ws", rasa_url)
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            # React sets style attributes; the widget ships its CSS as <style> elements.
            "style-src 'self' 'unsafe-inline'",
            # The widget's icon fonts are data: URLs inside its bundle.
            "font-src 'self' data:",
            "img-src 'self' data:",
            f"connect-src 'self' {rasa_url} {socket_url}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def render_shop_page(page: ShopPage, customer: str | None) -> str:
    """The shop's page for ``customer`` (None: a guest), with the chat widget on it."""
    who = html.escape(customer) if customer is not None else "guest"
    status = "Signed in as" if customer is not None else "Browsing as"
    props = script_json(widget_props(page, customer))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo Shop</title>
<link rel="icon" href="data:,">
<style>
  body {{ margin: 0; font-family: system-ui, sans-serif; color: #1f2933; background: #f7f7f4; }}
  header {{ display: flex; align-items: center; justify-content: space-between;
            padding: 14px 28px; background: #12372a; color: #fff; }}
  header a {{ color: #cde8d6; margin-left: 8px; }}
  .shop-name {{ font-size: 1.3rem; font-weight: 700; }}
  main {{ max-width: 640px; padding: 32px 28px; line-height: 1.5; }}
  /* The catalogue has no product pictures: cards without the empty picture box. */
  .rw-carousel-card-image:not([style]) {{ display: none !important; }}
  .rw-carousel-container, .rw-carousel-card {{ min-height: 0 !important; height: auto !important; }}
  .rw-carousel-arrow {{ top: 38px !important; }}
</style>
</head>
<body>
<header>
  <span class="shop-name">Demo Shop</span>
  <span class="shop-account">{status} <strong id="customer">{who}</strong>
    <span class="shop-links">{_account_links(page, customer)}</span></span>
</header>
<main>
  <h1>Welcome to the Demo Shop</h1>
  <p>Running shoes, kitchenware, electronics and more. Open the chat in the corner and ask
  the assistant for offers or suggestions: it knows you when you are signed in.</p>
</main>
<div id="webchat"></div>
<script type="application/json" id="webchat-props">{props}</script>
<script src="{WIDGET_ROUTE}"></script>
<script src="{SHOP_SCRIPT_ROUTE}"></script>
</body>
</html>
"""


def create_shop_app(page: ShopPage, widget_bundle: Path) -> Sanic[Any, Any]:
    """The shop's web server: the page at ``/``, the widget's script, and ``/health``."""
    app: Sanic[Any, Any] = Sanic("demo_shop")
    app.config.MOTD = False

    @app.get("/")
    async def shop_page(request: Request) -> HTTPResponse:
        try:
            customer = logged_in_customer(request.args.get("customer"))
        except InvalidInputError as error:
            return response.text(f"Bad request: {error}\n", status=400)
        headers = {
            # The page carries a per-customer signature: no cache may hand it to another.
            "Cache-Control": "no-store",
            "Content-Security-Policy": content_security_policy(page.rasa_url),
        }
        return response.html(render_shop_page(page, customer), headers=headers)

    @app.get(SHOP_SCRIPT_ROUTE)
    async def shop_script(_request: Request) -> HTTPResponse:
        return response.text(SHOP_SCRIPT, content_type="text/javascript; charset=utf-8")

    @app.get(WIDGET_ROUTE)
    async def widget_script(_request: Request) -> HTTPResponse:
        return await response.file(widget_bundle, mime_type="text/javascript")

    @app.get("/health")
    async def health(_request: Request) -> HTTPResponse:
        return response.json({"status": "ok"})

    return app


def shop_origins(port: int) -> tuple[str, ...]:
    """The browser origins of the shop's page on ``port``: what Rasa must allow (CORS)."""
    return (f"http://127.0.0.1:{port}", f"http://localhost:{port}")


class ShopSite:
    """The shop's server as a child process on a loopback port.

    The identity secret reaches it through its environment, never its command line
    (which any user of the machine can read).
    """

    def __init__(
        self,
        page: ShopPage,
        *,
        project_dir: Path,
        log_dir: Path,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "rasa_personalize.demo.shop_site",
            "--port",
            str(self.port),
            "--rasa-url",
            page.rasa_url,
            "--widget",
            str(project_dir / WIDGET_BUNDLE),
        ]
        for account in page.accounts:
            command += ["--account", account]
        self._process = ServerProcess(
            command,
            f"{self.url}/health",
            env={**os.environ, IDENTITY_SECRET_VARIABLE: page.identity_secret},
            log_path=log_dir / "shop.log",
            cwd=project_dir,
        )

    def page_url(self, customer: str | None = None) -> str:
        """The shop's page, logged in as ``customer`` (None: a guest)."""
        query = f"?{urlencode({'customer': customer})}" if customer is not None else ""
        return f"{self.url}/{query}"

    @property
    def running(self) -> bool:
        """Whether the shop's server still runs."""
        return self._process.running

    def start(self) -> ShopSite:
        """Start the shop's server and wait until it answers."""
        self._process.start(timeout_s=60)
        return self

    def stop(self) -> None:
        """Stop the shop's server."""
        self._process.stop()

    def __enter__(self) -> ShopSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# Rasa 3.6 calls AsyncServer.enter_room without await: from python-socketio 5.10 on it is a
# coroutine, the widget's conversation never joins its room, and no answer reaches it.
_ENTER_ROOM_IS_COROUTINE: Final = (
    "import inspect, socketio; print(inspect.iscoroutinefunction(socketio.AsyncServer.enter_room))"
)


def socketio_channel_problem(setup: RasaSetup) -> str | None:
    """Why Rasa's socket.io channel in ``setup``'s environment would never answer a chat
    widget, or None when it can."""
    python = setup.rasa_executable.parent / "python"
    checked = subprocess.run(  # noqa: S603  # the Rasa environment's own interpreter
        [str(python), "-c", _ENTER_ROOM_IS_COROUTINE],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if checked.returncode == 0 and checked.stdout.strip() == "False":
        return None
    return (
        "Rasa 3.6's socket.io channel needs python-socketio < 5.10 in the Rasa environment "
        "(newer ones never deliver its answers to a widget): run "
        f"`{python} -m pip install 'python-socketio>=5.8,<5.10'`"
    )


def widget_missing(project_dir: Path) -> str | None:
    """Why the widget cannot be served from ``project_dir``, or None when it can."""
    if (project_dir / WIDGET_BUNDLE).is_file():
        return None
    return f"the chat widget is not installed ({WIDGET_BUNDLE}): run `make web-widget`"


def run_web_demo(
    settings: Settings,
    *,
    console: Console,
    project_dir: Path,
    port: int,
    accounts: Sequence[str],
) -> None:
    """Serve the shop's page on ``port`` beside Rasa and the action server, until Ctrl-C
    (or SIGTERM); the three servers stop with it. Their logs stay in a temporary folder."""
    setup = RasaSetup.find(project_dir)
    if setup is None:
        raise PersonalizeError("the web demo needs Rasa: run `make rasa-train` first")
    missing = widget_missing(project_dir) or socketio_channel_problem(setup)
    if missing is not None:
        raise PersonalizeError(missing)
    log_dir = Path(tempfile.mkdtemp(prefix="personalize-web-"))
    assistant = RunningAssistant(
        setup, database_url=settings.database_url, log_dir=log_dir, cors_origins=shop_origins(port)
    )
    page = ShopPage(assistant.rasa_url, assistant.identity_secret, tuple(accounts))
    shop = ShopSite(page, project_dir=project_dir, log_dir=log_dir, port=port)
    console.print(
        "Starting the action server, Rasa (loading the model takes a while) and the shop; "
        f"logs in {log_dir}"
    )
    # The servers run in sessions of their own, so a signal to this process alone must
    # still stop them: SIGTERM unwinds like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        # Started here, not with `with`: an interrupt while Rasa loads must stop the
        # servers already started too (stopping one that never started does nothing).
        assistant.start()
        shop.start()
        console.print(f"The demo shop, as a guest: [bold]{shop.page_url()}[/bold]")
        for account in accounts:
            console.print(f"  signed in as {account}: {shop.page_url(account)}")
        console.print("Open the chat in the page's corner. Ctrl-C stops everything.")
        while shop.running:
            time.sleep(0.5)
        raise PersonalizeError(f"the shop's server stopped (log: {log_dir / 'shop.log'})")
    except KeyboardInterrupt:
        return
    finally:
        shop.stop()
        assistant.stop()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _secret_from_environment() -> str:
    secret = os.environ.get(IDENTITY_SECRET_VARIABLE, "")
    if len(secret) < MIN_SECRET_LENGTH:
        # Never quote the value.
        raise ConfigurationError(
            f"{IDENTITY_SECRET_VARIABLE} must be set to the action server's identity secret "
            f"(at least {MIN_SECRET_LENGTH} characters): the shop signs its customers with it"
        )
    return secret


def main(argv: Sequence[str] | None = None) -> int:
    """The shop's server process: ``python -m rasa_personalize.demo.shop_site``."""
    parser = argparse.ArgumentParser(
        prog="python -m rasa_personalize.demo.shop_site",
        description="The demo shop's page with the chat widget "
        f"(the identity secret comes from ${IDENTITY_SECRET_VARIABLE}).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--rasa-url", required=True, help="Rasa's URL as the browser reaches it")
    parser.add_argument("--widget", type=Path, default=WIDGET_BUNDLE, help="the widget bundle")
    parser.add_argument(
        "--account", action="append", default=[], help="offer a sign-in as (repeatable)"
    )
    arguments = parser.parse_args(argv)
    try:
        secret = _secret_from_environment()
        for account in arguments.account:
            logged_in_customer(account)
    except PersonalizeError as error:
        parser.error(str(error))
    if not arguments.widget.is_file():
        parser.error(f"no widget bundle at {arguments.widget}: run `make web-widget`")
    page = ShopPage(arguments.rasa_url, secret, tuple(arguments.account))
    app = create_shop_app(page, arguments.widget)
    app.run(host=arguments.host, port=arguments.port, single_process=True, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
