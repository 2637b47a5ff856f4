"""One frozen Settings object, read from ``PERSONALIZE_*`` environment variables on demand."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rasa_personalize.errors import ConfigurationError
from rasa_personalize.extras import check_settings_extras
from rasa_personalize.text import has_control_characters

logger = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
AMQP_SCHEMES = ("amqp://", "amqps://")
# Only good for a laptop: anyone who knows it can recompute customer keys from channel ids.
DEVELOPMENT_SECRET_KEY = "rasa-personalize-development-key-change-me"  # noqa: S105  # public on purpose; warned about on use
MIN_WEBHOOK_TOKEN_LENGTH = 16
# A century: longer is no retention policy, and far past it dates stop being representable.
MAX_RETENTION_DAYS = 36_500
CONTACT_KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CONTACT_KEY_BYTES = 32
MIN_SECRET_KEY_LENGTH = 16


def _webhook_token_long_enough(value: SecretStr | None) -> SecretStr | None:
    # Set but empty is refused, not read as "no token": an unexported variable in a
    # container file must not open the webhook without anyone noticing.
    if value is not None and len(value.get_secret_value()) < MIN_WEBHOOK_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_WEBHOOK_TOKEN_LENGTH} characters long")
    return value


def _otlp_endpoint_is_http(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None  # set but empty: tracing stays off, as an empty Redis URL means none
    value = value.strip()
    if not value.lower().startswith(("http://", "https://")):
        # The value may carry credentials: name the rule, not the value.
        raise ValueError("must start with http:// or https:// (the collector's OTLP/HTTP URL)")
    return value


def parse_contact_keys(text: str) -> dict[str, bytes]:
    """``PERSONALIZE_CONTACT_KEYS``: comma-separated ``id:base64key`` pairs, as id -> key.

    Raises:
        ValueError: names the pair by position (and its id once that is valid), never a
            key: the text may be pasted into a ticket.
    """
    keys: dict[str, bytes] = {}
    for position, pair in enumerate(text.split(","), start=1):
        key_id, separator, encoded = pair.strip().partition(":")
        key_id = key_id.strip()
        if not separator:
            raise ValueError(f"pair {position} is not id:base64key")
        if not CONTACT_KEY_ID_PATTERN.match(key_id):
            raise ValueError(f"pair {position}: a key id is 1-32 of A-Z a-z 0-9 _ -")
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} appears twice")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not base64 text") from None
        if len(key) != CONTACT_KEY_BYTES:
            raise ValueError(
                f"key {key_id!r} must decode to {CONTACT_KEY_BYTES} bytes (AES-256), not {len(key)}"
            )
        keys[key_id] = key
    return keys


def parse_previous_secrets(text: str) -> tuple[str, ...]:
    """``PERSONALIZE_PREVIOUS_SECRET_KEYS``: comma-separated former HMAC secrets, in order.

    Raises:
        ValueError: names a secret by position, never by value.
    """
    secrets = tuple(part.strip() for part in text.split(","))
    for position, secret in enumerate(secrets, start=1):
        if len(secret) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"secret {position} must be at least {MIN_SECRET_KEY_LENGTH} characters long"
            )
        if secret in secrets[: position - 1]:
            raise ValueError(f"secret {position} repeats an earlier one")
    return secrets


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
    local_cache_size: int = Field(
        default=10_000,
        ge=0,
        le=1_000_000,
        description="With Redis: profile snapshots (and as many conversations' counters) each "
        "server process keeps in memory while Redis pushes their changes to it; 0: none, "
        "every turn asks Redis.",
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
    broker_url: str | None = Field(
        default=None,
        description="RabbitMQ that Rasa's pika event broker publishes to (amqp:// or "
        "amqps://), read by `personalize broker` (its --url wins); unset: give --url.",
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
    previous_secret_keys: SecretStr | None = Field(
        default=None,
        description="Former PERSONALIZE_SECRET_KEY values, comma-separated, most recent "
        "first: customers stored under a former secret's keys move to the current one when "
        "they are next seen. Keep them until every returning customer has moved.",
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
    recommend_max_per_category: int = Field(
        default=2,
        ge=1,
        le=20,
        description="At most this many products of one category in a list, unless the "
        "customer asked for a category.",
    )
    recommend_substitute_days: float = Field(
        default=14.0,
        ge=0,
        description="For this many days after a purchase, products of the same category and "
        "type come last in a list (0: never).",
    )
    recommend_repeat_after_days: dict[str, float] = Field(
        default_factory=dict,
        description='Consumable categories, as JSON such as {"beauty": 30}: a product bought '
        "there may be recommended again this many days after it was bought, and its "
        "substitutes come last for as long.",
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
    contact_keys: SecretStr | None = Field(
        default=None,
        description="Several contact keys, comma-separated id:base64key pairs (instead of "
        "PERSONALIZE_CONTACT_KEY): ciphertexts name the id of the key that opens them, and "
        "PERSONALIZE_CONTACT_KEY_ID names the one new ciphertexts are made with.",
    )
    contact_key_id: str = Field(
        default="k1",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        validate_default=True,
        description="Id stored with every ciphertext, so keys can be rotated later; with "
        "PERSONALIZE_CONTACT_KEYS, the id of the key new ciphertexts are made with.",
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
    consent_default: Literal["granted", "denied"] = Field(
        default="granted",
        description="What a purpose (personalization, tracking, marketing) a customer never "
        "answered for allows: granted is opt-out (CCPA-style: use data until told not to), "
        "denied is opt-in (GDPR-style: nothing without a yes).",
    )
    consent_policy_version: str | None = Field(
        default=None,
        max_length=32,
        description="Version of the privacy policy recorded with each consent change that "
        "names none (e.g. 2026-01); unset or empty: none recorded.",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Delete interactions older than this many days (`personalize privacy "
        "retention`, and once a day in `personalize worker`); unset: keep them forever.",
    )
    audit_retention_days: int = Field(
        default=730,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Delete audit log rows older than this many days (with retention).",
    )

    webhook_token: SecretStr | None = Field(
        default=None,
        description="Shared secret Rasa must send with every call to /webhook and /actions "
        "(endpoints.yml `token:`, a Bearer header or the Basic auth password); unset: the "
        "webhook is open to whoever reaches it.",
    )

    _check_webhook_token = field_validator("webhook_token")(_webhook_token_long_enough)

    log_format: Literal["console", "json"] = Field(
        default="console",
        description="Log lines for people (console) or one JSON object per line (json). "
        "Under `rasa run actions` the plugin formats the process's logs only when it is set.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector (e.g. http://collector:4318): the action server "
        "exports its spans to <endpoint>/v1/traces; unset: no tracing, unless endpoints.yml "
        "configures rasa-sdk's.",
    )

    _check_otlp_endpoint = field_validator("otlp_endpoint")(_otlp_endpoint_is_http)

    @field_validator("secret_key")
    @classmethod
    def _secret_key_long_enough(cls, value: str) -> str:
        if len(value) < 16:
            raise ValueError("must be at least 16 characters long")
        return value

    @field_validator("recommend_repeat_after_days")
    @classmethod
    def _repeat_days_per_category(cls, value: dict[str, float]) -> dict[str, float]:
        for category, days in value.items():
            if not category.strip():
                raise ValueError("a category name is empty")
            if not days >= 0:  # also refuses NaN
                raise ValueError(f"days for {category!r} must be a number >= 0, got {days}")
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

    @field_validator("consent_policy_version")
    @classmethod
    def _policy_version_is_one_line(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # set but empty: none recorded
        value = value.strip()
        if has_control_characters(value):
            raise ValueError("must be one line of text")
        return value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _empty_retention_keeps_forever(cls, value: object) -> object:
        # PERSONALIZE_RETENTION_DAYS= (empty) means unset, as an empty Redis URL does.
        return None if isinstance(value, str) and not value.strip() else value

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

    @field_validator("broker_url")
    @classmethod
    def _broker_url_has_an_amqp_scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # set but empty: none, as for PERSONALIZE_REDIS_URL
        value = value.strip()
        if not value.lower().startswith(AMQP_SCHEMES):
            # It usually holds a password: name the rule, not the value.
            raise ValueError(f"must start with {' or '.join(AMQP_SCHEMES)} (or be empty)")
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

    @field_validator("contact_keys")
    @classmethod
    def _contact_keys_are_pairs(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # set but empty: unset, as for PERSONALIZE_REDIS_URL
        if info.data.get("contact_key") is not None:
            # Two sources of keys would leave it unclear which one PERSONALIZE_CONTACT_KEY_ID
            # names; the single key is one pair of the list.
            raise ValueError(
                "set it or PERSONALIZE_CONTACT_KEY, not both (put the single key in the list "
                "as <its id>:<key>)"
            )
        parse_contact_keys(value.get_secret_value())
        return value

    @field_validator("contact_key_id")
    @classmethod
    def _contact_key_id_names_a_key(cls, value: str, info: ValidationInfo) -> str:
        keys = info.data.get("contact_keys")
        if isinstance(keys, SecretStr):
            known = parse_contact_keys(keys.get_secret_value())
            if value not in known:
                raise ValueError(
                    f"{value!r} is not an id of PERSONALIZE_CONTACT_KEYS "
                    f"({', '.join(known)}): name the key new contacts are encrypted with"
                )
        return value

    @field_validator("previous_secret_keys")
    @classmethod
    def _previous_secrets_are_former_ones(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # set but empty: none
        secrets = parse_previous_secrets(value.get_secret_value())
        current = info.data.get("secret_key")
        if current in secrets:
            position = secrets.index(current) + 1
            raise ValueError(
                f"secret {position} is the current PERSONALIZE_SECRET_KEY: list former ones only"
            )
        return value

    @property
    def uses_development_secret(self) -> bool:
        """Whether the built-in development secret is in use (unsafe outside a laptop)."""
        return self.secret_key == DEVELOPMENT_SECRET_KEY

    @property
    def identity_secret_value(self) -> str | None:
        """The identity secret as text, or None when user ids are not verified."""
        return self.identity_secret.get_secret_value() if self.identity_secret else None

    @property
    def previous_secrets(self) -> tuple[str, ...]:
        """Former HMAC secrets (``PERSONALIZE_PREVIOUS_SECRET_KEYS``), most recent first."""
        if self.previous_secret_keys is None:
            return ()
        return parse_previous_secrets(self.previous_secret_keys.get_secret_value())

    @property
    def contact_keys_by_id(self) -> dict[str, bytes]:
        """Every configured contact key by id: ``PERSONALIZE_CONTACT_KEYS``, or
        ``PERSONALIZE_CONTACT_KEY`` under ``PERSONALIZE_CONTACT_KEY_ID``; empty when neither
        is set (then a development key is used)."""
        if self.contact_keys is not None:
            return parse_contact_keys(self.contact_keys.get_secret_value())
        if self.contact_key is not None:
            return {self.contact_key_id: base64.b64decode(self.contact_key.get_secret_value())}
        return {}


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


class ObservabilitySettings(BaseSettings):
    """``PERSONALIZE_LOG_FORMAT`` and ``PERSONALIZE_OTLP_ENDPOINT`` alone, checked as
    :class:`Settings` does; ``log_format`` is None when the variable is not set."""

    model_config = Settings.model_config

    log_format: Literal["console", "json"] | None = None
    otlp_endpoint: str | None = None

    _check_otlp_endpoint = field_validator("otlp_endpoint")(_otlp_endpoint_is_http)


def load_observability_settings() -> ObservabilitySettings:
    """The logging and tracing variables, without the other settings.

    Read when a process starts, before its logs are written: a mistake in another
    setting must not change how that mistake is logged.

    Raises:
        ConfigurationError: a variable has an invalid value (the value is never quoted).
    """
    try:
        return ObservabilitySettings()
    except ValidationError as error:
        problems = "; ".join(
            f"PERSONALIZE_{'_'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None


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
