"""Customer segments: archetype rules now; features and clustering build on this package."""
