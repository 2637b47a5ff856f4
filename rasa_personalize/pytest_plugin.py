"""pytest fixtures to test your own Rasa actions against the plugin (a ``pytest11`` plugin).

Installing rasa-personalize registers this module with pytest, so every test suite in
that environment can ask for:

- ``personalize_store``: a migrated, empty SQLite store in the test's temporary folder,
  as a :class:`~rasa_personalize.testing.ThrowawayStore` (``add_customer``,
  ``add_product``, ``add_interactions``, ``start_service``);
- ``personalize_service``: the store's ``PersonalizationService``, started, warmed up
  and installed as what ``personalization_service()`` returns in the test, so actions
  built on the plugin's API read that store. It reads the catalogue when it starts:
  a test that needs its own products adds them, then calls
  ``personalize_store.start_service()`` itself.

Both are async fixtures and need pytest-asyncio (``pip install
"rasa-personalize[testing]"``). The schema is migrated once per test session and copied
for each test. Nothing of the plugin is imported until a test asks for a fixture, so a
suite that uses none pays nothing; the names all start with ``personalize_`` so that
they cannot shadow a suite's own fixtures.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rasa_personalize.engine import PersonalizationService
    from rasa_personalize.testing import ThrowawayStore

try:
    import pytest_asyncio
except ImportError:  # the fixtures say what to install when a test asks for them
    pytest_asyncio = None  # type: ignore[assignment]  # only tested before use

NEEDS_PYTEST_ASYNCIO = (
    "the personalize_store and personalize_service fixtures are async and need "
    'pytest-asyncio: pip install "rasa-personalize[testing]"'
)


@pytest.fixture(scope="session")
def personalize_migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store with the schema at head, made once per session and copied per test."""
    # Imported when a test asks, not when pytest loads the plugin: suites that use no
    # fixture of ours never load the engine.
    from rasa_personalize.testing import DATABASE_FILE, migrate_database  # noqa: PLC0415

    return migrate_database(tmp_path_factory.mktemp("personalize-schema") / DATABASE_FILE)


def _open_store(template: Path, folder: Path) -> ThrowawayStore:
    from rasa_personalize.testing import DATABASE_FILE, ThrowawayStore  # noqa: PLC0415  # as above

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, folder / DATABASE_FILE)
    return ThrowawayStore(folder)


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def personalize_store(
        personalize_migrated_database: Path, tmp_path: Path
    ) -> AsyncIterator[ThrowawayStore]:
        """A migrated, empty SQLite store of this test (closed after it)."""
        store = _open_store(personalize_migrated_database, tmp_path / "personalize")
        yield store
        await store.close()

    @pytest_asyncio.fixture
    async def personalize_service(
        personalize_store: ThrowawayStore,
    ) -> AsyncIterator[PersonalizationService]:
        """The store's service, installed for this test's event loop (shut down after)."""
        yield await personalize_store.start_service()
        await personalize_store.stop_service()

else:

    @pytest.fixture
    def personalize_store() -> Any:
        """Unavailable without pytest-asyncio: fails the test saying what to install."""
        pytest.fail(NEEDS_PYTEST_ASYNCIO)

    @pytest.fixture
    def personalize_service() -> Any:
        """Unavailable without pytest-asyncio: fails the test saying what to install."""
        pytest.fail(NEEDS_PYTEST_ASYNCIO)
