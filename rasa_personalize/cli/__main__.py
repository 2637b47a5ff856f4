"""``python -m rasa_personalize.cli``: the ``personalize`` command without the console script."""

from __future__ import annotations

from rasa_personalize.cli.main import main

if __name__ == "__main__":
    main()
