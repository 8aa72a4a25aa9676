"""Scenario 9, PgBouncer: through a real PgBouncer in transaction pooling mode, two clients (two
databases, two pools) run 100 iterations each of the same parameterised statements at once.
With the documented option, ``prepare_threshold = none/false``, there is no prepared-statement
error on either backend, sync or async; with psycopg's default there is (which is why the
option exists), on the SQLAlchemy backend as on the psycopg one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from _tools import pgbouncer

from structum_lab.plugins.database import ProgrammingError, connect, connect_async

ITERATIONS = 100


@pytest.fixture(scope="module")
def bouncer() -> Iterator[str]:
    """A PgBouncer (transaction mode, 4 server connections) in front of the shared server."""
    with pgbouncer(default_pool_size=4) as url:
        yield url


def _url(kind: str, bouncer: str) -> str:
    return bouncer.replace("postgresql://", "postgresql+psycopg://", 1) if kind == "sqlalchemy" else bouncer


def _client(db: Any, client: int) -> int:
    done = 0
    for i in range(ITERATIONS):
        with db.transaction() as conn:
            query = "SELECT :c::int AS c, :i::int AS i, md5(:i::text) AS h"
            row = conn.execute(query, {"c": client, "i": i}).fetchone()
            assert (row["c"], row["i"]) == (client, i)
            conn.execute("SELECT count(*) FROM pg_class WHERE relpages >= :n", {"n": i})
        done += 1
    return done


@pytest.mark.parametrize("kind", ["psycopg", "sqlalchemy"])
def test_two_clients_through_pgbouncer(kind: str, bouncer: str) -> None:
    # As a config file would say it: TOML has no null, so `prepare_threshold = false`.
    dbs = [connect(_url(kind, bouncer), pool_size=2, max_overflow=0, prepare_threshold=False) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            done = list(pool.map(_client, dbs, [1, 2]))
        assert done == [ITERATIONS, ITERATIONS]
        assert all(db.health_check().healthy for db in dbs)
    finally:
        for db in dbs:
            db.shutdown()


@pytest.mark.parametrize("kind", ["psycopg", "sqlalchemy"])
async def test_two_async_clients_through_pgbouncer(kind: str, bouncer: str) -> None:
    dbs = [connect_async(_url(kind, bouncer), pool_size=2, max_overflow=0, prepare_threshold="none") for _ in range(2)]

    async def client(db: Any, number: int) -> int:
        for i in range(ITERATIONS):
            async with db.transaction() as conn:
                result = await conn.execute("SELECT :c::int AS c, :i::int AS i", {"c": number, "i": i})
                assert await result.fetchone() == {"c": number, "i": i}
        return ITERATIONS

    try:
        assert await asyncio.gather(client(dbs[0], 1), client(dbs[1], 2)) == [ITERATIONS, ITERATIONS]
    finally:
        for db in dbs:
            await db.shutdown()


@pytest.mark.parametrize("kind", ["psycopg", "sqlalchemy"])
def test_default_prepared_statements_break_through_pgbouncer(kind: str, bouncer: str) -> None:
    """The reason for the option: psycopg prepares a statement after 5 runs, and the next
    transaction lands on another server connection that does not know it.

    Made certain rather than likely: once the statement is prepared, another client holds
    the server connection it was prepared on (PgBouncer hands out the most recently used
    idle one), so the next transaction must run on another."""
    preparing, holding = (connect(_url(kind, bouncer), pool_size=1, max_overflow=0) for _ in range(2))
    query = "SELECT count(*) AS n FROM pg_class WHERE relpages >= :n"
    try:
        # "does not exist" on the other server connection, or "already exists" where another
        # client (an earlier test) prepared one of the same name: either way, broken.
        with pytest.raises(ProgrammingError, match="prepared statement"):
            for i in range(6):  # psycopg prepares it at the 5th run (prepare_threshold = 5)
                with preparing.transaction() as conn:
                    conn.execute("SELECT 1")  # the first statement travels with BEGIN, unprepared
                    conn.execute(query, {"n": i})
            with holding.transaction() as other:
                other.execute("SELECT 1")  # this transaction now holds that server connection
                with preparing.transaction() as conn:
                    conn.execute("SELECT 1")
                    conn.execute(query, {"n": 0})
    finally:
        preparing.shutdown()
        holding.shutdown()
