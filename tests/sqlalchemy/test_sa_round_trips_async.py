"""SQLAlchemy on postgresql+psycopg: BEGIN with the first statement, a windowed pre-ping.

Round trips counted through a counting proxy: ``BEGIN; SELECT 1; COMMIT`` costs 2 (SQLAlchemy's own
``engine.begin()`` with ``pool_pre_ping``: 4), an empty transaction none, ``db.execute()``
one. The semantics stay: the error at its statement, nothing visible before COMMIT,
isolation and read-only applied, the whole transaction rolled back, and SQL that reaches
the connection through SQLAlchemy itself (Core, ORM sessions, ``db.engine``) is still
transactional. A connection killed while pooled is replaced at checkout, unseen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from _roundtrips import RoundTripProxy

import structum_lab.plugins.database as structum
from structum_lab.plugins.database import IntegrityError
from structum_lab.plugins.database.kit import ASYNC
from structum_lab.plugins.database_sqlalchemy import _events


def _open(url: str, **options: Any) -> Any:
    opener = structum.connect_async  # sync: opener = structum.connect
    return opener(url, backend="sqlalchemy", pool_size=1, max_overflow=0, **options)


def proxied_url(round_trips: RoundTripProxy, pg_schema_url: str) -> str:
    schema_query = pg_schema_url.partition("?")[2]
    return f"{round_trips.url()}?{schema_query}".replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
async def db(round_trips: RoundTripProxy, pg_schema_url: str) -> AsyncIterator[Any]:
    database = _open(proxied_url(round_trips, pg_schema_url))
    async with database.transaction() as conn:
        await conn.execute("CREATE TABLE rt (id INTEGER PRIMARY KEY, v INTEGER)")
    await (await database.execute("SELECT 1")).fetchall()  # the pool's one connection is open and warm
    yield database
    await database.shutdown()


def observed(pg_schema_url: str) -> list[tuple[int, int]]:
    with psycopg.connect(pg_schema_url, autocommit=True) as other:
        return other.execute("SELECT id, v FROM rt ORDER BY id").fetchall()  # type: ignore[return-value]


async def test_the_flavour_declares_deferred_begin_and_pipelining(db: Any) -> None:
    assert db.features.deferred_begin and db.features.pipelining and db.features.autocommit


async def test_the_isolation_level_option_goes_into_every_begin(
    round_trips: RoundTripProxy, pg_schema_url: str
) -> None:
    database = _open(proxied_url(round_trips, pg_schema_url), isolation_level="repeatable_read")
    try:
        async with database.transaction() as conn:
            assert await (await conn.execute("SHOW transaction_isolation")).scalar() == "repeatable read"
        async with database.engine.begin() as sa_conn:  # SQLAlchemy's own transactions too
            assert (await sa_conn.exec_driver_sql("SHOW transaction_isolation")).scalar() == "repeatable read"
        with round_trips.counting() as trips:
            async with database.transaction() as conn:
                await conn.execute("SELECT 1")
        assert trips.count == 2
    finally:
        await database.shutdown()


async def test_sqlalchemy_core_first_in_a_transaction_is_inside_it(db: Any, pg_schema_url: str) -> None:
    with pytest.raises(LookupError):
        async with db.transaction(isolation="serializable") as conn:
            sa_conn = conn.sqlalchemy_connection  # before any statement: BEGIN has not gone out yet
            level = (await sa_conn.exec_driver_sql("SHOW transaction_isolation")).scalar()
            await sa_conn.execute(sa.text("INSERT INTO rt (id, v) VALUES (1, 1)"))
            await conn.execute("INSERT INTO rt (id, v) VALUES (2, 2)")
            assert observed(pg_schema_url) == []
            raise LookupError
    assert level == "serializable"
    assert observed(pg_schema_url) == []  # both rolled back
    async with db.transaction() as conn:
        _ = conn.sqlalchemy_connection
        await conn.execute("INSERT INTO rt (id, v) VALUES (3, 3)")  # the held BEGIN goes first
        assert observed(pg_schema_url) == []
    assert observed(pg_schema_url) == [(3, 3)]
    async with db.transaction() as conn:  # handed out and unused: nothing to end
        _ = conn.sqlalchemy_connection
    async with db.transaction(readonly=True) as conn:  # a held BEGIN never outlives its transaction
        assert await (await conn.execute("SHOW transaction_read_only")).scalar() == "on"


async def test_handing_sqlalchemy_the_connection_costs_no_round_trip(db: Any, round_trips: RoundTripProxy) -> None:
    with round_trips.counting() as trips:
        async with db.transaction() as conn:
            _ = conn.sqlalchemy_connection
        async with db.transaction() as conn, conn.session():
            pass
    assert trips.count == 0  # nothing ran: no BEGIN, no COMMIT


async def test_the_psycopg_connection_under_sqlalchemys_is_inside_the_transaction(db: Any, pg_schema_url: str) -> None:
    async with db.transaction() as conn:
        sa_conn = conn.sqlalchemy_connection  # the BEGIN goes with the next statement, whoever sends it
        if ASYNC:  # ASYNC
            driver = (await sa_conn.get_raw_connection()).driver_connection
        else:
            driver = sa_conn.connection.driver_connection
        await driver.execute("INSERT INTO rt (id, v) VALUES (5, 5)")
        assert driver.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert observed(pg_schema_url) == []
    assert observed(pg_schema_url) == [(5, 5)]


async def test_sqlalchemys_own_transactions_send_begin_with_their_first_statement(
    db: Any, round_trips: RoundTripProxy, pg_schema_url: str
) -> None:
    with round_trips.counting() as trips:
        async with db.get_session() as session:
            await session.execute(sa.text("INSERT INTO rt (id, v) VALUES (1, 1)"))
            assert observed(pg_schema_url) == []
            await session.commit()
    assert trips.count == 2  # BEGIN with the INSERT, then COMMIT
    assert observed(pg_schema_url) == [(1, 1)]
    async with db.engine.begin():  # a transaction that runs nothing: its BEGIN must not linger
        pass
    async with db.engine.connect() as sa_conn:
        await sa_conn.execution_options(isolation_level="AUTOCOMMIT")
        await sa_conn.exec_driver_sql("INSERT INTO rt (id, v) VALUES (2, 2)")
        assert observed(pg_schema_url) == [(1, 1), (2, 2)]  # committed at once, not inside a stale BEGIN
    with round_trips.counting() as trips:
        async with db.engine.begin() as sa_conn:
            rows = await sa_conn.execute(sa.text("SELECT v FROM rt WHERE id > :low ORDER BY id"), {"low": 0})
            assert rows.scalars().all() == [1, 2]
            await sa_conn.exec_driver_sql("DELETE FROM rt WHERE id = %(id)s", {"id": 2})
    assert trips.count == 3  # BEGIN with the SELECT, the DELETE, COMMIT
    assert observed(pg_schema_url) == [(1, 1)]


async def test_an_orm_session_first_in_a_transaction_joins_it(db: Any, pg_schema_url: str) -> None:
    with pytest.raises(LookupError):
        async with db.transaction() as conn, conn.session() as session:
            await session.execute(sa.text("INSERT INTO rt (id, v) VALUES (1, 1)"))
            await session.commit()  # only a savepoint: the transaction decides
            assert observed(pg_schema_url) == []
            raise LookupError
    assert observed(pg_schema_url) == []
    async with db.transaction() as conn:
        async with conn.session() as session:
            await session.execute(sa.text("INSERT INTO rt (id, v) VALUES (2, 2)"))
            await session.commit()
        await conn.execute("INSERT INTO rt (id, v) VALUES (3, 3)")
        assert observed(pg_schema_url) == []
    assert observed(pg_schema_url) == [(2, 2), (3, 3)]


async def test_sqlalchemy_on_its_own_still_runs_transactions(db: Any, pg_schema_url: str) -> None:
    async with db.get_session() as session:
        await session.execute(sa.text("INSERT INTO rt (id, v) VALUES (1, 1)"))
        assert observed(pg_schema_url) == []
        await session.rollback()
    with pytest.raises(LookupError):
        async with db.engine.begin() as sa_conn:
            await sa_conn.exec_driver_sql("INSERT INTO rt (id, v) VALUES (2, 2)")
            assert observed(pg_schema_url) == []
            raise LookupError
    async with db.engine.begin() as sa_conn:
        await sa_conn.exec_driver_sql("INSERT INTO rt (id, v) VALUES (3, 3)")
    async with db.engine.connect() as sa_conn:
        await sa_conn.execution_options(isolation_level="AUTOCOMMIT")
        await sa_conn.exec_driver_sql("INSERT INTO rt (id, v) VALUES (4, 4)")
        assert observed(pg_schema_url) == [(3, 3), (4, 4)]  # autocommit, as asked
    async with db.engine.connect() as sa_conn:
        await sa_conn.execution_options(isolation_level="SERIALIZABLE")  # psycopg begins, as SQLAlchemy does
        assert (await sa_conn.exec_driver_sql("SHOW transaction_isolation")).scalar() == "serializable"
    async with db.transaction() as conn:  # the connection is in autocommit mode again: BEGIN with the statement
        assert await (await conn.execute("SHOW transaction_isolation")).scalar() == "read committed"
    assert observed(pg_schema_url) == [(3, 3), (4, 4)]


async def test_copy_and_a_pipeline_after_sqlalchemy_was_handed_the_connection(db: Any, pg_schema_url: str) -> None:
    with pytest.raises(LookupError):
        async with db.transaction() as conn:
            _ = conn.sqlalchemy_connection  # holds the BEGIN; COPY goes to psycopg directly
            assert await conn.copy_records("rt", ["id", "v"], [(1, 1), (2, 2)]) == 2
            assert observed(pg_schema_url) == []
            raise LookupError
    assert observed(pg_schema_url) == []
    with pytest.raises(LookupError):
        async with db.transaction(pipeline=True) as conn:
            _ = conn.sqlalchemy_connection
            await (await conn.execute("INSERT INTO rt (id, v) VALUES (3, 3) RETURNING id")).fetchall()  # flushed
            assert observed(pg_schema_url) == []
            raise LookupError
    assert observed(pg_schema_url) == []


async def test_an_isolation_level_in_engine_options_keeps_psycopgs_own_begin(
    round_trips: RoundTripProxy, pg_schema_url: str
) -> None:
    database = _open(proxied_url(round_trips, pg_schema_url), engine_options={"isolation_level": "REPEATABLE READ"})
    try:
        assert not database.features.deferred_begin
        async with database.transaction() as conn:
            await conn.execute("CREATE TABLE rt (id INTEGER PRIMARY KEY, v INTEGER)")
        with pytest.raises(LookupError):
            async with database.transaction() as conn:
                assert await (await conn.execute("SHOW transaction_isolation")).scalar() == "repeatable read"
                await conn.copy_records("rt", ["id", "v"], [(1, 1)])
                raise LookupError
        assert observed(pg_schema_url) == []
        with round_trips.counting() as trips:
            async with database.transaction() as conn:
                await conn.execute("INSERT INTO rt (id, v) VALUES (2, 2)")
        assert trips.count == 3  # BEGIN, the statement, COMMIT: still no pre-ping inside the window
        assert observed(pg_schema_url) == [(2, 2)]
    finally:
        await database.shutdown()


async def test_a_pipelined_transaction_is_one_round_trip(
    db: Any, round_trips: RoundTripProxy, pg_schema_url: str
) -> None:
    with round_trips.counting() as trips:
        async with db.transaction(pipeline=True) as conn:
            for i in range(5):
                await conn.execute("INSERT INTO rt (id, v) VALUES (:i, :i)", {"i": i})
    assert trips.count == 1  # BEGIN, the statements and COMMIT in one message
    assert len(observed(pg_schema_url)) == 5
    with pytest.raises(IntegrityError, match="statement 2 of the pipelined"):
        async with db.transaction(pipeline=True) as conn:
            await conn.execute("INSERT INTO rt (id, v) VALUES (10, 10)")
            await conn.execute("INSERT INTO rt (id, v) VALUES (1, 1)")
            await conn.execute("INSERT INTO rt (id, v) VALUES (11, 11)")
    assert len(observed(pg_schema_url)) == 5
    with round_trips.counting() as trips:
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
    assert trips.count == 2  # the connection is clean afterwards


async def test_a_health_check_pings_even_inside_the_window(db: Any, round_trips: RoundTripProxy) -> None:
    with round_trips.counting() as trips:
        assert (await db.health_check()).status.value == "healthy"
    assert trips.count == 1


async def test_an_idle_connection_is_pinged_after_the_window(
    db: Any, round_trips: RoundTripProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_events, "PRE_PING_WINDOW", 0.0)  # every connection is "idle too long"
    with round_trips.counting() as trips:
        await db.execute("SELECT 1")
    assert trips.count == 2  # the ping, then the statement


async def test_pool_pre_ping_false_never_pings(
    round_trips: RoundTripProxy, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_events, "PRE_PING_WINDOW", 0.0)
    database = _open(proxied_url(round_trips, pg_schema_url), pool_pre_ping=False)
    try:
        await database.execute("SELECT 1")
        with round_trips.counting() as trips:
            for _ in range(3):
                await database.execute("SELECT 1")
            async with database.transaction() as conn:
                await conn.execute("SELECT 1")
        assert trips.count == 3 + 2
    finally:
        await database.shutdown()


def _terminate(pg_url: str, *pids: object) -> None:
    with psycopg.connect(pg_url, autocommit=True) as other:
        for pid in pids:
            other.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits for the backend to exit


async def test_a_killed_connection_is_replaced_at_checkout_unseen(
    pg_url: str, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inside the window whatever the timing: only the readable-socket probe can tell it died.
    monkeypatch.setattr(_events, "PRE_PING_WINDOW", 3600.0)
    opener = structum.connect_async  # sync: opener = structum.connect
    # No proxy: the server's close must arrive.
    url = pg_schema_url.replace("postgresql://", "postgresql+psycopg://", 1)
    database = opener(url, backend="sqlalchemy", pool_size=2, max_overflow=0)
    try:
        first = await database.get_connection()
        second = await database.get_connection()
        pids = [await (await c.execute("SELECT pg_backend_pid()")).scalar() for c in (first, second)]
        await first.close()
        await second.close()
        _terminate(pg_url, *pids)
        now = await (await database.execute("SELECT pg_backend_pid()")).scalar()  # no error
        assert now not in pids
        async with database.transaction() as conn:  # the other dead one was replaced with it
            assert await (await conn.execute("SELECT pg_backend_pid()")).scalar() not in pids
        assert (await database.health_check()).status.value == "healthy"
        _terminate(pg_url, now)
        async with database.transaction() as conn:
            assert await (await conn.execute("SELECT 1")).scalar() == 1
    finally:
        await database.shutdown()
