"""BEGIN travels with the first statement: round trips counted through a counting proxy, on both
backends that reach psycopg (the psycopg backend, SQLAlchemy on ``postgresql+psycopg``).

``BEGIN; SELECT 1; COMMIT`` costs 2 round trips instead of raw psycopg_pool's 3, an empty
transaction none, ``db.execute()`` one, and the semantics stay: the error at its
statement, nothing visible before COMMIT, isolation and read-only applied, the whole
transaction rolled back. (SQLAlchemy-only behaviour: tests/sqlalchemy/test_sa_round_trips.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from _roundtrips import RoundTripProxy

import structum_lab.plugins.database as structum
from structum_lab.plugins.database import DatabaseError, IntegrityError, TransactionError
from structum_lab.plugins.database.kit import ASYNC


async def _opened(round_trips: RoundTripProxy, pg_schema_url: str, backend: str) -> Any:
    url = f"{round_trips.url()}?{pg_schema_url.partition('?')[2]}"
    if backend == "sqlalchemy":
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    opener = structum.connect_async  # sync: opener = structum.connect
    database = opener(url, backend=backend, pool_size=1, max_overflow=0)
    async with database.transaction() as conn:
        await conn.execute("CREATE TABLE rt (id INTEGER PRIMARY KEY, v INTEGER)")
    await (await database.execute("SELECT 1")).fetchall()  # the pool's one connection is open and warm
    return database


@pytest.fixture(params=["psycopg", "sqlalchemy"])
async def db(request: pytest.FixtureRequest, round_trips: RoundTripProxy, pg_schema_url: str) -> AsyncIterator[Any]:
    database = await _opened(round_trips, pg_schema_url, request.param)
    yield database
    await database.shutdown()


@pytest.fixture
async def psycopg_db(round_trips: RoundTripProxy, pg_schema_url: str) -> AsyncIterator[Any]:
    database = await _opened(round_trips, pg_schema_url, "psycopg")
    yield database
    await database.shutdown()


def observed(pg_schema_url: str) -> list[tuple[int, int]]:
    with psycopg.connect(pg_schema_url, autocommit=True) as other:
        return other.execute("SELECT id, v FROM rt ORDER BY id").fetchall()  # type: ignore[return-value]


async def test_a_transaction_costs_two_round_trips_and_an_empty_one_none(db: Any, round_trips: RoundTripProxy) -> None:
    async with db.transaction() as conn:
        await (await conn.execute("SELECT 1")).fetchall()  # warm: the pre-ping window is open now
    with round_trips.counting() as trips:
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1
    assert trips.count == 2  # BEGIN + SELECT in one message, then COMMIT: no pre-ping, no BEGIN of its own
    with round_trips.counting() as trips:
        async with db.transaction():
            pass
    assert trips.count == 0
    with round_trips.counting() as trips:
        async with db.transaction() as conn:
            for i in range(5):
                await conn.execute("SELECT :i AS i", {"i": i})
    assert trips.count == 6  # one per statement, BEGIN riding on the first, and COMMIT


async def test_db_execute_costs_one_round_trip(db: Any, round_trips: RoundTripProxy) -> None:
    with round_trips.counting() as trips:
        assert await (await db.execute("SELECT :n AS n", {"n": 7})).scalar() == 7
    assert trips.count == 1  # no pre-ping inside the window, no BEGIN/COMMIT, no reset on return
    with round_trips.counting() as trips:
        await db.execute("INSERT INTO rt (id, v) VALUES (1, 1)")
    assert trips.count == 1


async def test_nothing_is_visible_before_commit_and_all_of_it_after(db: Any, pg_schema_url: str) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO rt (id, v) VALUES (:id, :v)", {"id": 1, "v": -2147483648})
        await conn.execute("INSERT INTO rt (id, v) VALUES (2, 20)")
        assert observed(pg_schema_url) == []
    assert observed(pg_schema_url) == [(1, -2147483648), (2, 20)]  # the first statement's value, bound exactly


async def test_an_error_surfaces_at_its_statement_and_everything_is_rolled_back(db: Any, pg_schema_url: str) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO rt (id, v) VALUES (1, 1)")
    failed_at = ""
    with pytest.raises(IntegrityError, match="duplicate key"):
        async with db.transaction() as conn:
            failed_at = "the first statement"
            await conn.execute("INSERT INTO rt (id, v) VALUES (:id, 2)", {"id": 1})  # goes with BEGIN, and fails
            failed_at = "after it"
    assert failed_at == "the first statement"
    assert observed(pg_schema_url) == [(1, 1)]
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO rt (id, v) VALUES (2, 2)")
            await conn.execute("INSERT INTO rt (id, v) VALUES (3, 3)")
            _ = 1 / 0
    assert observed(pg_schema_url) == [(1, 1)]
    async with db.transaction() as conn:  # the connection is clean afterwards
        await conn.execute("INSERT INTO rt (id, v) VALUES (4, 4)")
    assert observed(pg_schema_url) == [(1, 1), (4, 4)]


async def test_isolation_and_readonly_go_with_the_begin(db: Any, round_trips: RoundTripProxy) -> None:
    with round_trips.counting() as trips:
        async with db.transaction(isolation="serializable", readonly=True) as conn:
            level = await (await conn.execute("SELECT current_setting('transaction_isolation') AS l")).scalar()
            readonly = await (await conn.execute("SELECT current_setting('transaction_read_only') AS r")).scalar()
    assert (level, readonly) == ("serializable", "on")
    assert trips.count == 3
    with pytest.raises(DatabaseError, match="read-only transaction"):
        async with db.transaction(readonly=True) as conn:
            await conn.execute("INSERT INTO rt (id, v) VALUES (9, 9)")
    async with db.transaction() as conn:  # the next transaction is neither
        assert await (await conn.execute("SELECT current_setting('transaction_read_only') AS r")).scalar() == "off"
        level = await (await conn.execute("SELECT current_setting('transaction_isolation') AS l")).scalar()
        assert level == "read committed"


async def test_get_connection_begins_each_transaction_with_its_first_statement(
    db: Any, round_trips: RoundTripProxy, pg_schema_url: str
) -> None:
    conn = await db.get_connection()
    try:
        with round_trips.counting() as trips:
            await conn.execute("INSERT INTO rt (id, v) VALUES (1, 1)")
            await conn.commit()
            await conn.commit()  # nothing ran since: no round trip
        assert trips.count == 2 and observed(pg_schema_url) == [(1, 1)]
        await conn.execute("INSERT INTO rt (id, v) VALUES (2, 2)")
        await conn.rollback()
        assert observed(pg_schema_url) == [(1, 1)]
        await conn.execute("INSERT INTO rt (id, v) VALUES (3, 3)")
        assert observed(pg_schema_url) == [(1, 1)]
        await conn.commit()
        assert observed(pg_schema_url) == [(1, 1), (3, 3)]
    finally:
        await conn.close()


def test_raw_psycopg_pays_three(round_trips: RoundTripProxy) -> None:
    with psycopg.connect(round_trips.url()) as raw, round_trips.counting() as trips:
        raw.execute("SELECT 1").fetchall()
        raw.commit()
    assert trips.count == 3


async def test_the_driver_connection_is_inside_the_transaction(psycopg_db: Any, pg_schema_url: str) -> None:
    async with psycopg_db.transaction() as conn:
        if ASYNC:  # ASYNC
            # a property cannot send BEGIN on asyncio: the escape hatch says so until start()
            with pytest.raises(TransactionError, match="has not begun yet"):
                _ = conn.psycopg_connection
            await conn.start()
        raw = conn.psycopg_connection  # the sync flavour sends BEGIN here
        await raw.execute("INSERT INTO rt (id, v) VALUES (5, 5)")
        assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert observed(pg_schema_url) == []
    assert observed(pg_schema_url) == [(5, 5)]
