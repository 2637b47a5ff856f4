"""Purchase propensity: a calibrated probability that a customer buys in the next 7 days.

``personalize propensity train`` builds features from each customer's history
(:mod:`~rasa_personalize.propensity.features`), fits a gradient-boosted classifier on a
time split and calibrates it (:mod:`~rasa_personalize.propensity.model`), measures it
against two baselines (:mod:`~rasa_personalize.propensity.evaluation`), stores every
customer's score (:mod:`~rasa_personalize.propensity.scoring`) and saves the version with
its classifier (:mod:`~rasa_personalize.propensity.artifacts`), so that
``personalize models promote`` and ``rollback`` can score with it again later. The hot
path only reads the score from the profile; nothing here is imported by the action server.
"""
