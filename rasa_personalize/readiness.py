"""Readiness: whether this action server can personalize now, answered on ``GET /ready``.

rasa-sdk's ``/health`` says the process is alive; it answers "ok" while the store or Redis
is down or no model is loaded, which is what a liveness probe needs (restarting would not
fix any of those). ``/ready`` answers 200 only when every dependency answers: the store
(``SELECT 1``), Redis (``PING``, when configured), a trained recommendation model, and a
valid rule file. Otherwise 503, with the same body naming each check.

The checks run concurrently and each is bounded by ``CHECK_TIMEOUT_S``, so a hanging
dependency costs the probe about a second. Details name what is wrong and never quote a
driver's message: those may carry URLs with passwords or SQL parameters (customer keys),
so only error class names appear.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Final

from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from rasa_personalize.cache.breaker import RedisUnavailableError
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.errors import PersonalizeError
from rasa_personalize.recommend.versions import list_versions
from rasa_personalize.runtime import personalization_service
from rasa_personalize.store.errors import DatabaseError

logger = logging.getLogger(__name__)

READY_PATH: Final = "/ready"
# Long enough for a healthy store or Redis on another host, short enough that a
# Kubernetes probe with the default 1 s timeout plus one retry sees the answer.
CHECK_TIMEOUT_S: Final = 1.0


@dataclass(frozen=True)
class Check:
    """One dependency's state: ``detail`` says what was found, or what is wrong."""

    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        """``{"ok": ..., "detail": ...}``."""
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Readiness:
    """Every check by name; ready when all are ok."""

    checks: dict[str, Check]

    @property
    def ready(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        """The ``/ready`` body: ``{"ready": bool, "checks": {name: {"ok", "detail"}}}``."""
        return {
            "ready": self.ready,
            "checks": {name: check.as_json() for name, check in self.checks.items()},
        }


async def check_store(service: PersonalizationService, timeout_s: float) -> Check:
    """The store answers ``SELECT 1`` within ``timeout_s``."""
    try:
        await service.store.ping(timeout_s)
    except TimeoutError:  # before OSError, of which it is a subclass
        return Check(False, f"store did not answer within {timeout_s:.1f} s")
    except (DatabaseError, OSError) as error:
        return Check(False, f"store did not answer ({type(error).__name__})")
    return Check(True, "store answered SELECT 1")


async def check_redis(service: PersonalizationService, timeout_s: float) -> Check:
    """Redis answers ``PING`` within ``timeout_s``; ok without asking when none is set."""
    if service.settings.redis_url is None:
        return Check(True, "not configured")
    try:
        await service.ping_redis(timeout_s)
    except RedisUnavailableError as error:
        cause = error.__cause__
        if isinstance(cause, TimeoutError):
            return Check(False, f"redis did not answer PING within {timeout_s:.1f} s")
        return Check(False, f"redis did not answer PING ({type(cause).__name__})")
    return Check(True, "redis answered PING")


async def check_model(service: PersonalizationService, timeout_s: float) -> Check:
    """A trained ALS model is loaded (loading it now if it was not yet)."""
    holder = service.recommendations.models
    model_dir = service.settings.model_dir
    try:
        # The holder's own rate-limited check: a model trained since start is picked up
        # within ``model_check_every_s``, as it is for conversations.
        artifact = await asyncio.wait_for(holder.get_async(), timeout=timeout_s)
    except TimeoutError:
        return Check(False, f"model in {model_dir} still loading after {timeout_s:.1f} s")
    if artifact is not None:
        return Check(True, f"model {artifact.version} loaded from {model_dir}")
    try:
        trained = bool(await asyncio.to_thread(list_versions, holder.model_dir))
    except OSError as error:
        return Check(False, f"cannot read {model_dir} ({type(error).__name__})")
    if trained:
        return Check(False, f"the model in {model_dir} could not be loaded: see the server log")
    return Check(False, f"no trained model in {model_dir}: run personalize train")


async def check_rules(service: PersonalizationService, timeout_s: float) -> Check:
    """The rule file (if any) loaded without problems."""
    book = service.rules
    try:
        # In a thread: it may stat and read the file (a hot reload), which must not block
        # the loop nor, on a hanging file system, the probe.
        rules = await asyncio.wait_for(asyncio.to_thread(book.current), timeout=timeout_s)
    except TimeoutError:
        return Check(False, f"{book.path} could not be read within {timeout_s:.1f} s")
    problems = len(book.problems)
    if problems:
        return Check(
            False,
            f"{book.path}: {problems} problem{'s' if problems != 1 else ''}"
            f" (personalize rules check {book.path} lists them)",
        )
    return Check(True, f"{len(rules.rules)} rules from {rules.source}")


async def _guarded(name: str, check: Awaitable[Check]) -> Check:
    try:
        return await check
    except Exception as error:
        # A bug in a check, not a dependency's state: logged in full, and the probe still
        # answers (not ready) rather than a 500 without the other checks.
        logger.exception("Readiness check %s failed unexpectedly", name)
        return Check(False, f"check failed unexpectedly ({type(error).__name__})")


async def check_readiness(
    service: PersonalizationService, timeout_s: float = CHECK_TIMEOUT_S
) -> Readiness:
    """Run every check concurrently, each bounded by ``timeout_s``."""
    checks = {
        "store": check_store(service, timeout_s),
        "redis": check_redis(service, timeout_s),
        "model": check_model(service, timeout_s),
        "rules": check_rules(service, timeout_s),
    }
    results = await asyncio.gather(*(_guarded(name, check) for name, check in checks.items()))
    return Readiness(dict(zip(checks, results, strict=True)))


def attach_readiness_route(app: Sanic[Any, Any]) -> Sanic[Any, Any]:
    """Add ``GET /ready`` to ``app``: 200 when ready, else 503; same body either way.

    Open like ``/health`` (no webhook token): it carries no customer data.
    """

    async def ready(_request: Request) -> HTTPResponse:
        try:
            service = personalization_service()
        except PersonalizeError as error:
            # The server's start logged the reason in full; the probe names the class.
            readiness = Readiness(
                {
                    "settings": Check(
                        False, f"personalization is not configured ({type(error).__name__})"
                    )
                }
            )
        else:
            readiness = await check_readiness(service)
        return json_response(readiness.as_json(), status=200 if readiness.ready else 503)

    app.add_route(ready, READY_PATH, methods=["GET"], name="personalize_ready")
    return app
