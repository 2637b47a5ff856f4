"""Imports of customer and interaction files: normalise, deduplicate, merge, report.

``personalize import customers FILE.csv`` and ``personalize import interactions FILE``
are the front door (:mod:`rasa_personalize.cli.imports`); the modules below work on plain data
and an open session, so they are testable without the command line.
"""
