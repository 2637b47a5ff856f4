"""Optional dependency groups ("extras") and the one-line error when one is missing.

The base install runs an action server on the embedded SQLite store and every offline
job. Redis, PostgreSQL and the pictures of the segment report come with extras
(``pip install 'rasa-personalize[redis]'``). A feature checks for its extra when it is
configured or asked for (settings, service creation, a command's option), so a missing
one fails at once with :class:`~rasa_personalize.errors.MissingExtraError`, which names
the extra, rather than with an ImportError on the first request.

Checking imports nothing: ``importlib.util.find_spec`` only locates the module.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Final

from rasa_personalize.errors import MissingExtraError

if TYPE_CHECKING:
    from rasa_personalize.settings import Settings

REDIS: Final = "redis"
POSTGRES: Final = "postgres"
MYSQL: Final = "mysql"
REPORTS: Final = "reports"

# Database URL scheme (before any "+driver") -> (async driver module, extra that installs it).
DATABASE_DRIVERS: Final = {
    "postgresql": ("asyncpg", POSTGRES),
    "postgres": ("asyncpg", POSTGRES),
    "mysql": ("asyncmy", MYSQL),
    "mariadb": ("asyncmy", MYSQL),
}


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a stub in sys.modules
        return False


def require_extra(module: str, *, feature: str, extra: str) -> None:
    """Fail unless ``module`` is installed.

    Raises:
        MissingExtraError: it is not; the message names ``feature`` and ``extra``.
    """
    if not is_installed(module):
        raise MissingExtraError(feature, extra)


def require_redis(feature: str = "PERSONALIZE_REDIS_URL (Redis)") -> None:
    """Fail unless the Redis client is installed.

    Raises:
        MissingExtraError: it is not.
    """
    require_extra("redis", feature=feature, extra=REDIS)


def database_backend(url: str) -> str:
    """The database a URL names, without its driver: ``postgresql+asyncpg://`` -> postgresql."""
    return url.partition(":")[0].partition("+")[0].strip().lower()


def check_settings_extras(settings: Settings) -> None:
    """Fail for the first configured feature whose extra is not installed.

    Raises:
        MissingExtraError: Redis is configured without ``redis``, or the database URL
            needs a driver that is not installed.
    """
    if settings.redis_url:
        require_redis()
    backend = database_backend(settings.database_url)
    driver = DATABASE_DRIVERS.get(backend)
    if driver is not None:
        module, extra = driver
        require_extra(module, feature=f"a {backend}:// PERSONALIZE_DATABASE_URL", extra=extra)
