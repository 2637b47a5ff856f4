"""Rasa actions: thin classes that read the tracker, call the engine and return events."""
