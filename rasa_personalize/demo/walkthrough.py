"""``personalize demo``: the same conversation, played for each demo customer, side by side.

With the Rasa environment and a trained model (``make rasa-train``) it is a real
conversation: Rasa 3.6 and our action server on loopback ports, messages through Rasa's
REST channel with ``metadata.user_id`` and its ``user_hash`` (signed with the identity
secret the demo's action server verifies). Without them it falls back to a scripted walk over
the webhook alone, rendering the bot's answers from ``domain.yml`` by the same
conditional-variation rules that Rasa's response generator uses.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from rasa_personalize.demo.assistant import RasaSetup, RunningAssistant
from rasa_personalize.demo.generator import DEMO_CUSTOMERS
from rasa_personalize.errors import InvalidInputError, PersonalizeError
from rasa_personalize.identity import sign_user_id
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.settings import Settings
from rasa_personalize.testing import action_call, slots_from_events, tracker_state

WALKTHROUGH_CUSTOMERS = (*DEMO_CUSTOMERS, "someone-unknown")
# What the demo prints from the action server's /metrics at the end, by sample name.
METRICS_SUMMARY = {
    "personalize_action_seconds_count": "Actions answered (personalize_action_seconds)",
    "personalize_defaults_total": "Default answers by reason (personalize_defaults_total)",
    "personalize_recommendations_total": "Lists by source (personalize_recommendations_total)",
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Turn:
    """One scripted customer turn: what they say and what the bot does about it."""

    text: str
    intent: str
    action: str | None
    response: str


CONVERSATION = (
    "Hi there!",
    "Do you have any offers for me?",
    "yes please",
    "What's my membership status?",
    "bye",
)

SCRIPT = (
    Turn("Hi there!", "greet", "action_session_start", "utter_greet"),
    Turn(
        "Do you have any offers for me?",
        "ask_offers",
        "action_refresh_personalization",
        "utter_offer",
    ),
    Turn("What's my membership status?", "ask_loyalty_status", None, "utter_loyalty_status"),
)


def _matches(condition: Mapping[str, Any], slots: Mapping[str, Any]) -> bool:
    name = condition.get("name")
    return (
        condition.get("type") == "slot"
        and isinstance(name, str)
        and slots.get(name) == condition.get("value")
    )


def render_response(
    responses: Mapping[str, Sequence[Mapping[str, Any]]], name: str, slots: Mapping[str, Any]
) -> str:
    """The text Rasa would send for response ``name`` given ``slots``.

    Conditional variations whose conditions all hold win over unconditional ones; among
    several, the first is taken (Rasa picks one at random). Placeholders are filled with the
    slot's value as text, as Rasa's template filling does.
    """
    variations = responses.get(name)
    if not variations:
        raise InvalidInputError(f"domain.yml has no response {name!r}")
    conditional = [
        v
        for v in variations
        if v.get("condition") and all(_matches(c, slots) for c in v["condition"])
    ]
    unconditional = [v for v in variations if not v.get("condition")]
    chosen = (conditional or unconditional or [{"text": ""}])[0]
    return _PLACEHOLDER.sub(lambda m: str(slots.get(m.group(1))), str(chosen.get("text", "")))


def load_responses(domain_path: Path) -> dict[str, list[dict[str, Any]]]:
    """The ``responses`` section of a Rasa domain file."""
    try:
        domain = yaml.safe_load(domain_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise InvalidInputError(f"cannot read {domain_path}: {error}") from None
    responses = domain.get("responses") if isinstance(domain, dict) else None
    if not isinstance(responses, dict):
        raise InvalidInputError(f"{domain_path} has no responses section")
    return responses


def _post(url: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310  # a loopback http URL we built
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        result: dict[str, Any] = json.loads(answer.read())
        return result


def play_customer(
    webhook: str,
    customer: str,
    domain_responses: Mapping[str, Any],
    *,
    identity_secret: str | None = None,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Play the script for one customer; returns (customer, bot) lines and the final slots.

    With ``identity_secret`` the customer's id goes with its ``user_hash``, as a shop's
    server signs a logged-in customer.
    """
    slots: dict[str, Any] = {}
    lines: list[tuple[str, str]] = []
    metadata: dict[str, Any] = {"user_id": customer}
    if identity_secret is not None:
        metadata["user_hash"] = sign_user_id(identity_secret, customer)
    for turn in SCRIPT:
        if turn.action is not None:
            state = tracker_state(
                sender_id=f"web-{customer}",
                message_metadata=metadata,
                session_metadata=metadata if turn.action == "action_session_start" else None,
                slots=slots,
            )
            answer = _post(webhook, action_call(turn.action, state))
            slots.update(slots_from_events(answer.get("events", [])))
        lines.append((turn.text, render_response(domain_responses, turn.response, slots)))
    return lines, slots


