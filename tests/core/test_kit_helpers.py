"""Unit tests for the helpers core shares with backend authors (``kit``): the rows of a DB-API
cursor, the checkout ping rule, the connection counter, and what core knows about drivers."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from structum_lab.plugins.database import (
    ConfigurationError,
    DatabaseURL,
    MultipleResultsFound,
    NoResultFound,
    PoolTimeoutError,
    ProgrammingError,
)
from structum_lab.plugins.database.kit import (
    ASYNC_DRIVERS,
    PRE_PING_WINDOW,
    AsyncCursorRows,
    ConnectMonitor,
    CursorRows,
    ListenerOf,
    NoRows,
    OpenConnections,
    deadline_connect_args,
    default_driver,
    describe_driver_connection,
    dialect_features,
    driver_connect_args,
    driver_socket,
    error_classes,
    forced_ping,
    is_memory_sqlite,
    isolation_name,
    merge_connect_args,
    needs_ping,
    ping_forced,
    pool_figures,
    prepare_threshold_args,
    readable_probe,
    resolve_driver,
    server_settings_from_options,
    set_mysql_statement_timeout,
)


@pytest.fixture
def sqlite() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER, name TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    yield conn
    conn.close()


# -- CursorRows ------------------------------------------------------------------------


class _Closing:
    """A cursor that records whether it was closed."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self.closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def close(self) -> None:
        self.closed = True
        self._cursor.close()


def test_cursor_rows_read_dicts_and_close_at_the_end(sqlite: sqlite3.Connection) -> None:
    cursor = _Closing(sqlite.execute("SELECT id, name FROM t ORDER BY id"))
    rows = CursorRows(cursor)
    assert rows.returns_rows and rows.keys() == ["id", "name"]
    assert rows.fetchone() == {"id": 1, "name": "a"}
    assert rows.fetchmany(1) == [{"id": 2, "name": "b"}]
    assert not cursor.closed
    assert rows.fetchall() == [{"id": 3, "name": "c"}]
    assert cursor.closed  # read to the end: the cursor goes at once
    assert rows.fetchone() is None and rows.fetchmany(5) == [] and rows.fetchall() == []


def test_cursor_rows_fetchone_past_the_end_closes(sqlite: sqlite3.Connection) -> None:
    cursor = _Closing(sqlite.execute("SELECT id FROM t WHERE id = 1"))
    rows = CursorRows(cursor)
    assert rows.fetchone() == {"id": 1}
    assert rows.fetchone() is None
    assert cursor.closed


def test_cursor_rows_of_a_statement_without_rows(sqlite: sqlite3.Connection) -> None:
    rows = CursorRows(sqlite.execute("UPDATE t SET name = 'x' WHERE id < 3"))
    assert not rows.returns_rows and rows.rowcount == 2 and rows.keys() == []
    for fetch in (rows.fetchone, rows.fetchall, rows.scalar, lambda: rows.fetchmany(2)):
        with pytest.raises(NoRows):
            fetch()
    gone = CursorRows(None, rowcount=7)  # the driver closed the cursor already
    assert not gone.returns_rows and gone.rowcount == 7
    gone.close()


def test_cursor_rows_scalar_by_position_despite_duplicate_names(sqlite: sqlite3.Connection) -> None:
    rows = CursorRows(sqlite.execute("SELECT 1 AS x, 2 AS x"))
    with pytest.raises(ProgrammingError, match="x"):
        rows.fetchone()
    assert CursorRows(sqlite.execute("SELECT 1 AS x, 2 AS x")).scalar() == 1
    assert CursorRows(sqlite.execute("SELECT id FROM t WHERE id > 5")).scalar() is None


def test_cursor_rows_keys_rowcount_and_close_given(sqlite: sqlite3.Connection) -> None:
    closed: list[bool] = []
    rows = CursorRows(
        sqlite.execute("SELECT id, name FROM t ORDER BY id"),
        keys=["a", "b"],
        rowcount=-1,
        close=lambda: closed.append(True),
    )
    assert rows.rowcount == -1
    assert rows.fetchmany(0) == []
    assert rows.fetchmany(2) == [{"a": 1, "b": "a"}, {"a": 2, "b": "b"}]
    rows.close()
    assert closed == [True]
    rows.close()  # once only
    assert closed == [True]


