"""Next-best offer: learn P(accept | offer, segment) from the offers shown and what followed.

A rule that says ``offer_type: best`` (:mod:`rasa_personalize.rules.offers`) lets the
engine choose among its candidate offers the one with the highest expected value,
P(accept | offer, segment) x the offer's value. This package learns the probabilities:

- ``model``: :class:`OfferModel`, per (offer, segment) acceptance rates with a Beta prior
  centred on the offer's rate over all segments (empirical Bayes), and the number of
  exposures a candidate needs before it may be compared (``min_exposures``);
- ``artifacts``: the model as a small versioned JSON artifact under
  ``PERSONALIZE_MODEL_DIR/offers/``, and the holder a server swaps new ones in with;
- ``training``: ``personalize offers train``: count exposures and acceptances in the store
  (:mod:`rasa_personalize.store.offers`), fit, write a new version.

What "accepted" means: the chat has no "yes" to an offer, so an offer shown counts as
accepted when the customer buys (or, with ``goal`` cart, adds to the cart) within the
window after it was shown, and no other offer was shown in between.

The model holds counts per offer and segment only, nothing of any one customer. Importing
this package loads nothing heavy and reads no files.
"""

from __future__ import annotations
