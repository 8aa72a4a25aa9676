"""What core knows about PEP 249 drivers, by name, for any backend built on them.

Drivers are named as SQLAlchemy names them (``psycopg``, ``asyncpg``, ``pymysql``,
``aiosqlite``, ...): the SQL lexical rules and parameter style (to pick a
:class:`~.params.Translator`), the default driver of a dialect and which drivers are
asyncio ones, the connect arguments that bound connecting, statements and each round
trip, what to install, and a few things to do on a driver's connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypedDict

from .._contract.errors import ConfigurationError
from .._contract.protocols import IsolationLevel
from .._contract.url import DatabaseURL
from .deadline import resolve_statement_deadline
from .isolation import ISOLATION_SQL
from .params import ASYNCPG, GENERIC, MYSQL, POSTGRESQL, PSYCOPG, PYMYSQL, SQLITE, SQLITE3, ParamTarget, SQLDialect
from .prepare import PSYCOPG_PREPARE_THRESHOLD, prepare_threshold_args

__all__ = [
    "ASYNC_DRIVERS",
    "SQLFeatures",
    "deadline_connect_args",
    "default_driver",
    "describe_driver_connection",
    "dialect_features",
    "driver_connect_args",
    "driver_install_hint",
    "isolation_name",
    "is_memory_sqlite",
    "lexer_for",
    "merge_connect_args",
    "mysql_statement_timeout_sql",
    "resolve_driver",
    "server_settings_from_options",
    "set_mysql_statement_timeout",
    "target_for",
    "timeout_connect_args",
]

#: The driver a dialect gets when the URL names none: psycopg 3 (psycopg2 is not a
#: dependency), PyMySQL; the asyncio ones below.
_SYNC_DRIVER: Final = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
_ASYNC_DRIVER: Final = {
    "postgresql": "psycopg",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
    "sqlite": "aiosqlite",
}
#: The drivers that work under asyncio.
ASYNC_DRIVERS: Final = frozenset({"psycopg", "psycopg_async", "asyncpg", "aiomysql", "asyncmy", "aiosqlite", "aioodbc"})

_PACKAGES: Final = {
    "psycopg": "psycopg[binary]",
    "psycopg_async": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "pymysql": "pymysql",
    "mysqldb": "mysqlclient",
    "aiomysql": "aiomysql",
    "asyncmy": "asyncmy",
    "aiosqlite": "aiosqlite",
    "mariadbconnector": "mariadb",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}


def lexer_for(dialect_name: str) -> SQLDialect:
    """The lexical rules of ``postgresql``, ``mysql``/``mariadb``, ``sqlite``; generic SQL otherwise."""
    if dialect_name == "postgresql":
        return POSTGRESQL
    if dialect_name in ("mysql", "mariadb"):
        return MYSQL
    if dialect_name == "sqlite":
        return SQLITE
    return GENERIC


def target_for(driver: str, paramstyle: str) -> ParamTarget:
    """How a DB-API driver wants parameters, from its name and its PEP 249 ``paramstyle``."""
    if driver in ("pysqlite", "aiosqlite", "sqlite3"):
        return SQLITE3
    if paramstyle == "numeric_dollar":
        return ASYNCPG
    if driver.startswith("psycopg"):
        return PSYCOPG
    if paramstyle in ("pyformat", "format"):
        return PYMYSQL
    if paramstyle == "named":
        return ParamTarget("named-driver", "named", "qmark", False)
    return ParamTarget(f"{paramstyle}-driver", None, "qmark", False)


def default_driver(dialect: str, *, is_async: bool) -> str | None:
    """The driver for a URL that names none (``None``: the dialect's own default, if any)."""
    return (_ASYNC_DRIVER if is_async else _SYNC_DRIVER).get(dialect)


def resolve_driver(dialect: str, driver: str | None, *, is_async: bool, opened_by: str) -> str | None:
    """The driver a URL gets: the one it names, else the dialect's default; an asyncio one
    when ``is_async`` (``opened_by``, the class that opens it, is named in the error)."""
    chosen = driver or default_driver(dialect, is_async=is_async)
    if is_async and chosen is None:
        raise ConfigurationError(f"no default async driver for {dialect}://; name one, e.g. {dialect}+<asyncdriver>://")
    if is_async and chosen not in ASYNC_DRIVERS:
        suggestion = default_driver(dialect, is_async=True)
        hint = f" such as {dialect}+{suggestion}://" if suggestion else ""
        raise ConfigurationError(f"{dialect}+{chosen}:// is a synchronous driver; {opened_by} needs an async one{hint}")
    return chosen


def isolation_name(dialect: str, level: IsolationLevel) -> str:
    """The SQL name of the isolation level ``dialect`` runs for ``level``."""
    if dialect == "sqlite":
        # SQLite is always serializable; a stronger level than asked for is allowed by the standard.
        return "READ UNCOMMITTED" if level == "read_uncommitted" else "SERIALIZABLE"
    if dialect == "postgresql" and level == "read_uncommitted":
        # PostgreSQL runs READ UNCOMMITTED as READ COMMITTED (and asyncpg refuses the name).
        return "READ COMMITTED"
    return ISOLATION_SQL[level]


class SQLFeatures(TypedDict):
    """The ``Features`` flags that follow from a dialect's SQL."""

    returning: bool
    transactional_ddl: bool
    autocommit: bool


def dialect_features(dialect: str) -> SQLFeatures:
    """What the SQL of ``dialect`` can do, as ``Features`` flags."""
    return {
        "returning": dialect in ("postgresql", "sqlite", "mariadb", "oracle", "mssql"),
        "transactional_ddl": dialect in ("postgresql", "sqlite", "mssql"),
        "autocommit": dialect == "postgresql",
    }


def is_memory_sqlite(url: DatabaseURL) -> bool:
    """An in-memory SQLite database: each connection would open a new, empty one."""
    if url.dialect != "sqlite":
        return False
    return url.database in (None, "", ":memory:") or url.query_dict().get("mode") == "memory"


def driver_install_hint(driver: str | None) -> str:
    """The ``pip install`` line for a DB-API driver (by SQLAlchemy's driver name)."""
    package = _PACKAGES.get(driver or "")
    return f"pip install {package!r}" if package else "install the DB-API driver named in the URL"


def timeout_connect_args(
    dialect: str, driver: str, *, connect_timeout: float | None, statement_timeout: float | None
) -> Mapping[str, Any]:
    """Driver arguments that put deadlines on connecting and on statements.

    Without them psycopg waits up to 130 s for a silent host and a runaway query
    holds its connection forever.
    """
    args: dict[str, Any] = {}
    if dialect == "postgresql" and driver.startswith("psycopg"):
        if connect_timeout:
            args["connect_timeout"] = max(1, round(connect_timeout))
        if statement_timeout:
            args["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    elif dialect == "postgresql" and driver == "asyncpg":
        if connect_timeout:
            args["timeout"] = connect_timeout
        if statement_timeout:
            args["server_settings"] = {"statement_timeout": str(int(statement_timeout * 1000))}
    elif (
        dialect in ("mysql", "mariadb") and driver in ("pymysql", "aiomysql", "asyncmy", "mysqldb") and connect_timeout
    ):
        args["connect_timeout"] = max(1, round(connect_timeout))
        # statement_timeout is set per connection by the engine (MariaDB and MySQL
        # spell it differently and the URL cannot tell which server it is).
    return args


def merge_connect_args(defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The user's connect arguments over ``defaults``; asyncpg's ``server_settings`` are
    merged key by key (a setting of the user's does not drop the statement timeout)."""
    merged = {**defaults, **(given or {})}
    if isinstance(defaults.get("server_settings"), Mapping) and isinstance(merged["server_settings"], Mapping):
        merged["server_settings"] = {**defaults["server_settings"], **merged["server_settings"]}
    return merged


def server_settings_from_options(options: str) -> dict[str, str]:
    """libpq's ``options=-c key=value -c ...`` as asyncpg's ``server_settings``.

    psycopg passes ``options`` to the server; asyncpg rejects it. Translating it keeps one
    URL valid for both drivers, so switching driver is a config change only.
    """
    return dict(re.findall(r"-c\s*([^\s=]+)=(\S+)", options))


def deadline_connect_args(driver: str, deadline: float | None) -> dict[str, Any]:
    """Arguments that put the client-side ``deadline`` (``_deadline.py``) on every round trip,
    for the drivers that take one: asyncpg's ``command_timeout`` (its own client-side timer;
    a connection whose command timed out must then be discarded, asyncpg would keep it) and
    PyMySQL's ``read_timeout`` (a socket timeout, after which PyMySQL closes the connection).
    psycopg's is a connection subclass (``kit_psycopg``); SQLite is local, and aiomysql has
    no read timeout."""
    if deadline is None:
        return {}
    if driver == "asyncpg":
        return {"command_timeout": deadline}
    if driver == "pymysql":
        return {"read_timeout": deadline}
    return {}


def driver_connect_args(
    dialect: str,
    driver: str,
    options: Mapping[str, Any],
    given: Mapping[str, Any] | None,
    *,
    url_options: object = None,
) -> dict[str, Any]:
    """The DB-API ``connect()`` arguments for the common ``options`` (``connect_timeout``,
    ``statement_timeout``, ``statement_deadline``, ``prepare_threshold``, ``pgbouncer``) under
    the user's own (``given``, which win). ``url_options``: libpq's ``?options=-c key=value``
    from the URL, which asyncpg rejects, as its ``server_settings`` (one URL stays valid for
    both drivers, so switching driver is a config change only)."""
    defaults = dict(
        timeout_connect_args(
            dialect, driver, connect_timeout=options["connect_timeout"], statement_timeout=options["statement_timeout"]
        )
    )
    if driver == "asyncpg" and isinstance(url_options, str):
        defaults = merge_connect_args(defaults, {"server_settings": server_settings_from_options(url_options)})
    deadline = resolve_statement_deadline(options["statement_timeout"], options.get("statement_deadline"))
    defaults.update(deadline_connect_args(driver, deadline))
    threshold = options.get("prepare_threshold", PSYCOPG_PREPARE_THRESHOLD)
    pgbouncer = bool(options.get("pgbouncer"))
    return prepare_threshold_args(driver, merge_connect_args(defaults, given), threshold, pgbouncer=pgbouncer)


def mysql_statement_timeout_sql(server_version: str, statement_timeout: float) -> str:
    """MariaDB's ``max_statement_time`` is in seconds, MySQL's ``max_execution_time`` in ms."""
    if "mariadb" in server_version.lower():
        return f"SET SESSION max_statement_time={statement_timeout:g}"
    return f"SET SESSION max_execution_time={int(statement_timeout * 1000)}"


def set_mysql_statement_timeout(dbapi_connection: Any, statement_timeout: float) -> None:
    """Give a new MySQL or MariaDB connection (a sync DB-API one) its ``statement_timeout``:
    the URL cannot tell which server it is, so this asks it."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT VERSION()")
        version = str(cursor.fetchone()[0])
        cursor.execute(mysql_statement_timeout_sql(version, statement_timeout))
    finally:
        cursor.close()


def describe_driver_connection(driver_connection: Any) -> str:
    """How a leak warning names a driver's connection: its server pid when the driver tells
    (psycopg), else its class."""
    pid = getattr(getattr(driver_connection, "info", None), "backend_pid", None)
    return f"server pid {pid}" if pid else type(driver_connection).__name__
