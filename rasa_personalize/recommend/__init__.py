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
- ``ease``: EASE item-item weights; ``served``: ``ServedModel``, ALS or the ALS + EASE
  blend that ``personalize train`` chose on validation (``training``).
- ``associations``: products bought together (lift) and first-seen times;
  ``association_artifacts``: their artifact.
- ``resources``: what a server keeps in memory (catalogue, content vectors, popularity,
  product types); ``service``: the fallback chain that serves from it;
  ``reranking``: the list a shopper sees (strategies within relevance, caps, variety,
  substitutes); ``reasons``: reasons that are true.
- ``evaluation``: the offline protocol and metrics; ``protocols``: time-based splits,
  leave-last-one-out and more metrics; ``baselines``: EASE, item-kNN, BPR;
  ``datasets``: MovieLens-100k.

Importing this package loads nothing heavy and reads no files.
"""
