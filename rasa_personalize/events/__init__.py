"""Interaction events: validation, ingestion into SQL, the HTTP API and API keys."""
