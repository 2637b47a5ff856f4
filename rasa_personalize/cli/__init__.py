"""The ``personalize`` command: thin, at the top of the house; nothing below imports it.

One module per command group (``db``, ``demo``, ``imports``, ``train``, ``segments``,
``rules``, ``profiles``, ``serve``, ``events``), the shared helpers in ``common``, and the
app that registers them all in ``main``. Each command imports its heavy dependencies when
it runs, so ``personalize --help`` stays fast.
"""

from __future__ import annotations

from rasa_personalize.cli.main import app, main

__all__ = ["app", "main"]
