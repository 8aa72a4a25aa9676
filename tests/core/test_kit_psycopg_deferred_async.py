"""Core's deferred BEGIN on a psycopg connection (``kit_psycopg.install_deferred_begin``), on a
real server, with the round trips counted by a proxy and the effects seen from a second
connection: the BEGIN goes with the next statement whoever sends it, and never lingers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from _roundtrips import RoundTripProxy
from psycopg import sql

from structum_lab.plugins.database import kit_psycopg

_INTRANS = psycopg.pq.TransactionStatus.INTRANS
_IDLE = psycopg.pq.TransactionStatus.IDLE


@pytest.fixture
async def conn(round_trips: RoundTripProxy, table: str) -> AsyncIterator[psycopg.AsyncConnection[object]]:
    connection = await psycopg.AsyncConnection.connect(round_trips.url(), autocommit=True)
    kit_psycopg.install_deferred_begin_async(connection)
    await connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    yield connection
    await connection.execute(f"DROP TABLE IF EXISTS {table}")
    await connection.close()


def _seen(pg_url: str, table: str) -> list[int]:
    with psycopg.connect(pg_url, autocommit=True) as other:
        return [row[0] for row in other.execute(f"SELECT id FROM {table} ORDER BY id")]


async def test_begin_goes_with_the_next_statement(
    conn: psycopg.AsyncConnection[object], round_trips: RoundTripProxy, pg_url: str, table: str
) -> None:
    with round_trips.counting() as trips:
        kit_psycopg.defer_begin_async(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ")
        cursor = await conn.execute(f"INSERT INTO {table} VALUES (%s) RETURNING id", (1,))
        assert await cursor.fetchall() == [(1,)]  # the statement's result, not BEGIN's
        assert conn.info.transaction_status == _INTRANS
        level = await (await conn.execute("SHOW transaction_isolation")).fetchone()
        assert _seen(pg_url, table) == []  # inside the transaction
        await conn.commit()
    assert level == ("repeatable read",)
    assert trips.count == 3  # BEGIN with the INSERT, SHOW, COMMIT
    assert _seen(pg_url, table) == [1]


async def test_an_error_at_the_statement_leaves_the_transaction_failed(
    conn: psycopg.AsyncConnection[object], pg_url: str, table: str
) -> None:
    kit_psycopg.defer_begin_async(conn, "BEGIN")
    await conn.execute(f"INSERT INTO {table} VALUES (1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        await conn.execute(f"INSERT INTO {table} VALUES (1)")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    await conn.rollback()
    assert _seen(pg_url, table) == []  # nothing half-applied


async def test_a_begin_that_never_went_out_is_dropped(
    conn: psycopg.AsyncConnection[object], round_trips: RoundTripProxy, pg_url: str, table: str
) -> None:
    with round_trips.counting() as trips:
        kit_psycopg.defer_begin_async(conn, "BEGIN")
        assert kit_psycopg.take_begin_async(conn) == "BEGIN"
        assert kit_psycopg.take_begin_async(conn) is None
        await conn.commit()  # nothing to commit: psycopg sends nothing
    assert trips.count == 0
    await conn.execute(f"INSERT INTO {table} VALUES (2)")
    assert conn.info.transaction_status == _IDLE
    assert _seen(pg_url, table) == [2]  # autocommitted: no stale BEGIN


async def test_what_cannot_carry_it_sends_begin_first(
    conn: psycopg.AsyncConnection[object], pg_url: str, table: str
) -> None:
    kit_psycopg.defer_begin_async(conn, "BEGIN")
    cursor = conn.cursor()
    await cursor.executemany(f"INSERT INTO {table} VALUES (%s)", [(1,), (2,)])
    assert conn.info.transaction_status == _INTRANS
    kit_psycopg.defer_begin_async(conn, "SAVEPOINT composed")  # a composed query goes after it
    await conn.execute(sql.SQL("INSERT INTO {} VALUES (3)").format(sql.Identifier(table)))
    assert _seen(pg_url, table) == []
    await conn.execute("ROLLBACK TO SAVEPOINT composed")
    await conn.commit()
    assert _seen(pg_url, table) == [1, 2]
    kit_psycopg.defer_begin_async(conn, "BEGIN")
    server_side = conn.cursor(name="deferred_stream")  # DECLARE needs the transaction
    await server_side.execute(f"SELECT id FROM {table} ORDER BY id")
    assert await server_side.fetchall() == [(1,), (2,)]
    await server_side.close()
    assert conn.info.transaction_status == _INTRANS
    await conn.rollback()


async def test_send_begin_for_io_of_its_own(conn: psycopg.AsyncConnection[object], pg_url: str, table: str) -> None:
    kit_psycopg.defer_begin_async(conn, "BEGIN")
    await kit_psycopg.send_begin_async(conn)
    assert conn.info.transaction_status == _INTRANS
    assert kit_psycopg.take_begin_async(conn) is None
    rows = [(5,), (6,)]
    assert await kit_psycopg.copy_in_async(conn, table, ["id"], rows) == 2
    assert _seen(pg_url, table) == []
    await conn.commit()
    assert _seen(pg_url, table) == [5, 6]


async def test_the_same_statement_many_times_is_never_prepared_with_its_begin(
    conn: psycopg.AsyncConnection[object],
) -> None:
    conn.prepare_threshold = 1  # psycopg would prepare a repeated query at once
    for _ in range(4):
        kit_psycopg.defer_begin_async(conn, "BEGIN")
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        await conn.commit()
