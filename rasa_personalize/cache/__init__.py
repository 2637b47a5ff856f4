"""Redis-backed caches. Optional: with ``PERSONALIZE_REDIS_URL`` unset everything reads SQL."""
