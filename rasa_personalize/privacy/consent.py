"""Consent per purpose: what a customer allowed, what that means, and recording a change.

Three purposes (``CONSENT_PURPOSES``):

- ``personalization``: profile data may shape the conversation;
- ``tracking``: the customer's behaviour (interaction events) may be stored;
- ``marketing``: offers may be made.

A purpose without a stored answer follows the configured default
(``PERSONALIZE_CONSENT_DEFAULT``): ``granted`` for opt-out regimes such as the CCPA,
``denied`` for opt-in regimes such as the GDPR. :class:`ConsentStatus` says, per purpose,
whether the customer answered and what is in effect; its
:attr:`~ConsentStatus.personalization_consent` is the slot value, ``unknown`` when the
customer never answered (the default decides what is done, and the dialogue may ask).

Every change goes through :func:`record_consent`, which writes the state, the history
and an audit row in the caller's transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.privacy.audit import Actor, record_audit
from rasa_personalize.store.consent import (
    MAX_POLICY_VERSION_LENGTH,
    ConsentChangeRecord,
    ConsentStateRecord,
    load_consent_history,
    load_consent_states,
    set_consent,
)
from rasa_personalize.store.models import CONSENT_PURPOSES
from rasa_personalize.store.types import Session
from rasa_personalize.text import has_control_characters

ConsentDefault = Literal["granted", "denied"]
# What a purpose's state is: the customer's answer, or "default" when they gave none.
PurposeState = Literal["granted", "denied", "default"]
# The personalization_consent slot.
SlotConsent = Literal["granted", "denied", "unknown"]
ConsentSource = Literal["chat", "api", "import", "cli"]

PURPOSES: Final = CONSENT_PURPOSES
PERSONALIZATION: Final = "personalization"
TRACKING: Final = "tracking"
MARKETING: Final = "marketing"
# Audit actions of a consent change.
GRANT_ACTION: Final = "consent.grant"
# History rows the consent view shows: a caller switching back and forth must not make
# every read of it grow without bound.
HISTORY_SHOWN: Final = 100
DENY_ACTION: Final = "consent.deny"
# Only purpose-like words are quoted back in errors; anything else may be personal data
# typed into the wrong field.
_QUOTABLE: Final = re.compile(r"^[A-Za-z_]{1,32}$")  # no digits or dots: no phone, no name
_REQUEST_FIELDS: Final = ("grant", "deny", "policy_version")


class ConsentInputError(InvalidInputError):
    """A consent request is invalid; ``field`` names the part (grant, deny, policy_version)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class PurposeConsent:
    """One purpose of a customer: their answer (or the default) and what is in effect."""

    purpose: str
    state: PurposeState
    effective: bool
    source: str | None = None
    policy_version: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ConsentStatus:
    """Every purpose of one customer, in the order of :data:`PURPOSES`."""

    purposes: tuple[PurposeConsent, ...]

    def of(self, purpose: str) -> PurposeConsent:
        """The consent for ``purpose``.

        Raises:
            KeyError: ``purpose`` is not one of :data:`PURPOSES`.
        """
        for consent in self.purposes:
            if consent.purpose == purpose:
                return consent
        raise KeyError(purpose)

    def allows(self, purpose: str) -> bool:
        """Whether ``purpose`` is in effect (the answer, else the default)."""
        return self.of(purpose).effective

    @property
    def personalization_consent(self) -> SlotConsent:
        """The ``personalization_consent`` slot: ``unknown`` when the customer never answered."""
        state = self.of(PERSONALIZATION).state
        return "unknown" if state == "default" else state


def resolve_consent(states: Iterable[ConsentStateRecord], default: ConsentDefault) -> ConsentStatus:
    """Each purpose's state and effect, from the stored answers and the default."""
    stored = {state.purpose: state for state in states}
    purposes = []
    for purpose in PURPOSES:
        answer = stored.get(purpose)
        if answer is None:
            purposes.append(PurposeConsent(purpose, "default", default == "granted"))
            continue
        purposes.append(
            PurposeConsent(
                purpose,
                "granted" if answer.granted else "denied",
                answer.granted,
                answer.source,
                answer.policy_version,
                answer.updated_at,
            )
        )
    return ConsentStatus(tuple(purposes))


async def load_consent(
    session: Session, customer_key: str, default: ConsentDefault
) -> ConsentStatus:
    """One customer's consent status, read from the store."""
    return resolve_consent(await load_consent_states(session, customer_key), default)


@dataclass(frozen=True)
class ConsentRequest:
    """A validated change: purposes to grant, purposes to deny, the policy they were given
    under."""

    grant: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    policy_version: str | None = None

    @property
    def decisions(self) -> dict[str, bool]:
        """purpose -> granted."""
        return {**dict.fromkeys(self.grant, True), **dict.fromkeys(self.deny, False)}


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) and _QUOTABLE.match(value) else "a value"


def _purposes(values: Sequence[object], field: str) -> tuple[str, ...]:
    chosen: list[str] = []
    for value in values:
        purpose = value.strip().lower() if isinstance(value, str) else value
        if not isinstance(purpose, str) or purpose not in PURPOSES:
            raise ConsentInputError(
                field, f"unknown purpose {_shown(value)}: use {', '.join(PURPOSES)}"
            )
        if purpose not in chosen:
            chosen.append(purpose)
    return tuple(chosen)


