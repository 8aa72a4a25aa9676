"""Integrations built on the public API: FastAPI, the test helpers and pytest plugin, the CLI."""
