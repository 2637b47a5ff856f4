"""The process's PersonalizationService, created on first use inside the running loop.

rasa-sdk instantiates actions itself, so they cannot be handed a service; they ask for it
here. Async engines belong to one event loop, so a service is kept per loop.
"""

from __future__ import annotations

import asyncio
import logging

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.settings import load_settings

logger = logging.getLogger(__name__)

_services: dict[asyncio.AbstractEventLoop, PersonalizationService] = {}


def personalization_service() -> PersonalizationService:
    """The service of the running event loop, created from the environment on first use.

    Raises:
        ConfigurationError: the ``PERSONALIZE_*`` settings are invalid.
    """
    loop = asyncio.get_running_loop()
    service = _services.get(loop)
    if service is None:
        for closed in [other for other in _services if other.is_closed()]:
            del _services[closed]
        service = _services[loop] = PersonalizationService(load_settings())
        warn_if_identities_unverified(service)
    return service


# Warnings already given by this process (one per start, not one per event loop).
_warned: set[str] = set()


def warn_if_identities_unverified(service: PersonalizationService) -> None:
    """Once per process: without an identity secret, anyone may claim any ``user_id``."""
    if service.settings.identity_secret is not None or "unverified" in _warned:
        return
    _warned.add("unverified")
    logger.warning(
        "PERSONALIZE_IDENTITY_SECRET is not set: metadata user_ids are trusted as sent, so "
        "a visitor can claim another customer's id. Set it and send metadata.user_hash "
        "(see rasa_personalize.identity.sign_user_id) before real customers talk to this "
        "server."
    )


def current_service() -> PersonalizationService | None:
    """The running loop's service if one exists; never creates it."""
    return _services.get(asyncio.get_running_loop())


def install_service(service: PersonalizationService) -> None:
    """Use ``service`` for the running loop (tests, embedding, custom servers)."""
    _services[asyncio.get_running_loop()] = service


async def shutdown_service() -> None:
    """Close and forget the running loop's service, if any."""
    service = _services.pop(asyncio.get_running_loop(), None)
    if service is not None:
        await service.close()