async def test_async_cursor_rows(sqlite: sqlite3.Connection) -> None:
    rows = AsyncCursorRows(sqlite.execute("SELECT id FROM t ORDER BY id"))
    assert await rows.fetchone() == {"id": 1}
    assert await rows.fetchall() == [{"id": 2}, {"id": 3}]
    assert await AsyncCursorRows(sqlite.execute("SELECT count(*) FROM t")).scalar() == 3


# -- checkout liveness -----------------------------------------------------------------


async def test_async_cursor_rows_fetch_and_close_through_run() -> None:
    shared = sqlite3.connect(":memory:", check_same_thread=False)
    shared.execute("CREATE TABLE big (n INTEGER)")
    shared.executemany("INSERT INTO big VALUES (?)", [(n,) for n in range(5)])
    threads: set[int] = set()
    cursor = _Closing(shared.execute("SELECT n FROM big ORDER BY n"))

    async def run(function: Any, *args: Any) -> Any:
        def call() -> Any:
            import threading

            threads.add(threading.get_ident())
            return function(*args)

        return await asyncio.to_thread(call)

    rows = AsyncCursorRows(cursor, rowcount=-1, run=run)
    assert await rows.fetchmany(2) == [{"n": 0}, {"n": 1}]
    assert await rows.fetchone() == {"n": 2}
    assert await rows.fetchall() == [{"n": 3}, {"n": 4}]
    assert not cursor.closed  # read to the end: close() closes it, through run
    await rows.close()
    assert cursor.closed
    await rows.close()  # once
    import threading

    assert threads and threading.get_ident() not in threads
    shared.close()


def test_needs_ping_inside_and_outside_the_window() -> None:
    quiet, noisy = socket.socketpair()
    try:
        probe = readable_probe(quiet.fileno())
        now = time.monotonic()
        assert not needs_ping(now, probe, PRE_PING_WINDOW)  # used a moment ago, nothing to read
        assert needs_ping(now - 10, probe, PRE_PING_WINDOW)  # idle beyond the window
        assert needs_ping(now, None, PRE_PING_WINDOW)  # no probe: cannot tell
        noisy.sendall(b"x")  # the server closed it, or sent something
        assert needs_ping(now, probe, PRE_PING_WINDOW)
    finally:
        quiet.close()
        noisy.close()


def test_forced_ping() -> None:
    assert not ping_forced()
    with forced_ping():
        assert ping_forced()
        with forced_ping():
            assert ping_forced()
        assert ping_forced()
    assert not ping_forced()


def test_driver_socket() -> None:
    class PgConn:
        socket = 7

    class Psycopg:
        pgconn = PgConn()

    class Sock:
        def fileno(self) -> int:
            return 9

    class PyMySQL:
        _sock = Sock()

    assert driver_socket(Psycopg()) == 7
    assert driver_socket(PyMySQL()) == 9
    assert driver_socket(object()) is None


def test_open_connections_count_and_tell_the_listener() -> None:
    counter = OpenConnections()
    counter.connecting("dialect", "record")
    counter.opened("dbapi", "record")  # nobody listening yet: counted all the same
    events: list[tuple[str, float]] = []
    counter.listener = lambda kind, seconds: events.append((kind, seconds))
    counter.connecting()
    counter.opened()
    counter.gone()
    assert counter.count == 1
    assert [kind for kind, _ in events] == ["created", "closed"] and events[0][1] >= 0.0


def test_open_connections_by_entry_count_only_entries_that_hold_a_connection() -> None:
    class Entry:
        def __init__(self) -> None:
            self.connection: object | None = None

    counter = OpenConnections(holds=lambda entry: entry.connection is not None)
    first, second, detached = Entry(), Entry(), Entry()
    for entry in (first, second, detached):
        entry.connection = object()
        counter.opened(entry.connection, entry)
    assert counter.count == 3
    second.connection = None  # closed by the pool without its close callback
    counter.gone(detached.connection, detached)  # no longer the pool's, though still open
    assert counter.count == 1
    second.connection = object()
    counter.opened(second.connection, second)  # the same entry connects again
    assert counter.count == 2
    counter.gone(first.connection, first)
    first.connection = None
    assert counter.count == 1


def test_listener_of_forwards_on_connection() -> None:
    class Driver:
        on_connection = ListenerOf("_monitor")

        def __init__(self) -> None:
            self._monitor = ConnectMonitor()

    driver = Driver()
    assert driver.on_connection is None and Driver.on_connection is None

    def listener(kind: Any, seconds: float) -> None:
        return None

    driver.on_connection = listener
    assert driver._monitor.listener is listener and driver.on_connection is listener


