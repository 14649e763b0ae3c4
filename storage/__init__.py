"""Models, engine, repositories and migrations."""
