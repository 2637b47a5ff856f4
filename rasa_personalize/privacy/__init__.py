"""A customer's rights in plain Python: consent per purpose (and, later, export, erasure,
retention). Stores are reached through ``rasa_personalize.store``; nothing here speaks SQL."""