# -- what core knows about DB-API drivers ------------------------------------------------


def test_default_and_async_drivers() -> None:
    assert default_driver("postgresql", is_async=False) == "psycopg"
    assert default_driver("mysql", is_async=True) == "aiomysql"
    assert default_driver("sqlite", is_async=True) == "aiosqlite"
    assert default_driver("sqlite", is_async=False) is None  # the dialect's own (pysqlite)
    assert {"asyncpg", "aiosqlite", "psycopg"} <= ASYNC_DRIVERS and "pymysql" not in ASYNC_DRIVERS


@pytest.mark.parametrize(
    ("url", "memory"),
    [
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite:///file:x?mode=memory&uri=true", True),
        ("sqlite:///app.db", False),
        ("postgresql://h/db", False),
    ],
)
def test_is_memory_sqlite(url: str, memory: bool) -> None:
    assert is_memory_sqlite(DatabaseURL.parse(url)) is memory


def test_resolve_driver() -> None:
    assert resolve_driver("postgresql", None, is_async=False, opened_by="X") == "psycopg"
    assert resolve_driver("mysql", None, is_async=True, opened_by="X") == "aiomysql"
    assert resolve_driver("postgresql", "asyncpg", is_async=True, opened_by="X") == "asyncpg"
    assert resolve_driver("sqlite", None, is_async=False, opened_by="X") is None
    with pytest.raises(
        ConfigurationError, match=r"mysql\+pymysql:// is a synchronous driver; AsyncDB needs an async one"
    ):
        resolve_driver("mysql", "pymysql", is_async=True, opened_by="AsyncDB")
    with pytest.raises(ConfigurationError, match="no default async driver for oracle://"):
        resolve_driver("oracle", None, is_async=True, opened_by="AsyncDB")


def test_isolation_name_and_dialect_features() -> None:
    assert isolation_name("sqlite", "read_committed") == "SERIALIZABLE"
    assert isolation_name("sqlite", "read_uncommitted") == "READ UNCOMMITTED"
    assert isolation_name("postgresql", "read_uncommitted") == "READ COMMITTED"
    assert isolation_name("mysql", "repeatable_read") == "REPEATABLE READ"
    assert dialect_features("postgresql") == {"returning": True, "transactional_ddl": True, "autocommit": True}
    assert dialect_features("mysql") == {"returning": False, "transactional_ddl": False, "autocommit": False}
    assert dialect_features("mariadb")["returning"] and not dialect_features("mariadb")["transactional_ddl"]


_OPTIONS = {"connect_timeout": 10.0, "statement_timeout": 2.5, "statement_deadline": None, "prepare_threshold": 5}


def test_driver_connect_args() -> None:
    psycopg_args = driver_connect_args("postgresql", "psycopg", _OPTIONS, None)
    assert psycopg_args == {"connect_timeout": 10, "options": "-c statement_timeout=2500"}
    asyncpg_args = driver_connect_args(
        "postgresql", "asyncpg", _OPTIONS, {"server_settings": {"application_name": "app"}},
        url_options="-c search_path=app",
    )  # fmt: skip
    assert asyncpg_args["server_settings"] == {
        "statement_timeout": "2500",
        "search_path": "app",
        "application_name": "app",
    }
    assert asyncpg_args["timeout"] == 10.0
    assert "command_timeout" in asyncpg_args  # the default client-side deadline, after statement_timeout
    given = driver_connect_args("mysql", "pymysql", _OPTIONS, {"connect_timeout": 3})
    assert given["connect_timeout"] == 3  # the user's win
    assert (
        driver_connect_args("postgresql", "psycopg", {**_OPTIONS, "pgbouncer": True}, None)["prepare_threshold"] is None
    )
    with pytest.raises(ConfigurationError, match="prepare_threshold"):
        driver_connect_args("postgresql", "asyncpg", {**_OPTIONS, "prepare_threshold": None}, None)


def test_pool_figures() -> None:
    assert pool_figures(2, 5, 4, 10) == {
        "checked_out": 2, "available": 3, "total": 5, "overflow": 1, "size": 4, "max_size": 10,
    }  # fmt: skip
    assert pool_figures(1, 1, 1, 1, available=0, min_size=1)["min_size"] == 1
    assert pool_figures(0, 2, 4, 8)["overflow"] == 0


