"""What the asyncio sources of tests/semantics and the sync modules generated from them share.

* the targets: (backend, dialect[+driver]) pairs, sync and asyncio;
* :func:`declarations` and :class:`FirstParty`: what each first-party flavour declares to the
  conformance kit beyond ``db.features``, and what it promises about its errors;
* :class:`Opener`, which ``open_db`` / ``open_db_async`` / ``open_url`` / ``open_url_async``
  (tests/semantics/conftest.py) give a test;
* :class:`raises`, ``pytest.raises`` that an ``async with`` statement can hold too.

The asyncio sources write ``async with raises(E), db.transaction() as conn:``, which
the generated sync module reads as ``with raises(E), db.transaction() as conn:``: one
statement on both sides, where ``with pytest.raises(E):`` around an ``async with`` would
leave the sync module two nested ``with`` statements (which ruff's SIM117 refuses, and
``tools/sync_from_async.py`` does not merge).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from structum_lab.plugins.database import DatabaseError, SerializationError
from structum_lab.plugins.database.testing.conformance import SECRET, closed_port, url_at

__all__ = ["ASYNC_TARGETS", "SYNC_TARGETS", "FirstParty", "Opener", "declarations", "raises", "server_url"]

SYNC_TARGETS = [
    ("sqlalchemy", "sqlite"),
    ("sqlalchemy", "postgresql"),
    ("sqlalchemy", "mysql"),
    ("psycopg", "postgresql"),
]
ASYNC_TARGETS = [
    ("sqlalchemy", "sqlite+aiosqlite"),
    ("sqlalchemy", "postgresql+psycopg"),
    ("sqlalchemy", "postgresql+asyncpg"),
    ("sqlalchemy", "mysql+aiomysql"),
    ("psycopg", "postgresql"),
]


SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
SESSION_ALIVE = {
    "postgresql": "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = :id",
    "mysql": "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = :id",
}
SERIAL = {
    "postgresql": "SERIAL PRIMARY KEY",
    "mysql": "INTEGER PRIMARY KEY AUTO_INCREMENT",
    "sqlite": "INTEGER PRIMARY KEY",
}


def server_url(request: pytest.FixtureRequest, tmp_path: Path, scheme: str) -> str:
    """A fresh database of ``scheme``'s dialect: a schema (PostgreSQL), a database (MariaDB), a file (SQLite)."""
    dialect = scheme.partition("+")[0]
    if dialect == "sqlite":
        return f"{scheme}:///{tmp_path}/semantics.db"
    if dialect == "postgresql":
        base: str = request.getfixturevalue("pg_schema_url")
        return base.replace("postgresql://", f"{scheme}://", 1)
    base = request.getfixturevalue("mysql_db_url")
    return base.replace("mysql+pymysql://", f"{scheme}://", 1)


def declarations(backend: str, scheme: str) -> dict[str, Any]:
    """The conformance kit's class attributes for one first-party flavour: what ``db.features``
    cannot say about the database and the pool (docs/backends/authoring.md)."""
    dialect = scheme.partition("+")[0]
    found: dict[str, Any] = {"backend": backend, "scheme": scheme, "serial_key": SERIAL[dialect]}
    if dialect == "sqlite":
        # Locks, not snapshots; sqlite3's busy timeout, short; pysqlite counts no SELECT rows.
        found.update(locking_isolation=True, impatient_options={"connect_args": {"timeout": 0.2}})
        found.update(counts_selected_rows=False)
    else:
        found.update(session_id_sql=SESSION_ID[dialect], session_alive_sql=SESSION_ALIVE[dialect])
    if backend == "psycopg":
        # psycopg_pool opens min_size connections at start and keeps the overflow one until max_idle.
        found.update(pool_prefills=True, pool_keeps_overflow=True)
    if backend == "sqlalchemy" and scheme == "postgresql":
        found.update(scheme_selects_backend=False)  # the psycopg backend ranks first for postgresql://
    if scheme.endswith("+asyncpg"):
        # asyncpg does not expose the aborted state, and reports no row count for a batch.
        found.update(statement_error_aborts=True, counts_batch_rows=False)
    return found


class FirstParty:
    """What the first-party backends promise beyond the kit (its ``check_error`` hook), and where
    their databases are (the ``database_url`` and ``unreachable_url`` fixtures)."""

    backend: str
    scheme: str

    @pytest.fixture
    def database_url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        return server_url(request, tmp_path, self.scheme)

    @pytest.fixture
    def unreachable_url(self, database_url: str, tmp_path: Path) -> str:
        if self.scheme == "sqlite":
            # A file that cannot be opened. (Not with aiosqlite: the thread of a failed connect lives
            # on until the collector finds it, and then reports to an event loop long closed.)
            return f"{self.scheme}:///{tmp_path}/no-such-directory/kit.db"
        return url_at(database_url, closed_port())

    def check_error(self, situation: str, error: DatabaseError) -> None:
        dialect = self.scheme.partition("+")[0]
        if situation == "unique_violation":
            if dialect == "postgresql":
                assert error.sqlstate == "23505"
            if self.backend == "psycopg":
                import psycopg

                assert isinstance(error.__cause__, psycopg.errors.UniqueViolation)
        elif situation == "readonly_write" and dialect == "postgresql":
            assert "read-only" in str(error)
        elif situation == "serialization_conflict" and dialect == "postgresql":
            assert isinstance(error, SerializationError) and error.sqlstate == "40001"
        elif situation == "pool_timeout" and self.backend == "sqlalchemy":
            import sqlalchemy.exc

            assert isinstance(error, sqlalchemy.exc.TimeoutError)  # spec section 6.3
        elif situation == "unreachable" and dialect == "postgresql":
            assert SECRET not in str(error)
            if self.scheme.endswith("+asyncpg"):
                # asyncpg raises the OSError of connect(), which SQLAlchemy does not wrap.
                assert "Connect call failed" in str(error)
                assert isinstance(error.__cause__, ConnectionRefusedError)
                return
            assert "Connection refused" in str(error)  # libpq's words
            if self.backend == "psycopg":
                import psycopg

                assert isinstance(error.__cause__, psycopg.OperationalError)
            else:
                import sqlalchemy.exc

                assert isinstance(error.__cause__, sqlalchemy.exc.OperationalError)


class Opener:
    """Opens databases of one flavour and remembers them, to shut them down afterwards.

    ``opener(**options)`` opens one at the fixture's URL (``opener.url``), ``opener(url,
    **options)`` at another; ``backend``, ``scheme`` and ``dialect`` name the flavour.
    """

    def __init__(self, target: tuple[str, str], opener: Callable[..., Any], url: str | None) -> None:
        self.backend, self.scheme = target
        self.dialect = self.scheme.partition("+")[0]
        self.url = url
        self.opened: list[Any] = []
        self._open = opener

    def __call__(self, url: str | None = None, **options: Any) -> Any:
        db = self._open(url or self.url, backend=self.backend, **options)
        self.opened.append(db)
        return db


class raises:
    def __init__(self, expected: type[BaseException] | tuple[type[BaseException], ...], **kwargs: Any) -> None:
        self._context = pytest.raises(expected, **kwargs)

    def __enter__(self) -> pytest.ExceptionInfo[Any]:
        return self._context.__enter__()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        return self._context.__exit__(kind, exc, tb)

    async def __aenter__(self) -> pytest.ExceptionInfo[Any]:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self.__exit__(kind, exc, tb)
