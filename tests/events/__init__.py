"""Tests of actions.events."""
