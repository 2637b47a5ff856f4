"""``personalize privacy consent CUSTOMER``: show a customer's consent, or change it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    DatabaseOption,
    batch_store,
    console,
    customer_id_or_fail,
    errors,
    fail,
    guarded,
    load_cli_settings,
    run_job,
)

if TYPE_CHECKING:
    from rasa_personalize.privacy.consent import ConsentRequest
    from rasa_personalize.settings import Settings


def register(group: typer.Typer) -> None:
    """Add ``consent`` to ``group``."""
    group.command("consent")(consent)


def consent(
    customer: Annotated[
        str, typer.Argument(help="The customer's external id (hashed before any lookup).")
    ],
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant",
            metavar="PURPOSE",
            help="Record that the customer allows this purpose: personalization, tracking "
            "or marketing (repeat for several).",
            show_default=False,
        ),
    ] = None,
    deny: Annotated[
        list[str] | None,
        typer.Option(
            "--deny",
            metavar="PURPOSE",
            help="Record that the customer refuses this purpose (repeat for several).",
            show_default=False,
        ),
    ] = None,
    policy_version: Annotated[
        str | None,
        typer.Option(
            "--policy-version",
            metavar="VERSION",
            help="The privacy policy version the answer was given under (default: "
            "$PERSONALIZE_CONSENT_POLICY_VERSION).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Show a customer's consent per purpose and its history; with --grant/--deny, change it.

    A purpose the customer never answered for follows PERSONALIZE_CONSENT_DEFAULT (shown
    as "default"). An answer equal to the stored one changes nothing and adds no history.
    Every change is audited and drops the customer's cached profile.
    """
    from rasa_personalize.privacy.consent import ConsentInputError, consent_request

    customer = customer_id_or_fail(customer)
    try:
        request = consent_request(grant or [], deny or [], policy_version)
    except ConsentInputError as error:
        flag = "--policy-version" if error.field == "policy_version" else f"--{error.field}"
        fail(f"{flag}: {error.reason}", EXIT_USAGE)
    changing = bool(request.grant or request.deny)
    if policy_version is not None and not changing:
        fail("--policy-version goes with --grant or --deny", EXIT_USAGE)
    # A change writes customer data: the public development key is refused for it.
    settings = load_cli_settings(database_url, real_secret=changing)
    document = run_job(lambda: _consent_job(settings, customer, request if changing else None))
    if as_json:
        typer.echo(json.dumps(document))
        return
    _print_consent(document, settings.consent_default)


async def _consent_job(
    settings: Settings, customer: str, request: ConsentRequest | None
) -> dict[str, Any]:
    """Record ``request`` (when given) and read the customer's consent document."""
    from rasa_personalize.clock import utc_now
    from rasa_personalize.identity import customer_key
    from rasa_personalize.privacy.audit import Actor
    from rasa_personalize.privacy.consent import load_consent_document, record_consent
    from rasa_personalize.privacy.secret_rotation import rekey_on_miss
    from rasa_personalize.store.customers import keys_of_person

    key = customer_key(settings.secret_key, customer)
    store = batch_store(settings)
    try:
        # A customer not seen since the secret changed is still under a former key.
        await guarded(rekey_on_miss(store.sessions, settings, customer))
        if request is not None:
            async with store.sessions.begin() as session:
                await guarded(
                    record_consent(
                        session,
                        key,
                        request,
                        source="cli",
                        actor=Actor.cli(),
                        now=utc_now(),
                        default_policy_version=settings.consent_policy_version,
                    )
                )
                keys = await guarded(keys_of_person(session, key))
            # After the commit: the hot path caches consent with the profile, under each
            # of a merged customer's keys.
            await _invalidate_cached_profiles(settings, keys)
        async with store.sessions() as session:
            return await guarded(
                load_consent_document(session, customer, key, settings.consent_default)
            )
    finally:
        await store.dispose()


async def _invalidate_cached_profiles(settings: Settings, keys: frozenset[str]) -> None:
    """Drop one customer's cached profiles; warn if Redis could not be told."""
    from rasa_personalize.cache.profiles import profile_cache_for

    cache = profile_cache_for(settings, timeout_s=5.0)
    if cache is None:
        return
    try:
        await cache.invalidate(sorted(keys))
        if cache.pending:
            errors.print(
                "[yellow]warning:[/yellow] Redis did not answer, so the customer's cached "
                "profile was not dropped: servers may go on with the old consent for up to "
                f"{settings.profile_cache_ttl_s:.0f} s (PERSONALIZE_PROFILE_CACHE_TTL_S)."
            )
    finally:
        await cache.close()


def _minute(moment: str | None) -> str:
    """``2026-01-31 08:15`` (UTC) from an ISO date-time, or ``-``."""
    return moment[:16].replace("T", " ") if moment else "-"


def _print_consent(document: dict[str, Any], default: str) -> None:
    states = Table(
        title=f"Consent of {escape(document['customer'])}",
        caption=f"default: {default} (PERSONALIZE_CONSENT_DEFAULT); times in UTC",
    )
    for column in ("purpose", "state", "in effect", "source", "policy", "updated"):
        states.add_column(column, no_wrap=column != "policy")
    for purpose, state in document["purposes"].items():
        states.add_row(
            purpose,
            state["state"],
            "yes" if state["effective"] else "no",
            state["source"] or "-",
            escape(state["policy_version"] or "-"),
            _minute(state["updated_at"]),
        )
    console.print(states)
    if not document["history"]:
        console.print("No consent history.")
        return
    history = Table(title="History (oldest first)")
    for column in ("recorded", "purpose", "decision", "source", "policy"):
        history.add_column(column, no_wrap=column != "policy")
    for change in document["history"]:
        history.add_row(
            _minute(change["recorded_at"]),
            change["purpose"] or "(all)",
            change["decision"],
            change["source"] or "-",
            escape(change["policy_version"] or "-"),
        )
    console.print(history)
