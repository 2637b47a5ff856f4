"""Schema migrations with Alembic, driven from code (``personalize db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from rasa_personalize.store.database import async_database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for our migrations against ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; URL-encoded passwords contain it.
    rendered = async_database_url(database_url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` up to ``revision`` (blocking; for the CLI)."""
    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str:
    """The newest revision the code knows."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None, "the migrations directory has no revisions"
    return head


async def upgrade_connection(connection: AsyncConnection, revision: str = "head") -> None:
    """Upgrade through an open async connection (tests and embedded use)."""

    def run(sync_connection: Connection) -> None:
        config = alembic_config("sqlite://")
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    await connection.run_sync(run)


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision the database is at, or None for an empty database."""

    def read(sync_connection: Connection) -> str | None:
        return MigrationContext.configure(sync_connection).get_current_revision()

    return await connection.run_sync(read)
