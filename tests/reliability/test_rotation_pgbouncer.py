"""Scenario 9, PgBouncer: through a real PgBouncer in transaction pooling mode, two clients (two
databases, two pools) run 100 iterations each of the same parameterised statements at once.
With the documented option, ``prepare_threshold = none/false``, there is no prepared-statement
error on either backend, sync or async; with psycopg's default there is (which is why the
option exists), on the SQLAlchemy backend as on the psycopg one."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from structum_lab.plugins.database import ProgrammingError, connect, connect_async

from ._infra import free_port, require_tool

ITERATIONS = 100


@pytest.fixture(scope="module")
def bouncer() -> Iterator[str]:
    """A PgBouncer (transaction mode) in front of the shared server, as our own child process."""
    binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    require_tool(binary is not None, "pgbouncer is not installed (apt-get install pgbouncer)")
    assert binary is not None
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="structum-bouncer-"))
    (workdir / "users.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
test = host=127.0.0.1 port=5432 dbname=test

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
default_pool_size = 4
logfile = {workdir}/pgbouncer.log
ignore_startup_parameters = extra_float_digits, options
"""
    )
    user: dict[str, Any] = {}
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        for path in (workdir, *workdir.iterdir()):
            shutil.chown(path, "postgres")
        user = {"user": "postgres", "group": "postgres"}
    process = subprocess.Popen(
        [binary, str(workdir / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **user
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, "pgbouncer exited at start"
                assert time.monotonic() < deadline, "pgbouncer did not start listening"
                time.sleep(0.05)
        yield f"postgresql://postgres@127.0.0.1:{port}/test"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


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
    transaction lands on another server connection that does not know it."""
    dbs = [connect(_url(kind, bouncer), pool_size=2, max_overflow=0) for _ in range(2)]
    try:
        with pytest.raises(ProgrammingError, match="prepared statement"), ThreadPoolExecutor(2) as pool:
            list(pool.map(_client, dbs, [1, 2]))
    finally:
        for db in dbs:
            db.shutdown()
