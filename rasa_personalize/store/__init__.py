"""The SQL store: ORM models, engine set-up, migrations and repositories.

Rows never leave this package: repositories return the frozen dataclasses of
:mod:`rasa_personalize.store.records`.
"""
