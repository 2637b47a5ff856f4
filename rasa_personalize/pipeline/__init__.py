"""The offline jobs as one pipeline: run once (:mod:`.run`) or on a schedule (:mod:`.schedule`).

``personalize pipeline run`` calls the same functions as the separate commands, in the
order each needs the previous one's output: profile metrics, the recommender (behind
its guardrail), segments, tags, purchase propensity (behind its guardrail), the
precomputed lists of the serving recommender.
"""

from __future__ import annotations

from typing import Final

# The stages in the order they run (see :mod:`.run`).
STAGES: Final = ("metrics", "train", "segment", "tag", "propensity", "precompute")
