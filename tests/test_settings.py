"""Settings come from PERSONALIZE_* variables and fail with the variable's name."""

from __future__ import annotations

import logging

import pytest

from rasa_personalize.errors import ConfigurationError
from rasa_personalize.settings import load_settings, load_webhook_token
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


@pytest.mark.parametrize(
    "value",
    [
        "",  # set but empty: refused, so an unexported variable cannot turn verification off
        "only-15-chars!!",  # one short of the 16-character minimum
    ],
)
def test_identity_secret_is_long_enough_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A short identity secret is refused by name, without its value."""
    monkeypatch.setenv("PERSONALIZE_IDENTITY_SECRET", value)
    with pytest.raises(ConfigurationError, match=r"PERSONALIZE_IDENTITY_SECRET: .*16") as error:
        load_settings()
    if value:
        assert value not in str(error.value)


def test_identity_secret_is_read_and_hidden_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret is available to verify hashes, but never printed with the settings."""
    monkeypatch.setenv("PERSONALIZE_IDENTITY_SECRET", "shop-identity-secret-0123")
    settings = load_settings()
    assert settings.identity_secret_value == "shop-identity-secret-0123"
    assert "shop-identity-secret-0123" not in repr(settings)
    monkeypatch.delenv("PERSONALIZE_IDENTITY_SECRET")
    assert load_settings().identity_secret_value is None


@pytest.mark.parametrize(
    "value",
    [
        "",  # set but empty: refused, so an unexported variable cannot open the webhook
        "only-15-chars!!",  # one short of the 16-character minimum
    ],
)
def test_webhook_token_is_long_enough_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A short webhook token is refused by name, by the settings and by the server's read."""
    monkeypatch.setenv("PERSONALIZE_WEBHOOK_TOKEN", value)
    for load in (load_settings, load_webhook_token):
        with pytest.raises(ConfigurationError, match=r"PERSONALIZE_WEBHOOK_TOKEN: .*16") as error:
            load()
        if value:
            assert value not in str(error.value)


def test_webhook_token_is_read_and_hidden_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token is there to compare with, never printed with the settings; unset: None."""
    monkeypatch.setenv("PERSONALIZE_WEBHOOK_TOKEN", "shop-webhook-token-0123")
    token = load_webhook_token()
    assert token is not None
    assert token.get_secret_value() == "shop-webhook-token-0123"
    assert "shop-webhook-token-0123" not in repr(load_settings())
    monkeypatch.delenv("PERSONALIZE_WEBHOOK_TOKEN")
    assert load_webhook_token() is None
    assert load_settings().webhook_token is None


def test_consent_default_and_policy_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consent is opt-out (granted) by default; opt-in and a policy version are read by name."""
    settings = load_settings()
    assert (settings.consent_default, settings.consent_policy_version) == ("granted", None)
    monkeypatch.setenv("PERSONALIZE_CONSENT_DEFAULT", "denied")
    monkeypatch.setenv("PERSONALIZE_CONSENT_POLICY_VERSION", " 2026-01 ")
    settings = load_settings()
    assert (settings.consent_default, settings.consent_policy_version) == ("denied", "2026-01")
    monkeypatch.setenv("PERSONALIZE_CONSENT_POLICY_VERSION", "")
    assert load_settings().consent_policy_version is None
    monkeypatch.setenv("PERSONALIZE_CONSENT_DEFAULT", "maybe")
    with pytest.raises(ConfigurationError, match="PERSONALIZE_CONSENT_DEFAULT: Input should be"):
        load_settings()
    monkeypatch.setenv("PERSONALIZE_CONSENT_DEFAULT", "granted")
    monkeypatch.setenv("PERSONALIZE_CONSENT_POLICY_VERSION", "v" * 33)
    with pytest.raises(ConfigurationError, match="PERSONALIZE_CONSENT_POLICY_VERSION"):
        load_settings()


