"""Customer segments: features, clustering, naming clusters after archetypes, tag rules.

The archetype rule (``archetypes.py``) answers until a clustering run stores assignments.
"""
