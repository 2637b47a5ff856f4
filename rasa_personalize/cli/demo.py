"""``personalize seed-demo``, ``demo`` and ``chat``: the synthetic shop and its conversations."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from rasa_personalize.cli.common import (
    PANEL_DATA,
    PANEL_DEMO,
    DatabaseOption,
    batch_store,
    console,
    describe_store,
    fail,
    invalidate_profile_cache,
    load_cli_settings,
    run_job,
    stage_progress,
)
from rasa_personalize.clock import utc_now
from rasa_personalize.errors import PersonalizeError


def register_commands(app: typer.Typer) -> None:
    """Add ``seed-demo`` (with the data commands) and ``demo`` and ``chat`` to ``app``."""
    app.command("seed-demo", rich_help_panel=PANEL_DATA)(seed_demo)
    app.command("demo", rich_help_panel=PANEL_DEMO)(demo)
    app.command("chat", rich_help_panel=PANEL_DEMO)(chat)


def seed_demo(
    customers: Annotated[int, typer.Option(min=10, help="Customers to generate.")] = 2000,
    products: Annotated[int, typer.Option(min=8, help="Products to generate.")] = 300,
    interactions: Annotated[int, typer.Option(min=1, help="About this many.")] = 50_000,
    days: Annotated[
        int, typer.Option(min=120, help="Days of history (lapsed customers need 120+).")
    ] = 180,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same shop.")] = 42,
    reset: Annotated[
        bool, typer.Option("--reset/--keep", help="Empty the store first (default).")
    ] = True,
    database_url: DatabaseOption = None,
) -> None:
    """Fill the store with a realistic synthetic shop and the named demo customers."""
    from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
    from rasa_personalize.store.repository import (
        delete_all_rows,
        rebuild_profile_metrics,
    )

    settings = load_cli_settings(database_url)
    config = DemoShopConfig(
        customers=customers, products=products, interactions=interactions, days=days, seed=seed
    )

    async def job() -> dict[str, Any]:
        store = batch_store(settings)
        try:
            with stage_progress() as advance:
                async with store.sessions.begin() as session:
                    if reset:
                        await delete_all_rows(session)
                    report = await seed_demo_shop(
                        session,
                        config,
                        secret_key=settings.secret_key,
                        now=utc_now(),
                        progress=advance,
                    )
                    advance("profiles", 0, report.customers)
                    written = await rebuild_profile_metrics(session)
                    advance("profiles", written, report.customers)
            await invalidate_profile_cache(settings)
            return asdict(report)
        finally:
            await store.dispose()

    report = run_job(job)
    groups = ", ".join(f"{name} {count}" for name, count in sorted(report["groups"].items()))
    console.print(
        f"Seeded {report['customers']} customers, {report['products']} products, "
        f"{report['interactions']} interactions, {report['tags']} tags "
        f"into {describe_store(settings)}.\nGroups: {groups}.\n"
        "Demo customers: demo-bargain, demo-loyal, demo-new, demo-lapsed."
    )


def demo(
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Action server port (webhook-only mode)."),
    ] = None,
) -> None:
    """Play a conversation for each demo customer (real Rasa when set up) side by side."""
    from rasa_personalize.demo.walkthrough import run_walkthrough

    try:
        run_walkthrough(load_cli_settings(None), console=console, project_dir=Path.cwd(), port=port)
    except PersonalizeError as error:
        fail(error)


def chat(
    customer: Annotated[
        str, typer.Option("--customer", "-c", help="Chat as this customer id.")
    ] = "demo-loyal",
) -> None:
    """Chat with the demo assistant (Rasa + this action server) as a given customer."""
    from rasa_personalize.demo.walkthrough import run_chat

    try:
        run_chat(
            load_cli_settings(None), customer=customer, console=console, project_dir=Path.cwd()
        )
    except PersonalizeError as error:
        fail(error)