def consent_request(
    grant: Sequence[object] = (),
    deny: Sequence[object] = (),
    policy_version: object = None,
) -> ConsentRequest:
    """Check a consent change from outside (CLI options, an API body's fields).

    Purposes are matched without regard to case or surrounding spaces; a repeated one
    counts once.

    Raises:
        ConsentInputError: an unknown purpose, one purpose both granted and denied, or a
            policy version that is not short single-line text.
    """
    granted = _purposes(grant, "grant")
    denied = _purposes(deny, "deny")
    both = [purpose for purpose in granted if purpose in denied]
    if both:
        raise ConsentInputError(
            "deny", f"{', '.join(both)} cannot be both granted and denied in one change"
        )
    return ConsentRequest(granted, denied, _policy_version(policy_version))


def _policy_version(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConsentInputError("policy_version", f"must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_POLICY_VERSION_LENGTH or has_control_characters(text):
        raise ConsentInputError(
            "policy_version",
            f"must be at most {MAX_POLICY_VERSION_LENGTH} characters on one line",
        )
    return text


def parse_consent_body(payload: Any) -> ConsentRequest:
    """An HTTP body ``{"grant": [...], "deny": [...], "policy_version": "..."}``, checked.

    Raises:
        ConsentInputError: the body is not such an object, a field has the wrong type or
            value, or it changes nothing (``field`` says which).
    """
    if not isinstance(payload, Mapping):
        raise ConsentInputError("body", 'must be {"grant": [...], "deny": [...]}')
    for name in payload:
        if name not in _REQUEST_FIELDS:
            raise ConsentInputError(
                str(name) if _QUOTABLE.match(str(name)) else "body",
                f"unknown field: use {', '.join(_REQUEST_FIELDS)}",
            )
    lists: dict[str, list[Any]] = {}
    for name in ("grant", "deny"):
        value = payload.get(name, [])
        if value is None:
            value = []
        if not isinstance(value, list):
            raise ConsentInputError(name, f"must be a list of purposes, not {type(value).__name__}")
        lists[name] = value
    if not lists["grant"] and not lists["deny"]:
        raise ConsentInputError("grant", "nothing to change: name purposes in grant or deny")
    return consent_request(lists["grant"], lists["deny"], payload.get("policy_version"))


async def record_consent(
    session: Session,
    customer_key: str,
    request: ConsentRequest,
    *,
    source: ConsentSource,
    actor: Actor,
    now: datetime,
    default_policy_version: str | None = None,
) -> tuple[ConsentStateRecord, ...]:
    """Store a consent change with its history and audit rows, in the caller's transaction.

    Answers equal to the stored ones change nothing (see
    :func:`rasa_personalize.store.consent.set_consent`). One audit row is appended per
    kind of answer requested: ``consent.grant`` and/or ``consent.deny``, outcome
    ``changed`` or ``unchanged``, with the purposes requested and changed in ``detail``.
    The caller invalidates the customer's cached profile after the commit.

    Args:
        actor: who asks: ``Actor.cli()``, or ``Actor.api(key id, label)``.
        default_policy_version: recorded when the request names none
            (``PERSONALIZE_CONSENT_POLICY_VERSION``).

    Returns:
        The states that changed, as now stored.
    """
    policy_version = request.policy_version or default_policy_version
    changed = await set_consent(
        session,
        customer_key,
        request.decisions,
        source=source,
        policy_version=policy_version,
        now=now,
    )
    changed_purposes = {state.purpose for state in changed}
    for action, purposes in ((GRANT_ACTION, request.grant), (DENY_ACTION, request.deny)):
        if not purposes:
            continue
        done = [purpose for purpose in purposes if purpose in changed_purposes]
        await record_audit(
            session,
            actor,
            action,
            "changed" if done else "unchanged",
            customer_key=customer_key,
            now=now,
            detail={
                "purposes": list(purposes),
                "changed": done,
                "source": source,
                "policy_version": policy_version,
            },
        )
    return changed


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def consent_document(
    customer: str, status: ConsentStatus, history: Iterable[ConsentChangeRecord]
) -> dict[str, Any]:
    """The JSON answer of the API and of ``personalize privacy consent --json``.

    ``customer`` is the id as the caller gave it (they know it already); nothing else
    here names the person.
    """
    return {
        "customer": customer,
        "purposes": {
            consent.purpose: {
                "state": consent.state,
                "effective": consent.effective,
                "source": consent.source,
                "policy_version": consent.policy_version,
                "updated_at": _time(consent.updated_at),
            }
            for consent in status.purposes
        },
        "history": [
            {
                "purpose": change.purpose,
                "decision": change.decision,
                "source": change.source,
                "policy_version": change.policy_version,
                "recorded_at": _time(change.recorded_at),
            }
            for change in history
        ],
    }


async def load_consent_document(
    session: Session, customer: str, customer_key: str, default: ConsentDefault
) -> dict[str, Any]:
    """:func:`consent_document` of one customer, read in ``session``, with the newest
    :data:`HISTORY_SHOWN` history rows (the export carries all of them)."""
    status = await load_consent(session, customer_key, default)
    history = await load_consent_history(session, customer_key, limit=HISTORY_SHOWN)
    return consent_document(customer, status, history)
