"""The base of every kit test class: what the backend author declares, and the fixtures.

An author subclasses the kit (``class TestMine(AsyncConformanceTests)``), names the
backend and gives a ``database_url`` fixture; what the kit cannot read from
``db.features`` (how the database isolates, what its pool does on its own) is said in
the class attributes below, and :meth:`check_error` adds what the backend knows about
its errors. docs/backends/authoring.md has the table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import ClassVar, cast

import pytest

from ..._config.connect import connect, connect_async
from ..._contract.errors import DatabaseError
from ..._contract.features import Features
from ..._engine.flavour import ASYNC
from .protocols_async import AsyncKitDatabase
from .support import (
    Opener,
    closed_port,
    required_features,
    unique_name,
    url_at,
)
from .support import async_fixture as loop_fixture  # sync: from pytest import fixture as loop_fixture

__all__ = ["DDL", "AsyncKitBase", "balances", "names"]

#: The tables most tests work on: accounts with balances, and items with a unique name.
DDL = (
    "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE)",
)


class AsyncKitBase:
    """Declarations, hooks and fixtures shared by the kit's test classes."""

    if ASYNC:  # ASYNC
        # pytest-asyncio runs the kit's coroutines, in its strict mode too.
        pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    #: The backend's registry name (its ``structum_database.backends`` entry point). Required.
    backend: ClassVar[str]
    #: The URL's scheme alone selects this backend (False where another backend ranks first for
    #: it, as psycopg does for ``postgresql://`` when the SQLAlchemy backend is named instead).
    scheme_selects_backend: ClassVar[bool] = True
    #: The database isolates with locks, not snapshots (SQLite): a writer waits for another
    #: connection's open transaction, so concurrent writers in one test would wait for each other.
    locking_isolation: ClassVar[bool] = False
    #: Options under which a writer waiting for a lock gives up at once (``locking_isolation``).
    impatient_options: ClassVar[Mapping[str, object]] = {}
    #: After a failed statement the server aborts the whole transaction though the driver cannot
    #: tell (PostgreSQL through asyncpg); with ``features.aborted_state`` the driver can tell.
    statement_error_aborts: ClassVar[bool] = False
    #: ``rowcount`` of a SELECT counts its rows (else it is -1).
    counts_selected_rows: ClassVar[bool] = True
    #: ``executemany()`` returns the rows affected (else -1).
    counts_batch_rows: ClassVar[bool] = True
    #: The pool opens ``pool_size`` connections by itself when it starts (else on demand).
    pool_prefills: ClassVar[bool] = False
    #: A connection opened beyond ``pool_size`` stays open, idle, after its return (else it is closed).
    pool_keeps_overflow: ClassVar[bool] = False
    #: How the database's SQL declares an auto-incremented integer primary key.
    serial_key: ClassVar[str] = "INTEGER PRIMARY KEY"
    #: SQL giving a connection's server session, and SQL counting live sessions of ``:id``
    #: (``None``: the database has no server sessions; that test is skipped).
    session_id_sql: ClassVar[str | None] = None
    session_alive_sql: ClassVar[str | None] = None

    # -- hooks ---------------------------------------------------------------------------

    async def settle_pool(self, db: AsyncKitDatabase) -> None:
        """Wait until the connections the pool opens by itself are open (``pool_prefills``)."""

    def check_error(self, situation: str, error: DatabaseError) -> None:
        """What else the backend promises about the error a test provoked: its SQLSTATE, its
        driver's exception as ``__cause__``, its words. ``situation`` is one of
        ``unique_violation``, ``not_null_violation``, ``syntax_error``, ``readonly_write``,
        ``serialization_conflict``, ``pool_timeout``, ``unreachable``. The kit has checked the
        core class, ``backend`` and that ``__cause__`` is set."""

    # -- the author's fixtures -----------------------------------------------------------

    @pytest.fixture
    def database_url(self) -> str:
        """The URL of a fresh, empty database for one test (override it: required)."""
        pytest.fail(f"{type(self).__name__} must define the database_url fixture", pytrace=False)

    @pytest.fixture
    def database_factory(self) -> Callable[..., AsyncKitDatabase]:
        """``factory(url, **options)``: a database of the backend (default: through the registry)."""
        backend = getattr(self, "backend", None)
        if not backend:
            pytest.fail(f"{type(self).__name__} must name its backend: backend = '<name>'", pytrace=False)

        def factory(url: str, **options: object) -> AsyncKitDatabase:
            if ASYNC:  # ASYNC
                return cast("AsyncKitDatabase", connect_async(url, backend=backend, **options))
            else:
                return cast("AsyncKitDatabase", connect(url, backend=backend, **options))

        return factory

    @pytest.fixture
    def unreachable_url(self, database_url: str) -> str:
        """A URL of this backend whose server refuses connections at once, with a password in
        it (default: the database URL's scheme at a closed local port; override it for a file
        database, e.g. a path in a directory that does not exist)."""
        return url_at(database_url, closed_port(), hint=": override the unreachable_url fixture")

    # -- the kit's fixtures --------------------------------------------------------------

    @loop_fixture
    async def open_database(
        self, request: pytest.FixtureRequest, database_factory: Callable[..., AsyncKitDatabase], database_url: str
    ) -> AsyncIterator[Opener[AsyncKitDatabase]]:
        """Opens databases (``open_database(**options)``, ``open_database(url, **options)``)
        and shuts them all down after the test."""
        opener = Opener(database_factory, database_url, required_features(request.function))
        yield opener
        for db in opener.opened:
            await db.shutdown()

    @loop_fixture
    async def db(self, open_database: Opener[AsyncKitDatabase]) -> AsyncKitDatabase:
        """The database under test, with the ``acct`` and ``items`` tables (two accounts of 100)."""
        database = open_database(pool_size=5, max_overflow=0, pool_timeout=10)
        async with database.transaction() as conn:
            for statement in DDL:
                await conn.execute(statement)
            await conn.executemany(
                "INSERT INTO acct (id, balance) VALUES (:id, :b)", [{"id": i, "b": 100} for i in (1, 2)]
            )
        return database

    @pytest.fixture
    def observer(self, open_database: Opener[AsyncKitDatabase]) -> AsyncKitDatabase:
        """A second, independent pool on the same database: it sees only what is committed."""
        return open_database(pool_size=1)

    @pytest.fixture
    def features(self, db: AsyncKitDatabase) -> Features:
        return db.features

    @pytest.fixture
    def table(self) -> str:
        """A table name no other test uses."""
        return unique_name()


async def balances(db: AsyncKitDatabase) -> dict[int, int]:
    """The committed balances, as ``db`` sees them."""
    async with db.transaction() as conn:
        result = await conn.execute("SELECT id, balance FROM acct ORDER BY id")
        return {r["id"]: r["balance"] async for r in result}


async def names(db: AsyncKitDatabase) -> list[str]:
    """The item names, in id order."""
    async with db.transaction() as conn:
        return [r["name"] for r in await (await conn.execute("SELECT name FROM items ORDER BY id")).fetchall()]
