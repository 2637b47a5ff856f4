"""Optional features name their missing extra in one line, wherever they are set up.

Each test hides an installed library (``sys.modules[name] = None`` makes importing it
fail, as if it were not installed) and checks the message names the extra to install.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.errors import MissingExtraError
from rasa_personalize.events.stream import EventStream
from rasa_personalize.extras import database_backend, is_installed
from rasa_personalize.settings import load_settings
from tests.conftest import make_settings

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis (and its submodules) cannot be imported."""
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)


def test_hidden_module_reads_as_not_installed(without_redis: None) -> None:
    """The check sees what an import would see."""
    assert not is_installed("redis")
    assert is_installed("json")


def test_settings_with_redis_but_no_client(
    without_redis: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PERSONALIZE_REDIS_URL without redis installed fails when settings are read."""
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", REDIS_URL)
    with pytest.raises(MissingExtraError) as missing:
        load_settings(secret_key="extras-test-secret-key")
    assert str(missing.value) == (
        "PERSONALIZE_REDIS_URL (Redis) needs the 'redis' extra: "
        "pip install 'rasa-personalize[redis]'"
    )
    assert missing.value.extra == "redis"


def test_service_with_redis_but_no_client(without_redis: None, tmp_path: Path) -> None:
    """Settings built directly (embedding, tests) are checked when the service is created."""
    settings = make_settings(f"sqlite:///{tmp_path / 'store.db'}", redis_url=REDIS_URL)
    with pytest.raises(MissingExtraError, match=r"'redis' extra"):
        PersonalizationService(settings)


def test_events_api_stream_without_redis(without_redis: None) -> None:
    """The events API's stream names the extra instead of failing on import."""
    with pytest.raises(MissingExtraError, match=r"pip install 'rasa-personalize\[redis\]'"):
        EventStream.from_url(REDIS_URL, "events", timeout_s=0.1, retry_after_s=1.0)


def test_worker_module_without_redis(without_redis: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream worker cannot run without redis, and says which extra brings it."""
    monkeypatch.delitem(sys.modules, "rasa_personalize.events.worker", raising=False)
    with pytest.raises(MissingExtraError, match=r"personalize worker needs the 'redis' extra"):
        importlib.import_module("rasa_personalize.events.worker")


def test_no_redis_configured_needs_no_redis(without_redis: None, tmp_path: Path) -> None:
    """Without PERSONALIZE_REDIS_URL everything is set up without the redis package."""
    service = PersonalizationService(make_settings(f"sqlite:///{tmp_path / 'store.db'}"))
    assert service.profile_cache is None
    assert service.precomputed_cache is None


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("postgresql://127.0.0.1/shop", "postgres"),  # the plain scheme
        ("postgresql+asyncpg://127.0.0.1/shop", "postgres"),  # with the driver named
        ("postgres://127.0.0.1/shop", "postgres"),  # the short scheme some hosts give
    ],
)
def test_database_url_without_its_driver(
    monkeypatch: pytest.MonkeyPatch, url: str, extra: str
) -> None:
    """A PostgreSQL URL without asyncpg names the postgres extra."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(MissingExtraError, match=rf"needs the '{extra}' extra"):
        load_settings(database_url=url, secret_key="extras-test-secret-key")


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("sqlite:///personalize.db", "sqlite"),
        ("postgresql+asyncpg://h/db", "postgresql"),
        ("MySQL://h/db", "mysql"),
    ],
)
def test_database_backend_ignores_the_driver(url: str, backend: str) -> None:
    """The backend is the scheme before any driver, in lower case."""
    assert database_backend(url) == backend
