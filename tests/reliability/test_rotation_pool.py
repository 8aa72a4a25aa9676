"""Scenario 9, connection rotation: short ``max_lifetime``/``max_idle`` (psycopg) or
``pool_recycle`` (SQLAlchemy), and a server that closes idle sessions after one second
(``ALTER ROLE ... SET idle_session_timeout`` on a role made for the test: the setting
touches no other session of the shared server). A traffic spike grows the pool, idleness
lets the server kill every pooled connection and the pool shrink back, and steady traffic
afterwards rotates connections by age - with zero errors, on fresh backends, and with the
server holding exactly the connections the pool reports."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from ._workload import ASYNC_KINDS, PG_URL, SYNC_KINDS, app_name, open_db, server_connections, wait_until

IDLE_SESSION_TIMEOUT = "800ms"
LIFETIME = 0.6  # max_lifetime / pool_recycle, seconds
SPIKE_WORKERS = 10
QUERY = "SELECT pg_backend_pid() AS pid, pg_sleep(:hold) AS slept"


@dataclass
class Phases:
    spike: set[int] = field(default_factory=set)
    steady: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def idle_killing_role(pg_url: str) -> Iterator[str]:
    role = f"sdb_rot_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"ALTER ROLE {role} SET idle_session_timeout = '{IDLE_SESSION_TIMEOUT}'")
    try:
        yield f"postgresql://{role}@127.0.0.1:5432/test"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def _options(kind: str) -> dict[str, Any]:
    options: dict[str, Any] = {"pool_size": 2, "max_overflow": SPIKE_WORKERS - 2, "pool_timeout": 10}
    if kind.startswith("psycopg"):
        options.update(max_lifetime=LIFETIME, max_idle=0.3)
    else:
        options.update(pool_recycle=LIFETIME)
    return options


def _report(kind: str, phases: Phases, before: int, after: dict[str, Any]) -> None:
    generations = len(set(phases.steady))
    print(
        f"\n{kind}: spike used {len(phases.spike)} backends; pool after idleness {before} -> steady "
        f"traffic on {generations} backends in turn (none from the spike); pool {after['total']} "
        f"connections, lost {after['connections_lost']}, errors {len(phases.errors)}"
    )


def _check(phases: Phases, db: Any, app: str) -> None:
    assert not phases.errors, phases.errors[:3]
    assert len(phases.spike) >= SPIKE_WORKERS // 2, "the spike did not grow the pool"
    assert not set(phases.steady) & phases.spike, "a backend from the spike survived idleness"
    assert len(set(phases.steady)) >= 2, "connections were not rotated by age during steady traffic"
    info = db.get_pool_info()
    assert info["checked_out"] == 0
    assert info["total"] <= 2, info  # shrunk back to pool_size / min_size
    wait_until(lambda: len(server_connections(app)) == db.get_pool_info()["total"], what="server == pool total")


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_spike_idle_rotate(kind: str, idle_killing_role: str) -> None:
    app = app_name("rot")
    db = open_db(kind, idle_killing_role, app, **_options(kind))
    phases = Phases()

    def one(hold: float, into: Any) -> None:
        try:
            with db.transaction() as conn:
                into(conn.execute(QUERY, {"hold": hold}).fetchone()["pid"])
        except Exception as exc:
            phases.errors.append(repr(exc))

    try:
        with ThreadPoolExecutor(SPIKE_WORKERS) as pool:
            list(pool.map(lambda _: one(0.05, phases.spike.add), range(SPIKE_WORKERS * 4)))
        time.sleep(1.5)  # the server closes every idle session, the pool lets its extra ones go
        before = db.get_pool_info()["total"]
        started = time.monotonic()
        while time.monotonic() - started < 3 * LIFETIME:
            one(0.0, phases.steady.append)
            time.sleep(0.02)
        _report(kind, phases, before, db.get_pool_info())
        _check(phases, db, app)
    finally:
        db.shutdown()


@pytest.mark.parametrize("kind", ASYNC_KINDS)
async def test_spike_idle_rotate_async(kind: str, idle_killing_role: str) -> None:
    app = app_name("rot")
    db = open_db(kind, idle_killing_role, app, **_options(kind))
    phases = Phases()

    async def one(hold: float, into: Any) -> None:
        try:
            async with db.transaction() as conn:
                into((await (await conn.execute(QUERY, {"hold": hold})).fetchone())["pid"])
        except Exception as exc:
            phases.errors.append(repr(exc))

    try:
        for _ in range(4):
            await asyncio.gather(*(one(0.05, phases.spike.add) for _ in range(SPIKE_WORKERS)))
        await asyncio.sleep(1.5)
        before = db.get_pool_info()["total"]
        started = time.monotonic()
        while time.monotonic() - started < 3 * LIFETIME:
            await one(0.0, phases.steady.append)
            await asyncio.sleep(0.02)
        _report(kind, phases, before, db.get_pool_info())
        await asyncio.to_thread(_check, phases, db, app)
    finally:
        await db.shutdown()