def test_merge_connect_args_merges_server_settings() -> None:
    defaults = {"timeout": 5, "server_settings": {"statement_timeout": "1000"}}
    assert merge_connect_args(defaults, None) == defaults
    merged = merge_connect_args(defaults, {"timeout": 2, "server_settings": {"search_path": "app"}})
    assert merged == {"timeout": 2, "server_settings": {"statement_timeout": "1000", "search_path": "app"}}
    assert merge_connect_args({}, {"server_settings": {"a": "1"}}) == {"server_settings": {"a": "1"}}


def test_server_settings_from_libpq_options() -> None:
    assert server_settings_from_options("-c search_path=app -cstatement_timeout=5000") == {
        "search_path": "app",
        "statement_timeout": "5000",
    }
    assert server_settings_from_options("--nothing") == {}


def test_deadline_connect_args() -> None:
    assert deadline_connect_args("asyncpg", 3.0) == {"command_timeout": 3.0}
    assert deadline_connect_args("pymysql", 3.0) == {"read_timeout": 3.0}
    assert deadline_connect_args("aiomysql", 3.0) == {}
    assert deadline_connect_args("asyncpg", None) == {}


@pytest.mark.parametrize(
    ("version", "sql"),
    [("10.11.6-MariaDB", "SET SESSION max_statement_time=1.5"), ("8.0.36", "SET SESSION max_execution_time=1500")],
)
def test_set_mysql_statement_timeout(version: str, sql: str) -> None:
    ran: list[str] = []

    class Cursor:
        def execute(self, statement: str) -> None:
            ran.append(statement)

        def fetchone(self) -> tuple[str]:
            return (version,)

        def close(self) -> None:
            ran.append("closed")

    class Connection:
        def cursor(self) -> Cursor:
            return Cursor()

    set_mysql_statement_timeout(Connection(), 1.5)
    assert ran == ["SELECT VERSION()", sql, "closed"]


def test_describe_driver_connection() -> None:
    class Info:
        backend_pid = 4242

    class Psycopg:
        info = Info()

    assert describe_driver_connection(Psycopg()) == "server pid 4242"
    assert describe_driver_connection(object()) == "object"


def test_hosts_in_query() -> None:
    url = DatabaseURL.parse("postgresql+psycopg://u:p@h1:5432,h2:5433/db?sslmode=require")
    moved = url.with_hosts_in_query()
    assert moved.render(hide_password=False) == (
        "postgresql+psycopg://u:p@/db?sslmode=require&host=h1:5432&host=h2:5433"
    )
    assert DatabaseURL.parse("postgresql://h1,h2").with_hosts_in_query().render() == "postgresql:///?host=h1&host=h2"
    one = DatabaseURL.parse("postgresql://u@h/db")
    assert one.with_hosts_in_query() is one


def test_prepare_threshold_args() -> None:
    assert prepare_threshold_args("psycopg", {}, 5) == {}  # psycopg's default: nothing to say
    assert prepare_threshold_args("psycopg", {}, "off") == {"prepare_threshold": None}
    assert prepare_threshold_args("psycopg", {}, 5, pgbouncer=True) == {"prepare_threshold": None}
    assert prepare_threshold_args("psycopg", {"prepare_threshold": False, "x": 1}, 5) == {
        "prepare_threshold": None,
        "x": 1,
    }
    assert prepare_threshold_args("asyncpg", {"x": 1}, 5) == {"x": 1}
    with pytest.raises(ConfigurationError, match="pgbouncer = true configures the psycopg driver"):
        prepare_threshold_args("asyncpg", {}, 5, pgbouncer=True)
    with pytest.raises(ConfigurationError, match="prepare_threshold is a setting of the psycopg driver"):
        prepare_threshold_args("pymysql", {}, None)


def test_error_classes() -> None:
    class MyTimeout(PoolTimeoutError, TimeoutError):
        pass

    class MyNone(NoResultFound):
        pass

    assert error_classes(MyTimeout, MyNone) == {PoolTimeoutError: MyTimeout, NoResultFound: MyNone}
    assert MultipleResultsFound not in error_classes(MyTimeout)
    with pytest.raises(TypeError, match="derives from none of"):
        error_classes(ConfigurationError)
