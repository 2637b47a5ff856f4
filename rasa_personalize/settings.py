"""One frozen Settings object, read from ``PERSONALIZE_*`` environment variables on demand."""

from __future__ import annotations

import base64
import binascii
import logging
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rasa_personalize.errors import ConfigurationError
from rasa_personalize.extras import check_settings_extras

logger = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# Only good for a laptop: anyone who knows it can recompute customer keys from channel ids.
DEVELOPMENT_SECRET_KEY = "rasa-personalize-development-key-change-me"  # noqa: S105  # public on purpose; warned about on use
MIN_WEBHOOK_TOKEN_LENGTH = 16


def _webhook_token_long_enough(value: SecretStr | None) -> SecretStr | None:
    # Set but empty is refused, not read as "no token": an unexported variable in a
    # container file must not open the webhook without anyone noticing.
    if value is not None and len(value.get_secret_value()) < MIN_WEBHOOK_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_WEBHOOK_TOKEN_LENGTH} characters long")
    return value


class Settings(BaseSettings):
    """Runtime configuration of the plugin.

    Every field maps to an environment variable with the ``PERSONALIZE_`` prefix, e.g.
    ``database_url`` <- ``PERSONALIZE_DATABASE_URL``.
    """

    model_config = SettingsConfigDict(env_prefix="PERSONALIZE_", frozen=True, extra="ignore")

    database_url: str = Field(
        default="sqlite:///personalize.db",
        description="SQL store; plain sqlite:/// or postgresql:// URLs (async driver chosen).",
    )
    redis_url: str | None = Field(default=None, description="Optional Redis; unset means none.")
    redis_timeout_s: float = Field(
        default=0.2, gt=0, description="Give up on one Redis call after this long (SQL answers)."
    )
    redis_retry_after_s: float = Field(
        default=5.0,
        ge=0,
        description="After a Redis failure, use SQL without trying Redis for this long.",
    )
    profile_cache_ttl_s: float = Field(
        default=600.0, gt=0, description="How long a cached profile snapshot may live in Redis."
    )
    event_stream: str = Field(
        default="personalize:events",
        min_length=1,
        description="The Redis Stream that ingested events go through (with Redis only).",
    )
    stream_max_deliveries: int = Field(
        default=5,
        ge=1,
        description="Store failures of one stream message before the worker moves it to the "
        "dead letters (<event stream>:dead) and goes on.",
    )
    model_dir: Path = Field(
        default=Path("models/personalize"), description="Where trained artifacts live."
    )
    secret_key: str = Field(
        default=DEVELOPMENT_SECRET_KEY,
        description="HMAC key that turns channel ids into pseudonymous customer keys.",
    )
    allow_dev_secret: bool = Field(
        default=False,
        description="Let serve, worker and import run with the public development secret "
        "(demo stores only).",
    )
    identity_secret: SecretStr | None = Field(
        default=None,
        description="Key of the user_hash (HMAC-SHA256 of user_id) a shop's server sends to "
        "prove who is logged in (>= 16 characters); set: unproven user_ids are anonymous "
        "visitors. Unset: metadata user_ids are trusted as sent (logs a warning).",
    )
    store_connect_timeout_s: float = Field(
        default=2.0, gt=0, description="Give up connecting to the store after this long."
    )
    store_statement_timeout_s: float = Field(
        default=1.0, gt=0, description="Give up on one store statement after this long."
    )
    ingest_statement_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Give up on one statement of an events batch stored in SQL after this "
        "long; concurrent batches of the same customers wait for each other's locks.",
    )
    action_budget_s: float = Field(
        default=1.5,
        gt=0,
        description="Whole time an action may spend on the store before it answers defaults.",
    )
    store_retry_after_s: float = Field(
        default=5.0,
        ge=0,
        description="After a store failure, answer defaults without trying for this long.",
    )
    store_pool_size: int = Field(default=10, ge=1, description="Connections per server process.")
    catalogue_refresh_s: float = Field(
        default=300.0, gt=0, description="How often a server re-reads products and popularity."
    )
    model_check_every_s: float = Field(
        default=10.0, gt=0, description="How often a server looks for a newly trained model."
    )
    recommend_exclude_purchased: bool = Field(
        default=True, description="Never recommend what the customer already bought."
    )
    recommend_count: int = Field(
        default=3, ge=1, le=20, description="How many products a recommendation shows."
    )
    rules_path: Path = Field(
        default=Path("personalization.yml"),
        description="Decision rules (YAML); missing file means the built-in rules.",
    )
    rules_check_every_s: float = Field(
        default=2.0, gt=0, description="How often a running server looks for rule edits."
    )
    contact_key: SecretStr | None = Field(
        default=None,
        description="AES-256-GCM key for contact details (base64 of 32 bytes); unset: a "
        "development key derived from the secret key.",
    )
    contact_key_id: str = Field(
        default="k1",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Id stored with every ciphertext, so keys can be rotated later.",
    )
    import_default_region: str = Field(
        default="US",
        pattern=r"^[A-Z]{2}$",
        description="Region that imported phone numbers without +country code are read in.",
    )
    tags_path: Path = Field(
        default=Path("tags.yml"),
        description="Tag rules re-applied to customers with new events; missing file: none.",
    )

    webhook_token: SecretStr | None = Field(
        default=None,
        description="Shared secret Rasa must send with every call to /webhook and /actions "
        "(endpoints.yml `token:`, a Bearer header or the Basic auth password); unset: the "
        "webhook is open to whoever reaches it.",
    )

    _check_webhook_token = field_validator("webhook_token")(_webhook_token_long_enough)

    @field_validator("secret_key")
    @classmethod
    def _secret_key_long_enough(cls, value: str) -> str:
        if len(value) < 16:
            raise ValueError("must be at least 16 characters long")
        return value

    @field_validator("identity_secret")
    @classmethod
    def _identity_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # Set but empty is refused, not read as "not configured": an unexported variable
        # must not turn verification off without anyone noticing. The message never
        # quotes the value.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters long")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_a_redis_scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # PERSONALIZE_REDIS_URL= (empty) also means no Redis
        value = value.strip()
        if not value.lower().startswith(REDIS_SCHEMES):
            # The value itself may hold a password: name the rule, not the value.
            raise ValueError(f"must start with {', '.join(REDIS_SCHEMES)} (or be empty: no Redis)")
        return value

    @field_validator("contact_key")
    @classmethod
    def _contact_key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64 text") from None
        if len(raw) != 32:
            raise ValueError(f"must decode to 32 bytes (AES-256), not {len(raw)}")
        return value

    @property
    def uses_development_secret(self) -> bool:
        """Whether the built-in development secret is in use (unsafe outside a laptop)."""
        return self.secret_key == DEVELOPMENT_SECRET_KEY

    @property
    def identity_secret_value(self) -> str | None:
        """The identity secret as text, or None when user ids are not verified."""
        return self.identity_secret.get_secret_value() if self.identity_secret else None


