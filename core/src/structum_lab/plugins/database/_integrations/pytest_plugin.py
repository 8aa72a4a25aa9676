"""pytest plugin: a test database, per-test rollback isolation, and schema set-up.

Registered through the ``pytest11`` entry point, so installing the core distribution
makes the fixtures available. Options (command line, environment, ini):

- ``--structum-db-url`` / ``STRUCTUM_TEST_DATABASE_URL`` / ``structum_db_url``
- ``--structum-db-backend`` / ``STRUCTUM_TEST_DATABASE_BACKEND`` / ``structum_db_backend``
- ``structum_db_schema`` (ini): a SQL file run once per session
- ``structum_db_register_as`` (ini): names under which ``structum_db`` is registered
  with ``set_database()`` for the duration of each test (default: ``default``)

Fixtures: ``structum_database`` (session), ``structum_db_metadata`` (session, override
it to return your ``Base.metadata``), ``structum_db_schema`` (session),
``structum_db`` (function, rolled back) and ``structum_async_db`` (function, rolled
back; needs pytest-asyncio). See docs/testing.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .._config.connect import connect, connect_async
from .._config.instances import registered_databases, remove_database, set_database
from .testing import RollbackDatabase
from .testing_async import AsyncRollbackDatabase

if TYPE_CHECKING:
    from .._contract.protocols import DatabaseInterface

__all__ = [
    "pytest_addoption",
    "structum_database",
    "structum_db",
    "structum_db_metadata",
    "structum_db_schema",
    "structum_db_settings",
]

URL_ENV = "STRUCTUM_TEST_DATABASE_URL"
BACKEND_ENV = "STRUCTUM_TEST_DATABASE_BACKEND"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("structum-database", "Structum Database test fixtures")
    group.addoption("--structum-db-url", default=None, help=f"Test database URL (env {URL_ENV}).")
    group.addoption("--structum-db-backend", default=None, help=f"Backend for it (env {BACKEND_ENV}).")
    parser.addini("structum_db_url", "Test database URL (overridden by --structum-db-url and the env var)")
    parser.addini("structum_db_backend", "Backend for the test database")
    parser.addini("structum_db_schema", "SQL file run once per test session to create the schema")
    parser.addini(
        "structum_db_register_as",
        "Names under which structum_db is registered with set_database() during each test",
        type="args",
        default=["default"],
    )


@pytest.fixture(scope="session")
def structum_db_settings(pytestconfig: pytest.Config) -> dict[str, Any]:
    """URL and backend of the test database; skips the test when none is configured."""
    url = (
        pytestconfig.getoption("--structum-db-url")
        or os.environ.get(URL_ENV)
        or str(pytestconfig.getini("structum_db_url") or "")
    )
    backend = (
        pytestconfig.getoption("--structum-db-backend")
        or os.environ.get(BACKEND_ENV)
        or str(pytestconfig.getini("structum_db_backend") or "")
        or None
    )
    if not url:
        message = f"no test database: pass --structum-db-url, set {URL_ENV}, or set structum_db_url in the ini file"
        if os.environ.get("STRUCTUM_REQUIRE_SERVERS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return {"url": url, "backend": backend}


@pytest.fixture(scope="session")
def structum_database(structum_db_settings: dict[str, Any]) -> Iterator[DatabaseInterface]:
    """The test database for the whole session (a small pool), shut down at the end."""
    db = connect(structum_db_settings["url"], backend=structum_db_settings["backend"], pool_size=2, name="test")
    yield db
    db.shutdown()


@pytest.fixture(scope="session")
def structum_db_metadata() -> Any:
    """Override to return a SQLAlchemy ``MetaData`` (e.g. ``Base.metadata``) to create once."""
    return None


def _statements(script: str) -> list[str]:
    # One statement per ';' at the end of a line: simple, predictable, documented.
    return [s.strip() for s in re.split(r";\s*$", script, flags=re.MULTILINE) if s.strip()]


@pytest.fixture(scope="session")
def structum_db_schema(
    structum_database: DatabaseInterface, structum_db_metadata: Any, pytestconfig: pytest.Config
) -> Iterator[None]:
    """Creates the tables once per session (from the metadata and/or the SQL file)."""
    created: list[Any] = []
    sql_file = str(pytestconfig.getini("structum_db_schema") or "")
    if sql_file:
        path = Path(sql_file)
        if not path.is_absolute():
            path = Path(pytestconfig.rootpath) / path
        with structum_database.transaction() as conn:
            for statement in _statements(path.read_text(encoding="utf-8")):
                conn.execute(statement)
    if structum_db_metadata is not None:
        from sqlalchemy.schema import CreateTable, DropTable

        dialect = _sqlalchemy_dialect(structum_database.url)
        with structum_database.transaction() as conn:
            for table in structum_db_metadata.sorted_tables:
                conn.execute(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
                created.append(table)
    yield
    if created:
        from sqlalchemy.schema import DropTable

        dialect = _sqlalchemy_dialect(structum_database.url)
        with structum_database.transaction() as conn:
            for table in reversed(created):
                conn.execute(str(DropTable(table, if_exists=True).compile(dialect=dialect)))


def _sqlalchemy_dialect(url: str) -> Any:
    from sqlalchemy.engine import make_url

    name = url.split("://", 1)[0].split("+", 1)[0]
    return make_url(f"{'postgresql' if name == 'postgres' else name}://").get_dialect()()


def _register(db: Any, names: list[str]) -> dict[str, Any]:
    previous = {name: registered_databases().get(name) for name in names}
    for name in names:
        set_database(db, name)
    return previous


def _restore(previous: dict[str, Any]) -> None:
    for name, db in previous.items():
        if db is None:
            remove_database(name)
        else:
            set_database(db, name)


@pytest.fixture
def structum_db(
    structum_database: DatabaseInterface, structum_db_schema: None, pytestconfig: pytest.Config
) -> Iterator[RollbackDatabase]:
    """A database whose every change is rolled back after the test, commits included."""
    conn = structum_database.get_connection()
    db = RollbackDatabase(structum_database, conn)
    previous = _register(db, list(pytestconfig.getini("structum_db_register_as")))
    try:
        yield db
    finally:
        _restore(previous)
        try:
            conn.rollback()
        finally:
            conn.close()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - async fixtures need pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def structum_async_db(
        structum_db_settings: dict[str, Any], structum_db_schema: None, pytestconfig: pytest.Config
    ) -> AsyncIterator[AsyncRollbackDatabase]:
        """The asyncio counterpart of ``structum_db`` (its own small pool per test)."""
        real = connect_async(
            structum_db_settings["url"], backend=structum_db_settings["backend"], pool_size=1, name="test"
        )
        try:
            conn = await real.get_connection()
            db = AsyncRollbackDatabase(real, conn)
            previous = _register(db, list(pytestconfig.getini("structum_db_register_as")))
            try:
                yield db
            finally:
                _restore(previous)
                try:
                    await conn.rollback()
                finally:
                    await conn.close()
        finally:
            await real.shutdown()

    __all__ += ["structum_async_db"]
