"""Streaming, COPY both ways and LISTEN/NOTIFY on PostgreSQL, on both backends that reach
psycopg (the psycopg backend, SQLAlchemy on ``postgresql+psycopg``): what docs/results.md
promises beyond the conformance kit - memory bounded by the batch, cursors closed when
the loop is left, Python types through COPY, and a listener that survives its
connection being killed.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import aclosing
from decimal import Decimal
from typing import Any

import psycopg
import pytest

import structum_lab.plugins.database as structum
from structum_lab.plugins.database import NotSupportedError
from structum_lab.plugins.database.kit import ASYNC

BACKENDS = ["psycopg", "sqlalchemy"]


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, pg_schema_url: str) -> AsyncIterator[Any]:
    url = (
        pg_schema_url if request.param == "psycopg" else pg_schema_url.replace("postgresql://", "postgresql+psycopg://")
    )
    opener = structum.connect_async  # sync: opener = structum.connect
    database = opener(url, backend=request.param, pool_size=2)
    yield database
    await database.shutdown()


async def open_cursors(conn: Any) -> int:
    return int(await (await conn.execute("SELECT count(*) AS n FROM pg_cursors")).scalar())


async def test_a_stream_holds_one_batch_in_memory(db: Any) -> None:
    query = "SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, :n) AS g"
    async with db.transaction() as conn:
        tracemalloc.start()
        try:
            count = 0
            async for row in conn.stream(query, {"n": 60_000}, batch_size=500):
                count += 1
                assert row["id"] == count
            _, streamed_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            everything = await (await conn.execute(query, {"n": 60_000})).fetchall()
            _, buffered_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == len(everything) == 60_000
        assert streamed_peak * 10 < buffered_peak  # a batch, not the result


async def test_leaving_a_stream_closes_its_cursor(db: Any) -> None:
    async with db.transaction() as conn:
        if ASYNC:  # ASYNC
            # asyncio closes an async generator left early only later: aclosing() closes it now
            async with aclosing(conn.stream("SELECT generate_series(1, 10000) AS n", batch_size=100)) as rows:
                async for _ in rows:
                    break
        else:
            for _ in conn.stream("SELECT generate_series(1, 10000) AS n", batch_size=100):
                break  # the generator is closed as the loop drops it
        assert await open_cursors(conn) == 0
        # a savepoint rolled back takes its streams with it
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                async for _ in conn.stream("SELECT generate_series(1, 10000) AS n", batch_size=100):
                    raise RuntimeError
        assert await open_cursors(conn) == 0
        assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1  # the transaction goes on


RECORD = (
    1,
    Decimal("-1.50"),
    dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    b"\x00\x01'",
    {"a": [1, 2], "b": None},
    [1, 2, 3],
    None,
    "tab\tnewline\nbackslash\\",
)


async def test_copy_carries_python_types_both_ways(db: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "CREATE TABLE cp (id INT, d NUMERIC, t TIMESTAMPTZ, b BYTEA, j JSONB, a INT[], n TEXT, s TEXT)"
        )
        source = [(*RECORD[:4], json.dumps(RECORD[4]), *RECORD[5:])]
        assert await conn.copy_records("cp", ["id", "d", "t", "b", "j", "a", "n", "s"], source) == 1
        out = [record async for record in conn.copy_out("SELECT * FROM cp WHERE id = :id", {"id": 1})]
        assert out == [RECORD]
        row = await (await conn.execute("SELECT * FROM cp")).one()
        assert tuple(row.values()) == RECORD


@pytest.mark.parametrize("rows", [0, 1, 999, 1000, 2000, 2501])
async def test_copy_out_reads_every_row_across_batch_boundaries(db: Any, rows: int) -> None:
    # copy_out reads the COPY a batch of rows per wait: a COPY that ends on a batch boundary,
    # inside one, or at once must still give every row, in order, and end the COPY.
    async with db.transaction() as conn:
        out = [r async for r in conn.copy_out("SELECT g, g * 2 FROM generate_series(1, :n) g", {"n": rows})]
        assert out == [(g, g * 2) for g in range(1, rows + 1)]
        assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1  # the COPY has ended


async def test_leaving_copy_out_early_leaves_the_transaction_usable(db: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE kept (id INT)")
        await conn.execute("INSERT INTO kept VALUES (1)")
        async for record in conn.copy_out("SELECT generate_series(1, 200000)"):
            assert record == (1,)
            break
        await conn.execute("INSERT INTO kept VALUES (2)")
    async with db.transaction() as conn:
        assert await (await conn.execute("SELECT count(*) AS n FROM kept")).scalar() == 2


def _terminate_listeners(url: str, channel: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s", (f'LISTEN "{channel}"',)
        )


async def test_a_listener_survives_its_connection_being_killed(db: Any, pg_url: str) -> None:
    channel = f"jobs_{time.monotonic_ns()}"
    received: list[str] = []
    async with db.listen(channel, timeout=10) as notes:

        async def notify(payload: str) -> None:
            async with db.transaction() as conn:
                await conn.notify(channel, payload)

        await notify("before")
        async for note in notes:
            received.append(note.payload)
            break
        _terminate_listeners(pg_url, channel)
        deadline = time.monotonic() + 10
        while db.get_pool_info()["listener_reconnects"] == 0 and time.monotonic() < deadline:
            await notify("probe")  # the listener notices the loss on its next read
            async for note in notes:
                received.append(note.payload)
                break
        await notify("after")
        async for note in notes:
            if note.payload == "after":
                received.append(note.payload)
                break
    assert received[0] == "before" and received[-1] == "after"
    assert db.get_pool_info()["listener_reconnects"] >= 1


async def test_listen_ends_after_its_timeout_without_notifications(db: Any) -> None:
    started = time.monotonic()
    async with db.listen(f"quiet_{time.monotonic_ns()}", timeout=0.3) as notes:
        assert [note async for note in notes] == []
    assert time.monotonic() - started < 5


async def test_a_notification_from_another_client_arrives(db: Any, pg_url: str) -> None:
    channel = f"threads_{time.monotonic_ns()}"

    def send() -> None:
        time.sleep(0.2)
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("SELECT pg_notify(%s, 'hello')", (channel,))

    async with db.listen(channel, timeout=5) as notes:
        sender = threading.Thread(target=send)
        sender.start()
        payloads = []
        async for note in notes:
            payloads.append(note.payload)
            break
        sender.join()
    assert payloads == ["hello"]


async def test_sqlite_says_what_it_cannot_do(tmp_path: Any) -> None:
    if ASYNC:  # ASYNC
        database = structum.connect_async(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    else:
        database = structum.connect(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert not database.features.copy and not database.features.listen_notify
        async with database.transaction() as conn:
            with pytest.raises(NotSupportedError, match=r"(?i)copy"):
                await conn.copy_records("t", ["a"], [(1,)])
            with pytest.raises(NotSupportedError):
                await conn.notify("c", "x")
        with pytest.raises(NotSupportedError):
            database.listen("c")
    finally:
        await database.shutdown()
