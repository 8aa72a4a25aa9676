"""Scenario 7: forked workers (gunicorn's pre-fork model).

A database whose pool already holds connections is inherited by a child made with
``os.fork()``. The child must not use (nor close) the parent's connections: it gets
fresh ones. The child runs transactions and reports through its exit code and a
pipe; meanwhile the parent keeps working on its own connections, which must come out
unharmed (same server processes, correct answers, nothing lost).
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from ._faults import ASYNC_KINDS, SYNC_KINDS, app_name, backend_pids, open_db

pytestmark = pytest.mark.postgres

OPTIONS = {"pool_size": 3, "max_overflow": 0, "pool_timeout": 5.0}
CHILD_TXNS = 20


@pytest.fixture
def fork_table(pg_url: str, table: str) -> Iterator[str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (who TEXT NOT NULL, pid INT NOT NULL, backend INT NOT NULL)")
    yield table
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _in_child(work: Callable[[], None]) -> int:
    """Fork; the child runs ``work`` and exits 0, or writes the traceback to a pipe and exits 1.

    Returns the child's pid; :func:`_reap` collects the outcome.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        code = 0
        try:
            work()
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            code = 1
        finally:
            os._exit(code)  # no atexit, no finalizers: as a crashed or killed worker would
    os.close(write)
    _PIPES[pid] = read
    return pid


_PIPES: dict[int, int] = {}


def _reap(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung")
        time.sleep(0.02)
    read = _PIPES.pop(pid)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, f"the child failed:\n{report}"


def _parent_backends(url: str, app: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as admin:
        return set(backend_pids(admin, app))


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_fork_sync(kind: str, pg_url: str, fork_table: str) -> None:
    app = app_name()
    db = open_db(kind, pg_url, app, **OPTIONS)
    try:
        conns = [db.get_connection() for _ in range(3)]  # the pool holds three connections
        parent_backends = {conn.execute("SELECT pg_backend_pid() AS p").scalar() for conn in conns}
        for conn in conns:
            conn.close()
        assert len(parent_backends) == 3

        def child() -> None:
            for _ in range(CHILD_TXNS):
                with db.transaction() as conn:
                    backend = conn.execute("SELECT pg_backend_pid() AS p").scalar()
                    assert backend not in parent_backends, "the child was handed a connection of the parent"
                    conn.execute(
                        f"INSERT INTO {fork_table} VALUES ('child', :pid, :b)", {"pid": os.getpid(), "b": backend}
                    )
            assert db.health_check().healthy
            gc.collect()  # finalizers of what the child inherited must not touch the parent's connections
            db.shutdown()  # must close only the child's own connections

        stop = threading.Event()
        errors: list[BaseException] = []

        def parent_worker() -> None:
            try:
                while not stop.is_set():
                    with db.transaction() as conn:
                        backend = conn.execute("SELECT pg_backend_pid() AS p").scalar()
                        conn.execute(
                            f"INSERT INTO {fork_table} VALUES ('parent', :pid, :b)", {"pid": os.getpid(), "b": backend}
                        )
                        assert conn.execute("SELECT 41 + 1 AS x").scalar() == 42
            except BaseException as exc:
                errors.append(exc)

        pid = _in_child(child)
        workers = [threading.Thread(target=parent_worker) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            _reap(pid)
        finally:
            stop.set()
            for worker in workers:
                worker.join(10)
        assert errors == []
        _check_after(db, pg_url, fork_table, app, parent_backends=parent_backends, child_pid=pid)
    finally:
        db.shutdown()


def _check_after(db: Any, url: str, table: str, app: str, *, parent_backends: set[int], child_pid: int) -> None:
    """The parent's connections survived the child (same server processes, still answering)."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(f"SELECT who, pid, backend FROM {table}").fetchall()
    child_rows = [r for r in rows if r[0] == "child"]
    assert len(child_rows) == CHILD_TXNS and {r[1] for r in child_rows} == {child_pid}
    assert not {r[2] for r in child_rows} & parent_backends
    parent_rows = [r for r in rows if r[0] == "parent"]
    assert parent_rows and {r[2] for r in parent_rows} <= parent_backends
    assert parent_backends <= _parent_backends(url, app)  # none of them was closed by the child
    info = db.get_pool_info()
    assert info["checked_out"] == 0 and info["connections_lost"] == 0, info
    print(f"\nchild: {len(child_rows)} transactions on fresh connections; parent: {len(parent_rows)} alongside")


@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_fork_async(kind: str, pg_url: str, fork_table: str) -> None:
    """The parent's loop is idle at fork time (as in a pre-fork server); the child runs its own loop."""
    app = app_name()
    db = open_db(kind, pg_url, app, **OPTIONS)
    loop = asyncio.new_event_loop()
    try:

        async def hold_three() -> set[int]:
            conns = [await db.get_connection() for _ in range(3)]
            backends = {await (await conn.execute("SELECT pg_backend_pid() AS p")).scalar() for conn in conns}
            for conn in conns:
                await conn.close()
            return backends

        parent_backends = loop.run_until_complete(hold_three())
        assert len(parent_backends) == 3

        async def child_main() -> None:
            for _ in range(CHILD_TXNS):
                async with db.transaction() as conn:
                    backend = await (await conn.execute("SELECT pg_backend_pid() AS p")).scalar()
                    assert backend not in parent_backends, "the child was handed a connection of the parent"
                    await conn.execute(
                        f"INSERT INTO {fork_table} VALUES ('child', :pid, :b)", {"pid": os.getpid(), "b": backend}
                    )
            assert (await db.health_check()).healthy
            # Inherited asyncpg connections, finalized here, would unregister their sockets
            # from the parent's event loop (the child's copy shares its epoll instance).
            gc.collect()
            await db.shutdown()

        def child() -> None:
            child_loop = asyncio.new_event_loop()  # the parent's loop is not the child's to run
            child_loop.run_until_complete(child_main())

        async def parent_work() -> int:
            done = 0
            while True:
                async with db.transaction() as conn:
                    backend = await (await conn.execute("SELECT pg_backend_pid() AS p")).scalar()
                    await conn.execute(
                        f"INSERT INTO {fork_table} VALUES ('parent', :pid, :b)", {"pid": os.getpid(), "b": backend}
                    )
                done += 1
                if done >= 30:
                    return done

        pid = _in_child(child)
        _bounded(loop, parent_work())
        _reap(pid)
        _bounded(loop, parent_work())
        _check_after(db, pg_url, fork_table, app, parent_backends=parent_backends, child_pid=pid)
    finally:
        _bounded(loop, db.shutdown())
        loop.close()


def _bounded(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float = 30.0) -> Any:
    """``loop.run_until_complete(coro)``, failing instead of hanging: a child that broke the
    parent's connections (e.g. by unregistering their sockets from the shared epoll
    instance) leaves the parent's loop waiting forever, even for a cancellation."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, loop.run_until_complete(coro)))
        except BaseException as exc:
            outcome.append((False, exc))

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout)
    if runner.is_alive():
        raise AssertionError("the parent's event loop hung after the fork: the child touched its connections")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
