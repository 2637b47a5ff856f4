"""Recommendations: ALS (implicit), content (TF-IDF), popularity; filters, artifacts, evaluation.

Each module is one idea and works on plain data (numpy arrays, string ids, frozen
dataclasses), so the engine, the CLI and the tests use it without Rasa or SQL:

- ``ids``: stable external id <-> row maps kept next to every model.
- ``interactions``: interaction data and the per-kind confidence weights.
- ``filters``: the item catalogue, business filters and the shared top-n selection.
- ``als``: ``AlsRecommender``, a typed adapter over implicit's CPU ALS.
- ``content``: ``ContentRecommender``, TF-IDF over product text (fitted with scikit-learn,
  served with numpy: ``TextVectorizer``).
- ``popularity``: ``PopularityRecommender``, global and per segment.
- ``confidence``: how much each stored interaction counts, in training and serving.
- ``versions``: versioned model directories, written atomically and hot-swapped.
- ``artifacts``: trained ALS models on disk and ``ModelHolder``; ``content_artifacts``:
  the fitted content model, precomputed for servers.
- ``resources``: what a server keeps in memory (catalogue, content vectors, popularity);
  ``service``: the fallback chain that serves from it.
- ``evaluation``: the offline protocol and metrics; ``datasets``: MovieLens-100k.

Importing this package loads nothing heavy and reads no files.
"""
