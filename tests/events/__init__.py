"""Tests of rasa_personalize.events."""
