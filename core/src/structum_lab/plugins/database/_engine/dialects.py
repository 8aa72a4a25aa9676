"""What core knows about PEP 249 drivers, by name, for any backend built on them.

The SQL lexical rules and parameter style (to pick a :class:`~.params.Translator`), the
connect arguments that bound connecting and statements, and what to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .params import ASYNCPG, GENERIC, MYSQL, POSTGRESQL, PSYCOPG, PYMYSQL, SQLITE, SQLITE3, ParamTarget, SQLDialect

__all__ = ["driver_install_hint", "lexer_for", "mysql_statement_timeout_sql", "target_for", "timeout_connect_args"]

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


def mysql_statement_timeout_sql(server_version: str, statement_timeout: float) -> str:
    """MariaDB's ``max_statement_time`` is in seconds, MySQL's ``max_execution_time`` in ms."""
    if "mariadb" in server_version.lower():
        return f"SET SESSION max_statement_time={statement_timeout:g}"
    return f"SET SESSION max_execution_time={int(statement_timeout * 1000)}"
