"""One application, two backends: the common API behaves the same whichever backend the
configuration selects.

Each test opens the database with core ``from_config()`` (or ``from_config_async()``)
from the same project directory and the same ``config/app/database.toml``; only the
``backend`` key differs, set through ``STRUCTUM_DATABASE__BACKEND`` as an operator
would. What the test observes from a second, independent connection is what
committed.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import (
    HealthStatus,
    IntegrityError,
    ParameterError,
    ProgrammingError,
    TransactionError,
    available_backends,
    connect,
    from_config,
    from_config_async,
)
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

INSTALLED = {info.name for info in available_backends()}
BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(name not in INSTALLED, reason=f"the {name} backend is not installed"))
    for name in ("sqlalchemy", "psycopg")
]
SYNC_CLASS = {"sqlalchemy": "SQLAlchemyDatabase", "psycopg": "PostgresDatabase"}
ASYNC_CLASS = {"sqlalchemy": "AsyncSQLAlchemyDatabase", "psycopg": "AsyncPostgresDatabase"}
POOL_KEYS = {
    "checked_out",
    "available",
    "total",
    "overflow",
    "size",
    "max_size",
    "requests_waiting",
    "checkouts",
    "timeouts",
    "connections_lost",
    "max_wait_ms",
}
CREATE = "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE, qty INTEGER)"


@pytest.fixture
def project(tmp_path: Path, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """One configuration for both backends: the url and the common pool options."""
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        textwrap.dedent(
            f"""
            [default]
            url = "{pg_schema_url}"
            pool_size = 3
            max_overflow = 2
            pool_timeout = 5
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    provider = DynaconfConfigProvider(root_path=".")
    provider.auto_discover()
    set_config_provider(provider)
    yield tmp_path
    set_config_provider(None)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    monkeypatch.setenv("STRUCTUM_DATABASE__BACKEND", name)
    return name


@pytest.fixture
def db(backend: str) -> Iterator[Any]:
    database = from_config()
    assert type(database).__name__ == SYNC_CLASS[backend] and database.backend == backend
    with database.transaction() as conn:
        conn.execute(CREATE)
    yield database
    database.shutdown()


@pytest.fixture
async def adb(backend: str) -> AsyncIterator[Any]:
    database = from_config_async()
    assert type(database).__name__ == ASYNC_CLASS[backend] and database.backend == backend
    async with database.transaction() as conn:
        await conn.execute(CREATE)
    yield database
    await database.shutdown()


@pytest.fixture
def observer(pg_schema_url: str) -> Iterator[Any]:
    with psycopg.connect(pg_schema_url, autocommit=True) as conn:
        yield conn


def committed(observer: Any) -> list[str]:
    return [r[0] for r in observer.execute("SELECT name FROM items ORDER BY id").fetchall()]


# -- routing ---------------------------------------------------------------------------


@pytest.mark.skipif(not {"sqlalchemy", "psycopg"} <= INSTALLED, reason="needs both backends")
def test_connect_routes_postgresql_urls(pg_url: str) -> None:
    from structum_lab.plugins.database import PostgresDatabase, SQLAlchemyDatabase

    native = connect(pg_url, pool_size=1)
    chosen = connect(pg_url, backend="sqlalchemy", pool_size=1)
    try:
        assert type(native) is PostgresDatabase and native.backend == "psycopg"
        assert type(chosen) is SQLAlchemyDatabase and chosen.backend == "sqlalchemy"
    finally:
        native.shutdown()
        chosen.shutdown()


# -- sync --------------------------------------------------------------------------------


def test_commit_and_rollback(db: Any, observer: Any) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 1, "name": "a"})
        assert committed(observer) == []
    assert committed(observer) == ["a"]
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 2, "name": "b"})
        raise RuntimeError
    assert committed(observer) == ["a"]


def test_savepoints_raw_and_api_and_nesting(db: Any, observer: Any) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'order')")
        conn.execute("SAVEPOINT sp1")
        try:
            conn.execute("INSERT INTO items (id, name) VALUES (2, 'order')")
        except IntegrityError:
            conn.execute("ROLLBACK TO SAVEPOINT sp1")
        with pytest.raises(IntegrityError), conn.transaction():
            conn.execute("INSERT INTO items (id, name) VALUES (3, 'kept?')")
            conn.execute("INSERT INTO items (id, name) VALUES (4, 'order')")
        with pytest.raises(ValueError), db.transaction() as nested:
            assert nested is conn
            nested.execute("INSERT INTO items (id, name) VALUES (5, 'inner')")
            raise ValueError
        with db.transaction() as nested:
            nested.execute("INSERT INTO items (id, name) VALUES (6, 'nested ok')")
    assert committed(observer) == ["order", "nested ok"]


def test_rows_rowcount_fetchmany_scalar(db: Any) -> None:
    with db.transaction() as conn:
        for i in range(1, 6):
            conn.execute(
                "INSERT INTO items (id, name, qty) VALUES (:id, :name, :qty)", {"id": i, "name": f"n{i}", "qty": i}
            )
        assert conn.execute("UPDATE items SET qty = qty + 1 WHERE id > :n", {"n": 2}).rowcount == 3
        result = conn.execute("SELECT id, name, qty FROM items ORDER BY id")
        assert result.keys() == ["id", "name", "qty"]
        row = result.fetchone()
        assert row["name"] == "n1" and row[0] == 1 and dict(row) == {"id": 1, "name": "n1", "qty": 1}
        assert [r["id"] for r in result.fetchmany(size=3)] == [2, 3, 4]
        assert [r["id"] for r in result.fetchall()] == [5]
        assert result.fetchone() is None and result.fetchall() == []
        assert conn.execute("SELECT SUM(qty) AS total FROM items").scalar() == 18
        conn.execute("SELECT name FROM items WHERE id = :id", {"id": 4})
        assert conn.fetchone() == {"name": "n4"}
        assert conn.execute("DELETE FROM items WHERE id > :n", {"n": 3}).rowcount == 2


