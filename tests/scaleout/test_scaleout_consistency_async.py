"""Read-your-writes on a replica that really lags: ``recovery_min_apply_delay`` holds every
commit back on the replica, so a read sent there right after a write would miss it."""

# sync-renames: connect_async=connect

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from _servers import Pair

from structum_lab.plugins.database import AsyncReplicatedDatabase, ParameterError, connect_async


@pytest.fixture
async def opened() -> AsyncIterator[list[AsyncReplicatedDatabase]]:
    databases: list[AsyncReplicatedDatabase] = []
    yield databases
    for db in databases:
        await db.shutdown()


def open_router(
    opened: list[AsyncReplicatedDatabase], pair: Pair, backend: str = "psycopg", **options: object
) -> AsyncReplicatedDatabase:
    db = connect_async(
        pair.primary.url,
        backend=backend,
        replicas=[pair.replica.url],
        replica_check_interval=0.1,
        pool_size=2,
        **options,
    )
    assert isinstance(db, AsyncReplicatedDatabase)
    opened.append(db)
    return db


async def read_back(db: AsyncReplicatedDatabase, items: str, after: str | None = None) -> tuple[int | None, bool]:
    """(the highest n the read sees, whether a replica served it)."""
    async with db.transaction(readonly=True, after=after) as conn:
        row = await (await conn.execute(f"SELECT max(n) AS n, pg_is_in_recovery() AS standby FROM {items}")).one()
    return row["n"], row["standby"]


async def write(db: AsyncReplicatedDatabase, items: str, n: int) -> None:
    async with db.transaction() as conn:
        await conn.execute(f"INSERT INTO {items} (n) VALUES (:n)", {"n": n})


async def test_read_your_writes_200_iterations_no_stale_read(
    pair: Pair, items: str, backend: str, opened: list[AsyncReplicatedDatabase]
) -> None:
    pair.replica.set_delay("150ms")
    db = open_router(opened, pair, backend)
    stale = on_replica = 0
    for n in range(1, 201):
        await write(db, items, n)
        if n % 25 == 0:
            await asyncio.sleep(0.3)  # sync: time.sleep(0.3)
        seen, standby = await read_back(db, items)
        stale += seen != n
        on_replica += standby
    assert stale == 0
    # Right after a write the replica has not replayed it (the primary serves); once it has, it serves.
    assert on_replica >= 4, on_replica


async def test_commits_of_get_connection_count_too(
    pair: Pair, items: str, opened: list[AsyncReplicatedDatabase]
) -> None:
    pair.replica.set_delay("150ms")
    db = open_router(opened, pair)
    conn = await db.get_connection()
    try:
        await conn.execute(f"INSERT INTO {items} (n) VALUES (1)")
        await conn.commit()
        assert await read_back(db, items) == (1, False)  # the replica has not replayed it
        await conn.execute(f"INSERT INTO {items} (n) VALUES (2)")
    finally:
        await conn.close()  # rolled back: 2 was never committed
    assert (await read_back(db, items))[0] == 1


async def test_without_read_your_writes_the_lag_is_visible(
    pair: Pair, items: str, opened: list[AsyncReplicatedDatabase]
) -> None:
    pair.replica.set_delay("150ms")
    db = open_router(opened, pair, read_your_writes="off")
    results = []
    for n in range(1, 6):
        await write(db, items, n)
        results.append(await read_back(db, items))
    assert all(standby for _, standby in results)
    assert sum(seen != n for n, (seen, _) in enumerate(results, 1)) >= 4  # stale: the control of the test above


async def test_a_read_may_wait_for_the_replica(pair: Pair, items: str, opened: list[AsyncReplicatedDatabase]) -> None:
    pair.replica.set_delay("150ms")
    db = open_router(opened, pair, read_your_writes_wait=2.0)
    for n in range(1, 6):
        await write(db, items, n)
        started = time.monotonic()
        seen, standby = await read_back(db, items)
        assert (seen, standby) == (n, True)
        assert time.monotonic() - started >= 0.05  # it waited for the replay


async def test_window_mode_reads_on_the_primary_for_a_while(
    pair: Pair, items: str, opened: list[AsyncReplicatedDatabase]
) -> None:
    db = open_router(opened, pair, read_your_writes="window", read_your_writes_window=0.5)
    await write(db, items, 1)
    assert await read_back(db, items) == (1, False)
    await asyncio.sleep(0.6)  # sync: time.sleep(0.6)
    assert await read_back(db, items) == (1, True)


async def test_a_consistency_token_carries_a_commit_to_another_request(
    pair: Pair, items: str, opened: list[AsyncReplicatedDatabase]
) -> None:
    pair.replica.set_delay("300ms")
    writer = open_router(opened, pair)
    assert await writer.consistency_token() is None  # nothing committed yet
    await write(writer, items, 7)
    token = await writer.consistency_token()
    assert token is not None and "/" in token
    # Another process (or request) gets the token in a cookie; its reads see the commit.
    reader = open_router(opened, pair, read_your_writes_wait=2.0)
    assert await read_back(reader, items, after=token) == (7, True)
    await write(writer, items, 8)
    later = await writer.consistency_token()
    other = open_router(opened, pair)
    other.read_after(later)
    assert (await read_back(other, items))[0] == 8
    with pytest.raises(ParameterError, match="not a consistency token"):
        other.read_after("'; DROP TABLE x; --")