def _summary_table() -> Table:
    summary = Table(title="What the assistant knows, side by side")
    for column in ("customer", "segment", "tier", "offer", "discount", "favourite", "tags"):
        summary.add_column(column)
    return summary


def _add_summary_row(summary: Table, customer: str, slots: Mapping[str, Any]) -> None:
    summary.add_row(
        customer,
        str(slots.get("customer_segment")),
        str(slots.get("loyalty_tier")),
        str(slots.get("offer_type")),
        str(slots.get("discount_pct")),
        str(slots.get("favorite_category")),
        ", ".join(slots.get("user_tags") or []) or "-",
    )


def _print_turns(console: Console, customer: str, lines: Sequence[tuple[str, str]]) -> None:
    console.rule(f"[bold]{customer}")
    for said, answered in lines:
        console.print(f"[cyan]customer:[/cyan] {said}")
        console.print(f"[green]bot:[/green]      {answered}")


def print_where_to_look(console: Console, base_url: str) -> None:
    """Where the demo action server shows how it is doing, while it runs."""
    console.print(
        f"While the demo runs: metrics at [bold]{base_url}/metrics[/bold], readiness at "
        f"[bold]{base_url}/ready[/bold] (docs/operations.md explains both)."
    )


def print_metrics_summary(console: Console, base_url: str) -> None:
    """A few figures from the demo server's ``/metrics``, read before it stops."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as answer:  # noqa: S310
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        console.print("[yellow]The action server's /metrics did not answer.[/yellow]")
        return
    totals: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = next(iter(sample.labels.values()), "")
            if sample.name in METRICS_SUMMARY and sample.value:
                by_label = totals.setdefault(sample.name, {})
                by_label[label] = by_label.get(label, 0.0) + sample.value
    for name, title in METRICS_SUMMARY.items():
        counted = totals.get(name, {})
        listed = ", ".join(f"{label} {value:.0f}" for label, value in sorted(counted.items()))
        console.print(f"{title}: {listed or 'none'}")


def run_walkthrough(
    settings: Settings,
    *,
    console: Console,
    project_dir: Path = Path(),
    port: int | None = None,
) -> None:
    """Play the conversation for each demo customer: through Rasa when it is set up."""
    setup = RasaSetup.find(project_dir)
    if setup is None:
        console.print(
            "[yellow]Rasa is not set up here[/yellow] (run `make rasa-train`): showing the "
            "scripted walk-through over the webhook, answers rendered from domain.yml."
        )
        run_webhook_walkthrough(
            settings,
            port=port or free_port(),
            console=console,
            domain_path=project_dir / "domain.yml",
        )
        return
    with tempfile.TemporaryDirectory(prefix="personalize-demo-") as folder:
        console.print("Starting the action server and Rasa (loading the model takes a while)...")
        summary = _summary_table()
        with RunningAssistant(
            setup, database_url=settings.database_url, log_dir=Path(folder)
        ) as assistant:
            action_server = f"http://127.0.0.1:{assistant.action_port}"
            print_where_to_look(console, action_server)
            for customer in WALKTHROUGH_CUSTOMERS:
                sender = f"demo-{customer}-{uuid.uuid4().hex[:8]}"
                lines = [
                    (text, " ".join(assistant.say(sender, text, user_id=customer)) or "(silence)")
                    for text in CONVERSATION
                ]
                _print_turns(console, customer, lines)
                _add_summary_row(summary, customer, assistant.slots(sender))
            print_metrics_summary(console, action_server)
        console.print(summary, width=120)


def run_webhook_walkthrough(
    settings: Settings, *, port: int, console: Console, domain_path: Path = Path("domain.yml")
) -> None:
    """Start the server on ``port``, play the script for each demo customer, stop it."""
    responses = load_responses(domain_path)
    base_url = f"http://127.0.0.1:{port}"
    # Sign the customers with the secret the server verifies: the configured one, else
    # a fresh one for this run.
    identity_secret = settings.identity_secret_value or secrets.token_hex(16)
    # Call the webhook as Rasa would, with the token (endpoints.yml ``token:``, sent as
    # ``?token=``): the configured one, else a fresh one for this run.
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    token = token or secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "PERSONALIZE_DATABASE_URL": settings.database_url,
        "PERSONALIZE_IDENTITY_SECRET": identity_secret,
        "PERSONALIZE_WEBHOOK_TOKEN": token,
        # The demo store is keyed with the development secret unless one is set: its
        # own server may use it (demo only; `personalize serve` refuses it otherwise).
        "PERSONALIZE_ALLOW_DEV_SECRET": os.environ.get("PERSONALIZE_ALLOW_DEV_SECRET", "true"),
    }
    server = ServerProcess(
        [
            sys.executable,
            "-m",
            "rasa_personalize.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        f"{base_url}/health",
        env=env,
    )
    console.print(f"Starting the action server on {base_url} ...")
    try:
        server.start(timeout_s=60)
        print_where_to_look(console, base_url)
        summary = _summary_table()
        for customer in WALKTHROUGH_CUSTOMERS:
            lines, slots = play_customer(
                f"{base_url}/webhook?token={urllib.parse.quote(token, safe='')}",
                customer,
                responses,
                identity_secret=identity_secret,
            )
            _print_turns(console, customer, lines)
            _add_summary_row(summary, customer, slots)
        print_metrics_summary(console, base_url)
        console.print(summary, width=120)
    except urllib.error.URLError as error:
        raise PersonalizeError(f"the action server failed a request: {error.reason}") from None
    finally:
        server.stop()


def run_chat(settings: Settings, *, customer: str, console: Console, project_dir: Path) -> None:
    """An interactive conversation with the demo assistant as ``customer``."""
    setup = RasaSetup.find(project_dir)
    if setup is None:
        raise PersonalizeError("the chat needs Rasa: run `make rasa-train` first")
    with tempfile.TemporaryDirectory(prefix="personalize-chat-") as folder:
        console.print("Starting the action server and Rasa (loading the model takes a while)...")
        with RunningAssistant(
            setup, database_url=settings.database_url, log_dir=Path(folder)
        ) as assistant:
            sender = f"chat-{customer}-{uuid.uuid4().hex[:8]}"
            console.print(f"Chatting as [bold]{customer}[/bold]. Type /slots, or /quit to leave.")
            while True:
                try:
                    text = console.input("[cyan]you:[/cyan] ").strip()
                except (EOFError, KeyboardInterrupt):
                    break
                if text in {"/quit", "/exit"}:
                    break
                if text == "/slots":
                    slots = assistant.slots(sender)
                    console.print_json(json.dumps({k: v for k, v in slots.items() if v}))
                    continue
                if text:
                    for answer in assistant.say(sender, text, user_id=customer):
                        console.print(f"[green]bot:[/green] {answer}")