def test_executemany(db: Any, observer: Any) -> None:
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO items (id, name, qty) VALUES (:id, :name, :qty)",
            [{"id": i, "name": f"m{i}", "qty": i} for i in range(20)],
        )
    assert observer.execute("SELECT COUNT(*), SUM(qty) FROM items").fetchone() == (20, 190)


def test_get_connection(db: Any, observer: Any) -> None:
    conn = db.get_connection()
    try:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'kept')")
        conn.commit()
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'dropped')")
        conn.rollback()
    finally:
        conn.close()
    assert committed(observer) == ["kept"]


def test_pool_info(db: Any) -> None:
    before = db.get_pool_info()
    assert set(before) >= POOL_KEYS
    assert (before["checked_out"], before["size"], before["max_size"]) == (0, 3, 5)
    with db.transaction() as conn:
        conn.execute("SELECT 1")
        during = db.get_pool_info()
        assert during["checked_out"] == 1 and during["total"] >= 1
    after = db.get_pool_info()
    assert after["checked_out"] == 0 and after["checkouts"] == before["checkouts"] + 1
    assert after["available"] == after["total"] <= after["max_size"] and after["timeouts"] == 0


def test_health(db: Any) -> None:
    result = db.health_check()
    assert result.status is HealthStatus.HEALTHY and result.message == "Database connection OK"
    assert result.latency_ms > 0 and set(result.details["pool"]) >= POOL_KEYS


def test_errors(db: Any) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'a')")
    with pytest.raises(ProgrammingError), db.transaction() as conn:
        conn.execute("SELECT nope FROM items")
    with pytest.raises(ProgrammingError, match="rowcount"), db.transaction() as conn:
        conn.execute("UPDATE items SET qty = 1").fetchall()
    with pytest.raises(ParameterError, match="missing parameter :name"), db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 3})
    with db.transaction() as conn:
        pass
    with pytest.raises(TransactionError, match="transaction has ended"):
        conn.execute("SELECT 1")


# -- async -------------------------------------------------------------------------------


async def test_async_common_api(adb: Any, observer: Any) -> None:
    async with adb.transaction() as conn:
        await conn.execute("INSERT INTO items (id, name, qty) VALUES (:id, :name, 1)", {"id": 1, "name": "a"})
        await conn.execute("SAVEPOINT sp1")
        try:
            await conn.execute("INSERT INTO items (id, name) VALUES (2, 'a')")
        except IntegrityError:
            await conn.execute("ROLLBACK TO SAVEPOINT sp1")
        with pytest.raises(IntegrityError):
            async with conn.transaction():
                await conn.execute("INSERT INTO items (id, name) VALUES (3, 'a')")
        async with adb.transaction() as nested:
            assert nested is conn
            await nested.executemany(
                "INSERT INTO items (id, name, qty) VALUES (:id, :name, :qty)",
                [{"id": i, "name": f"m{i}", "qty": i} for i in range(10, 15)],
            )
        assert committed(observer) == []
    assert committed(observer) == ["a", "m10", "m11", "m12", "m13", "m14"]
    with pytest.raises(RuntimeError):
        async with adb.transaction() as conn:
            await conn.execute("DELETE FROM items")
            raise RuntimeError
    async with adb.transaction() as conn:
        result = await conn.execute("SELECT id, name FROM items ORDER BY id")
        row = await result.fetchone()
        assert row["name"] == "a" and row[0] == 1 and dict(row) == {"id": 1, "name": "a"}
        assert [r["id"] for r in await result.fetchmany(size=2)] == [10, 11]
        assert [r["id"] for r in await result.fetchall()] == [12, 13, 14]
        assert await (await conn.execute("SELECT SUM(qty) FROM items")).scalar() == 61
        assert (await conn.execute("UPDATE items SET qty = 0 WHERE id > :n", {"n": 12})).rowcount == 2
        with pytest.raises(ParameterError, match="missing parameter :n"):
            await conn.execute("SELECT :n, :m", {"m": 1})
    with pytest.raises(TransactionError):
        await conn.execute("SELECT 1")


async def test_async_connection_pool_and_health(adb: Any, observer: Any) -> None:
    conn = await adb.get_connection()
    try:
        await conn.execute("INSERT INTO items (id, name) VALUES (1, 'kept')")
        await conn.commit()
        await conn.execute("INSERT INTO items (id, name) VALUES (2, 'dropped')")
        await conn.rollback()
        assert adb.get_pool_info()["checked_out"] == 1
    finally:
        await conn.close()
    assert committed(observer) == ["kept"]
    info = adb.get_pool_info()
    assert set(info) >= POOL_KEYS and info["checked_out"] == 0 and (info["size"], info["max_size"]) == (3, 5)
    result = await adb.health_check()
    assert result.status is HealthStatus.HEALTHY and result.message == "Database connection OK"
    with pytest.raises(IntegrityError):
        async with adb.transaction() as c:
            await c.execute("INSERT INTO items (id, name) VALUES (1, 'again')")
