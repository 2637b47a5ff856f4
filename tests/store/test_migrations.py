"""Migrations: the ORM and the migrated schema agree, and upgrade/downgrade round-trips."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from rasa_personalize.store.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade_connection,
)
from rasa_personalize.store.models import Base
from rasa_personalize.store.sql_store import SqlStore


async def test_migrated_schema_matches_the_models(store: SqlStore) -> None:
    """Autogenerate finds nothing to add: every model change has its migration."""

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with store.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
        assert await current_revision(connection) == head_revision()


async def test_downgrade_to_base_and_upgrade_again(store: SqlStore) -> None:
    """The initial migration can be undone and redone."""
    async with store.engine.begin() as connection:
        await upgrade_connection(connection, "head")
    async with store.engine.begin() as connection:

        def downgrade(sync_connection: Connection) -> None:
            config = alembic_config("sqlite://")
            config.attributes["connection"] = sync_connection
            command.downgrade(config, "base")

        await connection.run_sync(downgrade)
        assert await current_revision(connection) is None
        await upgrade_connection(connection)
        assert await current_revision(connection) == head_revision()
