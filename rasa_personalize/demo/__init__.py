"""The demo: a deterministic synthetic shop to seed the store with, and its named customers."""