class _WebhookTokenSettings(BaseSettings):
    """``PERSONALIZE_WEBHOOK_TOKEN`` alone, read and checked exactly as :class:`Settings` does."""

    model_config = Settings.model_config

    webhook_token: SecretStr | None = None

    _check_webhook_token = field_validator("webhook_token")(_webhook_token_long_enough)


def load_webhook_token() -> SecretStr | None:
    """``PERSONALIZE_WEBHOOK_TOKEN`` from the environment, without the other settings.

    The server guards its webhook with it at start, before the store is configured: a
    mistake in another setting must neither stop the server nor open the webhook.

    Raises:
        ConfigurationError: the token is set but too short (the value is never quoted).
    """
    try:
        return _WebhookTokenSettings().webhook_token
    except ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise ConfigurationError(
            f"invalid settings: PERSONALIZE_WEBHOOK_TOKEN: {problem}"
        ) from None


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with keyword overrides on top.

    Raises:
        ConfigurationError: a variable has an invalid value; the message names it.
        MissingExtraError: a configured feature needs an extra that is not installed
            (Redis, a PostgreSQL or MySQL database).
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]  # pydantic validates the values
    except ValidationError as error:
        problems = "; ".join(
            f"PERSONALIZE_{'_'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
    check_settings_extras(settings)
    if settings.uses_development_secret:
        logger.warning(
            "PERSONALIZE_SECRET_KEY is not set: using the development key. "
            "Set a secret of your own before real customers talk to this server."
        )
    return settings
