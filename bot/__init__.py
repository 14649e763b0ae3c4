"""Composition root of Clients & Cars: settings, engine, CLI, bot wiring."""
