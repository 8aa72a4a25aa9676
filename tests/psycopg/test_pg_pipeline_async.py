"""``transaction(pipeline=True)`` on PostgreSQL: statements queued and sent together.

Round trips are counted through a counting proxy; what is visible is observed from a second
connection. A block whose results are read after it costs one round trip, BEGIN to
COMMIT; an error names its statement and leaves nothing applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from _roundtrips import RoundTripProxy

import structum_lab.plugins.database as structum
from structum_lab.plugins.database import DatabaseError, IntegrityError, ProgrammingError, TransactionError
from structum_lab.plugins.database.kit import ASYNC


@pytest.fixture(params=["psycopg", "sqlalchemy"])
async def db(request: pytest.FixtureRequest, round_trips: RoundTripProxy, pg_schema_url: str) -> AsyncIterator[Any]:
    url = f"{round_trips.url()}?{pg_schema_url.partition('?')[2]}"
    if request.param == "sqlalchemy":  # SQLAlchemy's psycopg dialect: the same one-message batches
        url = url.replace("postgresql://", "postgresql+psycopg://")
    opener = structum.connect_async  # sync: opener = structum.connect
    database = opener(url, backend=request.param, pool_size=1, max_overflow=0)
    async with database.transaction() as conn:
        await conn.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        await conn.execute("INSERT INTO acc VALUES (1, 100), (2, 200)")
    async with database.transaction() as conn:  # warm: the pre-ping window is open now
        await (await conn.execute("SELECT 1")).fetchall()
    yield database
    await database.shutdown()


def balances(pg_schema_url: str) -> dict[int, int]:
    with psycopg.connect(pg_schema_url, autocommit=True) as other:
        return dict(other.execute("SELECT id, balance FROM acc ORDER BY id").fetchall())  # type: ignore[arg-type]


async def test_a_block_read_after_it_ends_is_one_round_trip(
    db: Any, round_trips: RoundTripProxy, pg_schema_url: str
) -> None:
    with round_trips.counting() as trips:
        async with db.transaction(pipeline=True) as conn:
            moved = await conn.execute("UPDATE acc SET balance = balance - :n WHERE id = :id", {"n": 30, "id": 1})
            await conn.execute("UPDATE acc SET balance = balance + :n WHERE id = :id", {"n": 30, "id": 2})
            total = await conn.execute("SELECT sum(balance) AS total FROM acc")
            await conn.execute("INSERT INTO acc VALUES (:id, :b)", {"id": 3, "b": -5})
    assert trips.count == 1  # BEGIN ... COMMIT as one message
    assert moved.rowcount == 1
    assert await total.scalar() == 300  # results stay readable after the block
    assert balances(pg_schema_url) == {1: 70, 2: 230, 3: -5}


async def test_reading_a_result_sends_the_queue_so_far(
    db: Any, round_trips: RoundTripProxy, pg_schema_url: str
) -> None:
    with round_trips.counting() as trips:
        async with db.transaction(pipeline=True) as conn:
            await conn.execute("UPDATE acc SET balance = balance + 1 WHERE id = 1")
            balance = await (await conn.execute("SELECT balance FROM acc WHERE id = 1")).scalar()
            assert balance == 101  # the UPDATE before it ran first
            assert balances(pg_schema_url) == {1: 100, 2: 200}  # nothing visible before COMMIT
            await conn.execute("UPDATE acc SET balance = :b WHERE id = 2", {"b": balance})
    assert trips.count == 2  # BEGIN + UPDATE + SELECT, then UPDATE + COMMIT
    assert balances(pg_schema_url) == {1: 101, 2: 101}


async def test_an_error_names_its_statement_and_nothing_is_applied(db: Any, pg_schema_url: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        async with db.transaction(pipeline=True) as conn:
            before = await conn.execute("UPDATE acc SET balance = 0 WHERE id = 1")
            failing = await conn.execute("INSERT INTO acc VALUES (:id, :b)", {"id": 2, "b": 1})
            after = await conn.execute("UPDATE acc SET balance = 0 WHERE id = 2")
    message = str(caught.value)
    assert "statement 2 of the pipelined transaction failed" in message
    assert "INSERT INTO acc VALUES (:id, :b)" in message and "duplicate key" in message
    assert balances(pg_schema_url) == {1: 100, 2: 200}  # the UPDATE before it is rolled back too
    with pytest.raises(IntegrityError):
        await failing.fetchall()
    with pytest.raises(TransactionError, match="not run"):
        await after.fetchall()
    with pytest.raises(TransactionError, match="not available"):
        _ = before.rowcount
    async with db.transaction() as conn:  # the connection is clean for the next user
        assert await (await conn.execute("SELECT count(*) AS n FROM acc")).scalar() == 2


async def test_an_error_in_the_block_sends_nothing(db: Any, round_trips: RoundTripProxy, pg_schema_url: str) -> None:
    with round_trips.counting() as trips, pytest.raises(ZeroDivisionError):
        async with db.transaction(pipeline=True) as conn:
            queued = await conn.execute("UPDATE acc SET balance = 0")
            _ = 1 / 0
    assert trips.count == 0
    assert balances(pg_schema_url) == {1: 100, 2: 200}
    with pytest.raises(TransactionError, match="not run"):
        await queued.fetchall()


async def test_an_error_at_a_read_inside_the_block_rolls_everything_back(db: Any, pg_schema_url: str) -> None:
    block = db.transaction(pipeline=True)
    with pytest.raises(ProgrammingError, match="statement 2 of the pipelined"):
        async with block as conn:
            await conn.execute("UPDATE acc SET balance = 1 WHERE id = 1")
            await (await conn.execute("SELECT no_such_column FROM acc")).fetchall()
    assert balances(pg_schema_url) == {1: 100, 2: 200}


async def test_a_savepoint_catches_the_error_of_its_own_statement(db: Any, pg_schema_url: str) -> None:
    async with db.transaction(pipeline=True) as conn:
        await conn.execute("UPDATE acc SET balance = 1 WHERE id = 1")
        with pytest.raises(IntegrityError, match="duplicate key"):
            async with conn.transaction():
                await conn.execute("INSERT INTO acc VALUES (2, 0)")
        await conn.execute("UPDATE acc SET balance = 2 WHERE id = 2")
    assert balances(pg_schema_url) == {1: 1, 2: 2}


async def test_isolation_and_readonly_apply(db: Any, round_trips: RoundTripProxy) -> None:
    block = db.transaction(pipeline=True, isolation="repeatable_read", readonly=True)
    with round_trips.counting() as trips:
        async with block as conn:
            level = await conn.execute("SELECT current_setting('transaction_isolation') AS v")
            readonly = await conn.execute("SELECT current_setting('transaction_read_only') AS v")
    assert trips.count == 1
    assert (await level.scalar(), await readonly.scalar()) == ("repeatable read", "on")
    block = db.transaction(readonly=True, pipeline=True)
    with pytest.raises(DatabaseError, match="read-only transaction"):
        async with block as conn:
            await conn.execute("UPDATE acc SET balance = 0")


async def test_rowcount_of_a_statement_not_sent_yet(db: Any) -> None:
    async with db.transaction(pipeline=True) as conn:
        result = await conn.execute("UPDATE acc SET balance = balance + 1")
        assert "not sent yet" in repr(result)
        if ASYNC:  # ASYNC
            with pytest.raises(TransactionError, match=r"await conn\.flush\(\)"):
                _ = result.rowcount  # a property cannot send on asyncio
            await conn.flush()
        assert result.rowcount == 2  # the sync flavour sends the queue here


async def test_executemany_and_the_driver_connection_send_the_queue_first(db: Any, pg_schema_url: str) -> None:
    async with db.transaction(pipeline=True) as conn:
        await conn.execute("DELETE FROM acc")
        await conn.executemany("INSERT INTO acc VALUES (:id, :b)", [{"id": 5, "b": 5}, {"id": 6, "b": 6}])
        await conn.execute("UPDATE acc SET balance = balance * 10")
        if db.backend == "psycopg":
            if ASYNC:  # ASYNC
                await conn.start()
            raw = conn.psycopg_connection
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert balances(pg_schema_url) == {5: 50, 6: 60}


async def test_a_statement_is_one_statement(db: Any) -> None:
    with pytest.raises(ProgrammingError, match="exactly one SQL statement"):
        async with db.transaction(pipeline=True) as conn:
            await conn.execute("UPDATE acc SET balance = 0; UPDATE acc SET balance = 1")
    async with db.transaction(pipeline=True) as conn:  # a trailing ; and comments are fine
        done = await conn.execute("SELECT ';' AS semi -- a comment; not a statement\n;")
    assert await done.scalar() == ";"


async def test_values_are_bound_exactly(db: Any) -> None:
    values = {
        "i": -2147483648,
        "big": 2**62,
        "t": "it's a \\ back'slash; -- not a comment",
        "n": None,
        "b": b"\x00\xff'",
        "d": dt.date(2026, 12, 3),
        "ts": dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC),
        "m": Decimal("-12.50"),
        "f": True,
    }
    async with db.transaction() as conn:
        await conn.execute(
            "CREATE TABLE typed (i INTEGER, big BIGINT, t TEXT, n TEXT, b BYTEA, d DATE, ts TIMESTAMPTZ, "
            "m NUMERIC, f BOOLEAN)"
        )
    async with db.transaction(pipeline=True) as conn:
        await conn.execute(
            "INSERT INTO typed VALUES (:i, :big, :t, :n, :b, :d, :ts, :m, :f)", values
        )  # fmt: skip
        await conn.execute("UPDATE typed SET i = i + :one", {"one": 0})
        back = await conn.execute("SELECT * FROM typed WHERE t = :t", {"t": values["t"]})
    row = await back.one()
    assert dict(row) == values


async def test_an_empty_pipelined_block_costs_nothing(db: Any, round_trips: RoundTripProxy) -> None:
    with round_trips.counting() as trips:
        async with db.transaction(pipeline=True):
            pass
    assert trips.count == 0
