"""Building the SQLAlchemy engine from validated options.

Turns the product's options into ``create_engine`` arguments (pool arguments only
for pools that take them), adds driver deadlines, and installs the listeners that
make SQLite's pysqlite driver transactional the way SQLAlchemy documents it
(otherwise ``SAVEPOINT`` and ``BEGIN`` do not behave).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from structum_lab.plugins.database import ConfigurationError, DatabaseURL
from structum_lab.plugins.database.kit import PSYCOPG_PREPARE_THRESHOLD, normalize_prepare_threshold

from ._dialects import (
    driver_install_hint,
    is_memory_sqlite,
    mysql_statement_timeout_sql,
    timeout_connect_args,
    to_sqlalchemy_url,
)

__all__ = ["apply_prepare_threshold", "engine_arguments", "install_listeners", "sqlalchemy_url"]


def sqlalchemy_url(url: DatabaseURL, *, is_async: bool) -> sa.URL:
    text = to_sqlalchemy_url(url, is_async=is_async)
    try:
        return sa.make_url(text)
    except sa_exc.ArgumentError as exc:
        raise ConfigurationError(f"SQLAlchemy cannot parse {url}: {exc}") from None


def split_libpq_options(sa_url: sa.URL) -> tuple[sa.URL, dict[str, str]]:
    """Turn a libpq ``?options=-c key=value`` URL parameter into asyncpg ``server_settings``.

    psycopg passes ``options`` to the server; asyncpg rejects it. Translating it keeps
    one URL valid for both drivers, so switching driver is a config change only.
    """
    options = sa_url.query.get("options")
    if sa_url.get_driver_name() != "asyncpg" or not isinstance(options, str):
        return sa_url, {}
    settings: dict[str, str] = {}
    for part in re.findall(r"-c\s*([^\s=]+)=(\S+)", options):
        settings[part[0]] = part[1]
    return sa_url.difference_update_query(["options"]), settings


def engine_arguments(
    url: DatabaseURL,
    sa_url: sa.URL,
    *,
    pool_size: int,
    max_overflow: int,
    pool_timeout: float,
    pool_recycle: float | None,
    pool_pre_ping: bool,
    pool_use_lifo: bool,
    echo: bool,
    connect_args: Mapping[str, Any] | None,
    connect_timeout: float | None,
    statement_timeout: float | None,
    isolation_level: str | None,
    engine_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    dialect, driver = sa_url.get_backend_name(), sa_url.get_driver_name()
    args: dict[str, Any] = {"echo": echo}
    driver_args = dict(
        timeout_connect_args(dialect, driver, connect_timeout=connect_timeout, statement_timeout=statement_timeout)
    )
    if is_memory_sqlite(url):
        # One in-memory database must be one connection, shared; a pool of several
        # would give each its own empty database.
        args["poolclass"] = StaticPool
        if driver == "pysqlite":
            driver_args["check_same_thread"] = False
    else:
        args.update(
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=-1 if pool_recycle is None else pool_recycle,
            pool_pre_ping=pool_pre_ping,
            pool_use_lifo=pool_use_lifo,
        )
    user_args = dict(connect_args or {})
    if isinstance(user_args.get("server_settings"), Mapping) and "server_settings" in driver_args:
        user_args["server_settings"] = {**driver_args["server_settings"], **user_args["server_settings"]}
    driver_args.update(user_args)
    if driver_args:
        args["connect_args"] = driver_args
    if isolation_level:
        args["isolation_level"] = isolation_level
    args.update(engine_options or {})
    return args


def apply_prepare_threshold(args: dict[str, Any], driver: str, prepare_threshold: object) -> None:
    """psycopg's ``prepare_threshold``: none/false turns server-side prepared statements off
    (PgBouncer in transaction mode). A value in ``connect_args`` wins, and is read the same
    way, so ``connect_args = { prepare_threshold = false }`` in TOML works too."""
    driver_args = dict(args.get("connect_args") or {})
    given = driver_args.get("prepare_threshold", prepare_threshold)
    if driver == "psycopg":
        value = normalize_prepare_threshold(given)
        if value != PSYCOPG_PREPARE_THRESHOLD or "prepare_threshold" in driver_args:
            args["connect_args"] = {**driver_args, "prepare_threshold": value}
    elif prepare_threshold != PSYCOPG_PREPARE_THRESHOLD:
        raise ConfigurationError(
            f"prepare_threshold is a setting of the psycopg driver, and this URL uses {driver}; "
            "use a postgresql+psycopg:// URL, or remove the option"
        )


def install_listeners(engine: sa.Engine, *, statement_timeout: float | None) -> None:
    dialect = engine.dialect.name
    if dialect == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite's own transaction handling skips BEGIN before SELECT and
            # commits around DDL; we take it over so BEGIN/SAVEPOINT mean what they say.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    elif dialect in ("mysql", "mariadb") and statement_timeout:

        @event.listens_for(engine, "connect")
        def _mysql_statement_timeout(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT VERSION()")
                version = str(cursor.fetchone()[0])
                cursor.execute(mysql_statement_timeout_sql(version, statement_timeout))
            finally:
                cursor.close()


def create_engine_checked(sa_url: sa.URL, args: Mapping[str, Any], *, is_async: bool) -> Any:
    """``create_engine`` with its failures turned into ConfigurationErrors that say what to install."""
    try:
        if is_async:
            from sqlalchemy.ext.asyncio import create_async_engine

            return create_async_engine(sa_url, **args)
        engine = sa.create_engine(sa_url, **args)
    except sa_exc.NoSuchModuleError:
        raise ConfigurationError(
            f"SQLAlchemy has no dialect or driver named {sa_url.drivername!r}; "
            "check the URL scheme (e.g. postgresql+psycopg://, mysql+pymysql://, sqlite://)"
        ) from None
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the database driver for {sa_url.drivername}:// is not installed ({exc.name}); "
            f"{driver_install_hint(sa_url.get_driver_name())}"
        ) from None
    except (TypeError, ValueError, sa_exc.ArgumentError) as exc:  # ValueError: a URL query value of the wrong type
        raise ConfigurationError(
            f"invalid engine options or URL query parameters for {sa_url.drivername}://: {exc}"
        ) from None
    except sa_exc.InvalidRequestError as exc:  # e.g. an async engine on a sync-only driver
        raise ConfigurationError(f"{sa_url.drivername}:// cannot be used here: {exc}") from None
    if engine.dialect.is_async:
        # It would fail at the first connection with SQLAlchemy's MissingGreenlet.
        raise ConfigurationError(
            f"{sa_url.drivername}:// is an asyncio driver: open it with AsyncSQLAlchemyDatabase or "
            "connect_async(), or name a sync driver in the URL (e.g. postgresql+psycopg://)"
        )
    return engine
