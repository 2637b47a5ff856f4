"""What the store's database layer raises, named here so no module outside ``store/``
needs SQLAlchemy to catch it.

``DatabaseError`` is any failure of the database driver or of SQLAlchemy (connection
refused, statement timeout, constraint violation). Callers treat it as "the store did not
answer"; its message may quote SQL parameters, so log its class name only.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

DatabaseError = SQLAlchemyError

__all__ = ["DatabaseError"]
