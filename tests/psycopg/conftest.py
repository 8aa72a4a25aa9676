"""Fixtures of the psycopg backend tests: databases on a fresh schema, an independent
observer, and a TCP proxy that can drop every connection or refuse new ones (the silent
listener is the root conftest's ``silent_server``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_servers import Proxy

from structum_lab.plugins.database import PostgresDatabase


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    p = Proxy()
    yield p
    p.down()


@pytest.fixture
def open_pg(pg_schema_url: str) -> Iterator[Any]:
    """A factory of PostgresDatabase on the test's schema; every one is shut down afterwards."""
    opened: list[PostgresDatabase] = []

    def factory(url: str | None = None, **options: Any) -> PostgresDatabase:
        db = PostgresDatabase(url or pg_schema_url, **options)
        opened.append(db)
        return db

    yield factory
    for db in opened:
        db.shutdown()


@pytest.fixture
def observer(pg_schema_url: str) -> Iterator[Any]:
    """A plain psycopg connection in autocommit: sees only what is committed."""
    import psycopg

    with psycopg.connect(pg_schema_url, autocommit=True) as conn:
        yield conn
