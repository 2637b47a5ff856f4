"""Settings come from PERSONALIZE_* variables and fail with the variable's name."""

from __future__ import annotations

import logging

import pytest

from rasa_personalize.errors import ConfigurationError
from rasa_personalize.settings import load_settings
from rasa_personalize.store.database import async_database_url, describe_database


def test_defaults_use_embedded_sqlite_and_warn_about_the_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With nothing set: SQLite file, no Redis, and a warning for the development key."""
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
        monkeypatch.delenv(f"PERSONALIZE_{name}", raising=False)
    with caplog.at_level(logging.WARNING):
        settings = load_settings()
    assert settings.database_url == "sqlite:///personalize.db"
    assert settings.redis_url is None
    assert settings.uses_development_secret
    assert "PERSONALIZE_SECRET_KEY is not set" in caplog.text


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables with the prefix set the fields."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", "postgresql://db/shop")
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "a-long-enough-secret")
    monkeypatch.setenv("PERSONALIZE_ACTION_BUDGET_S", "0.25")
    settings = load_settings()
    assert settings.database_url == "postgresql://db/shop"
    assert settings.action_budget_s == 0.25
    assert not settings.uses_development_secret


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PERSONALIZE_SECRET_KEY", "short", "PERSONALIZE_SECRET_KEY: Value error"),
        ("PERSONALIZE_ACTION_BUDGET_S", "-1", "PERSONALIZE_ACTION_BUDGET_S"),
        ("PERSONALIZE_STORE_POOL_SIZE", "many", "PERSONALIZE_STORE_POOL_SIZE"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    """A bad value is reported by variable name."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=message):
        load_settings()


def test_redis_url_needs_a_redis_scheme_and_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mistyped Redis URL is refused by name without its (possibly secret) value."""
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", "http://:hunter2@cache:6379/0")
    with pytest.raises(ConfigurationError, match="PERSONALIZE_REDIS_URL: Value error") as raised:
        load_settings()
    assert "hunter2" not in str(raised.value)
    assert "redis://, rediss://, unix://" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("  ", None), (" redis://cache:6379/1 ", "redis://cache:6379/1"),
     ("REDISS://cache/0", "REDISS://cache/0"), ("unix:///run/redis.sock", "unix:///run/redis.sock")],
)  # fmt: skip
def test_redis_url_empty_means_none_and_is_trimmed(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", value)
    assert load_settings().redis_url == expected


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///personalize.db", "sqlite+aiosqlite"),
        ("postgresql://u:p@db:5432/shop", "postgresql+asyncpg"),
        ("postgres://db/shop", "postgresql+asyncpg"),
        ("postgresql+asyncpg://db/shop", "postgresql+asyncpg"),
        ("mysql://db/shop", "mysql+asyncmy"),  # MySQL and MariaDB alike
        ("mariadb://db/shop", "mysql+asyncmy"),
    ],
)
def test_plain_urls_get_async_drivers(url: str, driver: str) -> None:
    """Users write plain URLs; the plugin picks the async driver."""
    assert async_database_url(url).drivername == driver


@pytest.mark.parametrize("url", ["oracle://db/shop", "not a url"])
def test_unsupported_urls_are_refused(url: str) -> None:
    """Only SQLite, PostgreSQL and MySQL/MariaDB are supported, and the message says so."""
    with pytest.raises(ConfigurationError, match="PERSONALIZE_DATABASE_URL"):
        async_database_url(url)


def test_described_url_hides_credentials() -> None:
    """Logs and CLI output never show the password or user."""
    described = describe_database("postgresql://shop:s3cret@db:6543/orders")
    assert described == "postgresql://db:6543/orders"
