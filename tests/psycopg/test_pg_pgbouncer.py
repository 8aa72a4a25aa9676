"""A real PgBouncer in transaction mode: psycopg's prepared statements break there, and
``prepare_threshold=None`` (``prepare_threshold = false`` in TOML) is the fix.

Skipped when the ``pgbouncer`` binary is not installed (Debian: ``apt-get install pgbouncer``),
except with STRUCTUM_REQUIRE_SERVERS=1 (CI), where that fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _tools import pgbouncer

from structum_lab.plugins.database import PostgresDatabase, ProgrammingError


@pytest.fixture
def pgbouncer_url(pg_url: str) -> Iterator[str]:
    with pgbouncer() as url:
        yield url


def run_repeatedly(db: PostgresDatabase) -> None:
    for i in range(20):
        with db.transaction() as conn:
            conn.execute("SELECT 1")  # the first statement goes with BEGIN, bound on the client
            assert conn.execute("SELECT :i::int AS i", {"i": i}).scalar() == i  # prepared after 5


def test_transaction_mode_needs_prepared_statements_off(pgbouncer_url: str) -> None:
    with PostgresDatabase(pgbouncer_url, pool_size=2) as default, pytest.raises(ProgrammingError, match="prepared"):
        run_repeatedly(default)
    with PostgresDatabase(pgbouncer_url, pool_size=2, prepare_threshold=None) as bouncer_safe:
        run_repeatedly(bouncer_safe)
        assert bouncer_safe.health_check().healthy
