"""Fixtures for the FastAPI integration tests: databases configured through STRUCTUM_* env vars.

Opt-in (``pytest.mark.usefixtures("fastapi_isolation")``), so the other tests in this
folder are not affected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import registered_databases, remove_database, set_database


@pytest.fixture
def fastapi_isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No config files, no global provider, and the registry as it was before the test."""
    monkeypatch.chdir(tmp_path)
    set_config_provider(None)
    before = registered_databases()
    yield
    set_config_provider(None)
    for name in registered_databases():
        remove_database(name)
    for name, db in before.items():
        set_database(db, name)


@pytest.fixture(params=["sqlalchemy", "psycopg"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """The backend the configured databases use."""
    return str(request.param)


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, db_backend: str) -> Callable[..., None]:
    """``configure("primary_db", url, pool_size=2)``: STRUCTUM_PRIMARY_DB__URL=... and friends."""

    def apply(namespace: str, url: str, **options: Any) -> None:
        prefix = f"STRUCTUM_{namespace.upper()}__"
        monkeypatch.setenv(prefix + "URL", url)
        monkeypatch.setenv(prefix + "BACKEND", db_backend)
        for key, value in options.items():
            monkeypatch.setenv(prefix + key.upper(), str(value))

    return apply
