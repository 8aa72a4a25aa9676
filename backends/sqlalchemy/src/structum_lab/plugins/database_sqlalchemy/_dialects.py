"""Per-dialect knowledge: default drivers, SQL lexical rules, parameter styles, timeouts.

This is the only place that knows how each database spells what core asks for; the
database and connection classes stay dialect-neutral.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from structum_lab.plugins.database import ConfigurationError, DatabaseURL
from structum_lab.plugins.database.kit import (
    ASYNCPG,
    GENERIC,
    MYSQL,
    POSTGRESQL,
    PSYCOPG,
    PYMYSQL,
    SQLITE,
    SQLITE3,
    ParamTarget,
    SQLDialect,
)

__all__ = [
    "driver_install_hint",
    "is_memory_sqlite",
    "lexer_for",
    "mysql_statement_timeout_sql",
    "timeout_connect_args",
    "target_for",
    "to_sqlalchemy_url",
]

_SYNC_DRIVER: Final = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
_ASYNC_DRIVER: Final = {
    "postgresql": "psycopg",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
    "sqlite": "aiosqlite",
}
_ASYNC_DRIVERS: Final = frozenset(
    {"psycopg", "psycopg_async", "asyncpg", "aiomysql", "asyncmy", "aiosqlite", "aioodbc"}
)

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


def to_sqlalchemy_url(url: DatabaseURL, *, is_async: bool) -> str:
    """The connectable SQLAlchemy URL: ``postgres://`` renamed, a default driver added.

    A bare ``postgresql://`` uses psycopg 3 (psycopg2 is not a dependency); async
    engines get an async driver (``sqlite+aiosqlite``, ``mysql+aiomysql``, ...).
    """
    if url.is_conninfo:
        raise ConfigurationError(
            "the SQLAlchemy backend needs a URL (postgresql://user@host/db), not a libpq key=value string"
        )
    dialect = "postgresql" if url.dialect == "postgres" else url.dialect
    driver = url.driver
    if is_async:
        if driver is None:
            driver = _ASYNC_DRIVER.get(dialect)
            if driver is None:
                raise ConfigurationError(
                    f"no default async driver for {dialect}://; name one, e.g. {dialect}+<asyncdriver>://"
                )
        elif driver not in _ASYNC_DRIVERS:
            suggestion = _ASYNC_DRIVER.get(dialect)
            hint = f" such as {dialect}+{suggestion}://" if suggestion else ""
            raise ConfigurationError(
                f"{dialect}+{driver}:// is a synchronous driver; AsyncSQLAlchemyDatabase needs an async one{hint}"
            )
    elif driver is None:
        driver = _SYNC_DRIVER.get(dialect)
    scheme = f"{dialect}+{driver}" if driver else dialect
    return (
        url.with_scheme(scheme).render(hide_password=False) if scheme != url.scheme else url.render(hide_password=False)
    )


def driver_install_hint(driver: str | None) -> str:
    package = _PACKAGES.get(driver or "")
    return f"pip install {package!r}" if package else "install the DB-API driver named in the URL"


def lexer_for(dialect_name: str) -> SQLDialect:
    if dialect_name == "postgresql":
        return POSTGRESQL
    if dialect_name in ("mysql", "mariadb"):
        return MYSQL
    if dialect_name == "sqlite":
        return SQLITE
    return GENERIC


def target_for(driver: str, paramstyle: str) -> ParamTarget:
    """How the DB-API driver under the engine wants parameters."""
    if driver in ("pysqlite", "aiosqlite"):
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


def is_memory_sqlite(url: DatabaseURL) -> bool:
    if url.dialect != "sqlite":
        return False
    query = url.query_dict()
    return url.database in (None, "", ":memory:") or query.get("mode") == "memory"


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


def mysql_statement_timeout_sql(server_version: str, statement_timeout: float) -> str:
    """MariaDB's ``max_statement_time`` is in seconds, MySQL's ``max_execution_time`` in ms."""
    if "mariadb" in server_version.lower():
        return f"SET SESSION max_statement_time={statement_timeout:g}"
    return f"SET SESSION max_execution_time={int(statement_timeout * 1000)}"