def test_retention_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interactions are kept forever unless a retention is set; audit rows two years."""
    settings = load_settings()
    assert (settings.retention_days, settings.audit_retention_days) == (None, 730)
    monkeypatch.setenv("PERSONALIZE_RETENTION_DAYS", "365")
    monkeypatch.setenv("PERSONALIZE_AUDIT_RETENTION_DAYS", "90")
    settings = load_settings()
    assert (settings.retention_days, settings.audit_retention_days) == (365, 90)
    monkeypatch.setenv("PERSONALIZE_RETENTION_DAYS", "")
    assert load_settings().retention_days is None
    monkeypatch.setenv("PERSONALIZE_RETENTION_DAYS", "0")
    with pytest.raises(ConfigurationError, match="PERSONALIZE_RETENTION_DAYS"):
        load_settings()


# Key material for the contact key tests: each must never appear in an error.
_KEY_A = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # base64 of bytes 0..31
_KEY_B = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="  # base64 of bytes 1..32
_SHORT = "MDEyMzQ1Njc4OQ=="  # base64 of 10 bytes


def test_contact_keys_are_read_as_pairs_with_a_write_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """PERSONALIZE_CONTACT_KEYS holds id:key pairs; the single key is one pair; neither
    leaves the list empty (the development key is used then)."""
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEYS", f" old:{_KEY_A} , new:{_KEY_B}")
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY_ID", "new")
    settings = load_settings()
    assert settings.contact_keys_by_id == {"old": bytes(range(32)), "new": bytes(range(1, 33))}
    assert _KEY_A not in repr(settings)
    monkeypatch.delenv("PERSONALIZE_CONTACT_KEYS")
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY", _KEY_A)
    assert load_settings().contact_keys_by_id == {"new": bytes(range(32))}
    monkeypatch.delenv("PERSONALIZE_CONTACT_KEY")
    assert load_settings().contact_keys_by_id == {}


@pytest.mark.parametrize(
    ("keys", "key_id", "message"),
    [
        # the write key must be one of the list (the default id k1 is not)
        (
            f"a:{_KEY_A},b:{_KEY_B}",
            None,
            r"PERSONALIZE_CONTACT_KEY_ID: .*'k1' is not an id of PERSONALIZE_CONTACT_KEYS \(a, b\)",
        ),
        # a typo in the write id
        (f"a:{_KEY_A}", "A", "'A' is not an id of PERSONALIZE_CONTACT_KEYS"),
        # one id twice
        (f"a:{_KEY_A},a:{_KEY_B}", "a", "PERSONALIZE_CONTACT_KEYS: .*key id 'a' appears twice"),
        # not base64
        (f"a:{_KEY_A},b:not*base64", "a", "key 'b' is not base64 text"),
        # wrong length
        (f"a:{_SHORT}", "a", "key 'a' must decode to 32 bytes \\(AES-256\\), not 10"),
        # a key without its id
        (_KEY_A, "a", "pair 1 is not id:base64key"),
        # an id with a character ciphertexts cannot carry
        (f"a:{_KEY_A},b/c:{_KEY_B}", "a", "pair 2: a key id is 1-32 of"),
    ],
)
def test_bad_contact_keys_are_named_without_key_material(
    monkeypatch: pytest.MonkeyPatch, keys: str, key_id: str | None, message: str
) -> None:
    """Each mistake gets its own message, naming the variable, the pair or id, never a key."""
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEYS", keys)
    if key_id is not None:
        monkeypatch.setenv("PERSONALIZE_CONTACT_KEY_ID", key_id)
    with pytest.raises(ConfigurationError, match=message) as error:
        load_settings()
    for secret in (_KEY_A, _KEY_B, _SHORT, "not*base64"):
        assert secret not in str(error.value)


def test_single_key_and_key_list_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both set would leave unclear which key the id names: refused, no key quoted."""
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY", _KEY_B)
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEYS", f"k1:{_KEY_A}")
    with pytest.raises(ConfigurationError, match=r"PERSONALIZE_CONTACT_KEYS: .*not both") as error:
        load_settings()
    assert _KEY_A not in str(error.value)
    assert _KEY_B not in str(error.value)


def test_previous_secret_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Former secrets are a comma-separated list in order; short, repeated or current ones
    are refused by position, never quoted."""
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "current-secret-0123456789")
    assert load_settings().previous_secrets == ()
    monkeypatch.setenv(
        "PERSONALIZE_PREVIOUS_SECRET_KEYS", " former-secret-0123456 ,older-secret-0123456"
    )
    settings = load_settings()
    assert settings.previous_secrets == ("former-secret-0123456", "older-secret-0123456")
    assert "former-secret" not in repr(settings)
    for value, message in [
        ("former-secret-0123456,short", "secret 2 must be at least 16 characters"),
        ("former-secret-0123456,former-secret-0123456", "secret 2 repeats an earlier one"),
        ("current-secret-0123456789", "secret 1 is the current PERSONALIZE_SECRET_KEY"),
    ]:
        monkeypatch.setenv("PERSONALIZE_PREVIOUS_SECRET_KEYS", value)
        with pytest.raises(ConfigurationError, match=message) as error:
            load_settings()
        assert "former-secret" not in str(error.value)
        assert "current-secret" not in str(error.value)


@pytest.mark.parametrize("name", ["PERSONALIZE_RETENTION_DAYS", "PERSONALIZE_AUDIT_RETENTION_DAYS"])
def test_retention_beyond_a_century_is_refused(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A million days is no policy, and its cutoff date would not exist."""
    monkeypatch.setenv(name, "1000000")
    with pytest.raises(ConfigurationError, match=name):
        load_settings()
