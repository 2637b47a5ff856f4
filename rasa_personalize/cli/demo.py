"""``personalize seed-demo``, ``demo``, ``chat`` and ``demo-web``: the synthetic shop and its
conversations."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from rasa_personalize.settings import Settings


def register_commands(app: typer.Typer) -> None:
    """Add ``seed-demo`` (with the data commands), ``demo``, ``chat`` and ``demo-web`` to
    ``app``."""
    app.command("seed-demo", rich_help_panel=PANEL_DATA)(seed_demo)
    app.command("demo", rich_help_panel=PANEL_DEMO)(demo)
    app.command("chat", rich_help_panel=PANEL_DEMO)(chat)
    app.command("demo-web", rich_help_panel=PANEL_DEMO)(demo_web)


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
    chunk_customers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Use the chunked generator, this many customers at a time (every chunk "
            "size gives the same shop); default: chunks from 100,000 customers on, the "
            "in-memory generator below.",
            show_default=False,
        ),
    ] = None,
    profiles: Annotated[
        bool,
        typer.Option(
            "--profiles/--no-profiles",
            help="Compute profile metrics afterwards (default), or leave that to "
            "`personalize profile rebuild`.",
        ),
    ] = True,
    database_url: DatabaseOption = None,
) -> None:
    """Fill the store with a realistic synthetic shop and the named demo customers.

    On PostgreSQL the rows are written with COPY. Large shops (100,000 customers and
    more) are generated a chunk at a time, so memory stays flat.
    """
    from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
    from rasa_personalize.store.repository import (
        delete_all_rows,
        rebuild_profile_metrics,
    )

    settings = load_cli_settings(database_url)
    config = DemoShopConfig(
        customers=customers,
        products=products,
        interactions=interactions,
        days=days,
        seed=seed,
        chunk_customers=chunk_customers,
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
                    if profiles:
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
    if report["funnel_share"] < 1.0:
        console.print(
            f"With {interactions:,} interactions, {report['funnel_share']:.0%} of purchases "
            "come with their product view (all would need more interactions)."
        )
    if not profiles:
        console.print("Profile metrics not computed: run `personalize profile rebuild`.")


def demo(
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Action server port (webhook-only mode)."),
    ] = None,
    experiment: Annotated[
        bool,
        typer.Option(
            "--experiment/--no-experiment",
            help="Then run a simulated A/B test with known rates and show its report.",
        ),
    ] = True,
    shoppers: Annotated[
        int, typer.Option(min=100, max=100_000, help="Shoppers in the simulated A/B test.")
    ] = 2_000,
) -> None:
    """Play a conversation for each demo customer (real Rasa when set up) side by side,
    then a simulated A/B test of a bigger discount, reported as
    `personalize experiments report` does."""
    from rasa_personalize.demo.walkthrough import run_walkthrough

    settings = load_cli_settings(None)
    try:
        run_walkthrough(settings, console=console, project_dir=Path.cwd(), port=port)
    except PersonalizeError as error:
        fail(error)
    if experiment:
        _simulated_experiment(settings, shoppers)


def _simulated_experiment(settings: Settings, shoppers: int) -> None:
    from rasa_personalize.demo.experiment import simulate_experiment
    from rasa_personalize.experiments.report import print_report, write_html_report

    console.print(
        f"\n[bold]A simulated A/B test[/bold]: {shoppers:,} shoppers start a chat, hear 15% "
        "or 20% off (their arm), and buy at known rates through the real pipeline "
        "(assignment, exposures, event ingestion, report), on a store of its own."
    )
    result = run_job(lambda: simulate_experiment(settings, shoppers))
    truth = ", ".join(f"{arm} {rate:.0%}" for arm, rate in result.true_rates.items())
    console.print(f"True purchase rates: {truth}. What the report finds:")
    print_report(console, result.experiment, result.analysis, result.outcomes)
    report = Path("reports") / "experiment-demo.html"
    report.parent.mkdir(exist_ok=True)
    if importlib.util.find_spec("matplotlib") is not None:
        write_html_report(report, result.experiment, result.analysis, result.outcomes)
        console.print(f"The report with pictures: {report}")


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


def demo_web(
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of the shop's page (this machine only).")
    ] = 8000,
) -> None:
    """Serve the demo shop's page with a chat widget (Rasa's socket.io channel), signed in
    as a demo customer with `?customer=demo-loyal` or as a guest without."""
    from rasa_personalize.demo.generator import DEMO_CUSTOMERS
    from rasa_personalize.demo.shop_site import run_web_demo

    try:
        run_web_demo(
            load_cli_settings(None),
            console=console,
            project_dir=Path.cwd(),
            port=port,
            accounts=tuple(DEMO_CUSTOMERS),
        )
    except PersonalizeError as error:
        fail(error)
