"""``personalize keys rotate-contacts``: contact details re-encrypted under the current key.

The secret behind customer keys is rotated without a command: customers move to their
new key when they are next seen (see docs/privacy.md, "Key rotation").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

import typer

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    DatabaseOption,
    batch_store,
    console,
    fail,
    guarded,
    load_cli_settings,
    run_job,
    stage_progress,
)

if TYPE_CHECKING:
    from rasa_personalize.privacy.contact_rotation import ContactRotation

MAX_BATCH_SIZE: Final = 10_000


def register(group: typer.Typer) -> None:
    """Add ``rotate-contacts`` to ``group``."""
    group.command("rotate-contacts")(rotate_contacts_command)


def rotate_contacts_command(
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            max=MAX_BATCH_SIZE,
            help="Customers per transaction; each batch commits on its own.",
        ),
    ] = 500,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Decrypt everything and count what would change; write nothing."
        ),
    ] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Re-encrypt every contact field that is not under the current contact key.

    The current key is PERSONALIZE_CONTACT_KEY_ID's key of PERSONALIZE_CONTACT_KEYS; the
    others still decrypt. Safe to stop and run again: fields already under the current
    key are skipped. When it reports nothing left, remove the old keys from the list.
    """
    from rasa_personalize.imports.contacts import contact_cipher
    from rasa_personalize.privacy.contact_rotation import pending_contacts, rotate_contacts

    settings = load_cli_settings(database_url, real_secret=True)
    if not settings.contact_keys_by_id:
        fail(
            "no contact key is configured, so there is none to rotate to: set "
            "PERSONALIZE_CONTACT_KEYS (id:base64key pairs) and PERSONALIZE_CONTACT_KEY_ID",
            EXIT_USAGE,
        )
    cipher = contact_cipher(settings)

    async def job() -> ContactRotation:
        store = batch_store(settings)
        try:
            pending = await guarded(pending_contacts(store.sessions, cipher.current_key_id))
            with stage_progress() as advance:
                advance("re-encrypting", 0, pending.customers)
                return await guarded(
                    rotate_contacts(
                        store.sessions,
                        cipher,
                        batch_size=batch_size,
                        dry_run=dry_run,
                        progress=lambda done, total: advance("re-encrypting", done, total),
                    )
                )
        finally:
            await store.dispose()

    rotation = run_job(job)
    _report(rotation)
    if rotation.failed:
        key_ids = ", ".join(sorted(rotation.failed_key_ids))
        fail(
            f"{rotation.failed:,} contact field(s) did not decrypt and were left as they are "
            f"(key ids: {key_ids}): add their keys to PERSONALIZE_CONTACT_KEYS and run again"
        )


def _report(rotation: ContactRotation) -> None:
    verb = "Would re-encrypt" if rotation.dry_run else "Re-encrypted"
    sources = ", ".join(f"{key_id}: {n:,}" for key_id, n in sorted(rotation.from_key_ids.items()))
    console.print(
        f"{verb} {rotation.fields:,} contact field(s) of {rotation.customers:,} customer(s) "
        f"under key {rotation.key_id!r}" + (f" (from {sources})" if sources else "") + ".",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
