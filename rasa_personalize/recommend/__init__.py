"""Recommendations: ALS (implicit), content (TF-IDF), popularity; filters, artifacts, evaluation.

Each module is one idea and works on plain data (numpy arrays, string ids, frozen
dataclasses), so the engine, the CLI and the tests use it without Rasa or SQL:

- ``ids``: stable external id <-> row maps kept next to every model.
- ``interactions``: interaction data and the per-kind confidence weights.
- ``filters``: the item catalogue, business filters and the shared top-n selection.
- ``als``: ``AlsRecommender``, a typed adapter over implicit's CPU ALS.
- ``content``: ``ContentRecommender``, TF-IDF over product text.
- ``popularity``: ``PopularityRecommender``, global and per segment.
- ``artifacts``: atomic save/load of trained ALS models and ``ModelHolder`` for hot swaps.
- ``evaluation``: the offline protocol and metrics; ``datasets``: MovieLens-100k.

Importing this package loads nothing heavy and reads no files.
"""
