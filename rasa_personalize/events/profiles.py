"""Profiles over the API: the JSON view of a snapshot, and validated profile updates."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.clock import utc_now
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.store.models import Customer, CustomerAlias, CustomerProfile
from rasa_personalize.store.records import CustomerSnapshot

# The attributes document is read on the hot path: keep it small.
MAX_ATTRIBUTES_BYTES: Final = 16 * 1024


class DemographicsUpdate(BaseModel):
    """Demographics; a field left out stays as it is, ``null`` clears it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    age: int | None = Field(default=None, ge=0, lt=150)
    gender: str | None = Field(default=None, max_length=32)
    country: str | None = Field(default=None, max_length=64)
    city: str | None = Field(default=None, max_length=128)


class ProfileUpdate(BaseModel):
    """The body of ``PUT /personalize/profiles/<customer>``; every part optional."""

    model_config = ConfigDict(extra="forbid", strict=True)

    loyalty_tier: Literal["none", "silver", "gold", "platinum"] | None = None
    demographics: DemographicsUpdate | None = None
    # Replaces the stored attributes document when given.
    attributes: dict[str, Any] | None = None

    @field_validator("attributes")
    @classmethod
    def _attributes_small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value)) > MAX_ATTRIBUTES_BYTES:
            raise ValueError(f"must encode to at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
        return value


def describe_validation_error(error: ValidationError) -> str:
    """Field path and reason of the first error, never the input value."""
    first = error.errors(include_input=False, include_url=False)[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{location}: {first['msg']}{more}"


def parse_profile_update(payload: Any) -> ProfileUpdate:
    """Validate a PUT body.

    Raises:
        InvalidInputError: names the first invalid field, quoting no values.
    """
    if not isinstance(payload, dict):
        raise InvalidInputError("the body must be a JSON object")
    try:
        return ProfileUpdate.model_validate(payload)
    except ValidationError as error:
        raise InvalidInputError(describe_validation_error(error)) from None


async def write_profile(session: AsyncSession, key: str, change: ProfileUpdate) -> bool:
    """Apply ``change`` to the customer with ``key``, creating them if missing.

    Returns:
        True when the customer was created.
    """
    dialect = session.get_bind().dialect.name
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    now = utc_now()
    # The old key of a customer merged into another (an import's dedupe) reaches the survivor.
    aliased = await session.scalar(
        select(CustomerAlias.customer_id).where(CustomerAlias.alias_key == key)
    )
    if aliased is not None:
        return await _apply_profile_change(session, int(aliased), change, now, created=False)
    created = await session.execute(
        upsert(Customer)
        .values(customer_key=key, created_at=now, loyalty_tier="none")
        .on_conflict_do_nothing(index_elements=["customer_key"])
        .returning(Customer.id)
    )
    was_created = created.scalar_one_or_none() is not None
    customer_id = await session.scalar(select(Customer.id).where(Customer.customer_key == key))
    assert customer_id is not None  # inserted above, or there already
    return await _apply_profile_change(session, customer_id, change, now, created=was_created)


async def _apply_profile_change(
    session: AsyncSession, customer_id: int, change: ProfileUpdate, now: datetime, *, created: bool
) -> bool:
    fields: dict[str, Any] = {}
    if change.loyalty_tier is not None:
        fields["loyalty_tier"] = change.loyalty_tier
    if change.demographics is not None:
        fields.update(change.demographics.model_dump(exclude_unset=True))
    if fields:
        await session.execute(update(Customer).where(Customer.id == customer_id).values(fields))
    profile = await session.get(CustomerProfile, customer_id)
    if profile is None:
        session.add(
            CustomerProfile(
                customer_id=customer_id,
                attributes=change.attributes or {},
                metrics={},
                version=1,
                updated_at=now,
            )
        )
    elif change.attributes is not None or fields:
        # Tier and demographics live on the customer row, but the version guards every
        # cached copy of the profile, so any change bumps it.
        if change.attributes is not None:
            profile.attributes = change.attributes
        profile.version += 1
        profile.updated_at = now
    await session.flush()
    return created


def profile_document(snapshot: CustomerSnapshot) -> dict[str, Any]:
    """The JSON answer of ``GET /personalize/profiles/<customer>`` (no external id)."""
    return {
        "loyalty_tier": snapshot.loyalty_tier,
        "created_at": snapshot.created_at.isoformat(),
        "demographics": asdict(snapshot.demographics),
        "attributes": dict(snapshot.attributes),
        "metrics": snapshot.metrics.to_document(),
        "tags": [
            {"tag": tag.tag, "source": tag.source, "weight": tag.weight} for tag in snapshot.tags
        ],
        "segment": (
            {
                "segment": snapshot.segment.segment,
                "method": snapshot.segment.method,
                "model_version": snapshot.segment.model_version,
                "score": snapshot.segment.score,
                "assigned_at": snapshot.segment.assigned_at.isoformat(),
            }
            if snapshot.segment is not None
            else None
        ),
        "profile_version": snapshot.profile_version,
    }
