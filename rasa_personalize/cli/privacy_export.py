"""``personalize privacy export CUSTOMER [--out FILE]``: everything held about one customer,
as one JSON document (the rights of access and to data portability)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from rasa_personalize.cli.common import (
    DatabaseOption,
    batch_store,
    customer_id_or_fail,
    errors,
    fail,
    guarded,
    load_cli_settings,
    run_job,
)
from rasa_personalize.errors import PersonalizeError

Write = Callable[[str], None]


class ExportWriteError(PersonalizeError):
    """The export file cannot be written."""


def register(group: typer.Typer) -> None:
    """Add ``export`` to ``group``."""
    group.command("export")(export)


def export(
    customer: Annotated[str, typer.Argument(help="The customer's external id.")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the document to this file (atomically; readable by you only) "
            "instead of standard output.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Print everything held about one customer as one JSON document: profile, contacts
    (decrypted), consent, tags, segments, recommendations, merged keys and interactions.

    The format is described in docs/privacy.md (Export). Each export is recorded in the
    audit log (`personalize audit list --action privacy.export`). An unknown customer
    exits 1.
    """
    from rasa_personalize.identity import customer_key
    from rasa_personalize.imports.contacts import contact_cipher
    from rasa_personalize.privacy.audit import Actor
    from rasa_personalize.privacy.export import export_chunks
    from rasa_personalize.privacy.secret_rotation import rekey_on_miss

    settings = load_cli_settings(database_url)
    external_id = customer_id_or_fail(customer)
    key = customer_key(settings.secret_key, external_id)
    cipher = contact_cipher(settings)

    async def job(write: Write) -> None:
        store = batch_store(settings)
        try:
            # A customer not seen since the secret changed is still under a former key.
            await guarded(rekey_on_miss(store.sessions, settings, external_id))
            pieces = export_chunks(store.sessions, key, cipher=cipher, actor=Actor.cli())
            while True:
                try:
                    piece = await guarded(anext(pieces))
                except StopAsyncIteration:
                    break
                write(piece)
        finally:
            await store.dispose()

    # An unknown customer, an unreachable store or a failed write ends in run_job: one
    # line on stderr (never the id asked for) and exit 1.
    if out is None:
        run_job(lambda: job(lambda piece: typer.echo(piece, nl=False)))
        return
    try:
        target = write_atomically(out, lambda write: run_job(lambda: job(write)))
    except ExportWriteError as error:
        fail(error)
    errors.print(f"Export written to {target}", highlight=False, markup=False)


def write_atomically(path: Path, produce: Callable[[Write], None]) -> Path:
    """Have ``produce`` write text, through the callback it is given, into a temporary
    file beside ``path``, then rename that over ``path``: readers see the old file or
    the whole new one, never part of it, and a failure leaves no file behind.

    Returns:
        The path written.

    Raises:
        ExportWriteError: the file cannot be created or written.
    """
    path = path.expanduser()
    if path.is_symlink() or (path.exists() and not path.is_file()):
        # Replacing it would swap a link, a pipe or a device for a file of personal data.
        raise ExportWriteError(f"cannot write {path}: not a regular file")
    try:
        # mkstemp makes the file readable by its owner only: it holds personal data.
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise ExportWriteError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:

            def write(piece: str) -> None:
                try:
                    stream.write(piece)
                except OSError as error:
                    raise ExportWriteError(f"cannot write {path}: {error.strerror}") from None

            produce(write)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ExportWriteError(f"cannot write {path}: {error.strerror}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
