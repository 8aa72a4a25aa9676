"""The SQLAlchemy engine for validated options, with what the driver needs to know about
it (:class:`EngineParts`). Defaults and connect arguments per DB-API driver are core's
(``kit.resolve_driver``, ``kit.timeout_connect_args``, ...); the listeners, ``_events``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import QueuePool, StaticPool

from structum_lab.plugins.database import (
    ConfigurationError,
    DatabaseError,
    DatabaseURL,
    IsolationLevel,
    MultipleResultsFound,
    NoResultFound,
    PoolTimeoutError,
    kit,
)
from structum_lab.plugins.database.kit import OpenConnections, PoolLimits, Translator

from ._events import bounded_connect, count_connections, install_listeners

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "ERROR_CLASSES",
    "EngineParts",
    "SQLAlchemyMultipleResultsFound",
    "SQLAlchemyNoResultFound",
    "SQLAlchemyPoolTimeoutError",
    "build_engine",
    "sqlalchemy_url",
    "sync_connection",
]


class SQLAlchemyPoolTimeoutError(PoolTimeoutError, sa_exc.TimeoutError):
    """Pool exhausted: catchable as core ``PoolTimeoutError`` and as ``sqlalchemy.exc.TimeoutError``."""


class SQLAlchemyNoResultFound(NoResultFound, sa_exc.NoResultFound):
    """``one()`` found no row: catchable as core's and as SQLAlchemy's ``NoResultFound``."""


class SQLAlchemyMultipleResultsFound(MultipleResultsFound, sa_exc.MultipleResultsFound):
    """``one()`` found several rows: catchable as core's and as SQLAlchemy's ``MultipleResultsFound``."""


#: The engine's own errors, raised as these subclasses on this backend.
ERROR_CLASSES: Final[Mapping[type[DatabaseError], type[DatabaseError]]] = kit.error_classes(
    SQLAlchemyPoolTimeoutError, SQLAlchemyNoResultFound, SQLAlchemyMultipleResultsFound
)


@dataclass(frozen=True, slots=True, eq=False)
class EngineParts:
    """An engine built from the options, and what the driver needs to know about it."""

    engine: Any  # sa.Engine, or AsyncEngine (whose sync Engine is sa_engine)
    sa_engine: sa.Engine
    dialect: str
    translator: Translator
    limits: PoolLimits
    ping_budget: float
    connect_timeout: float
    open: OpenConnections
    loggers: tuple[str | logging.Logger, ...]
    connect_args: Mapping[str, Any]  # for the DB-API driver's connect(), besides the URL
    #: postgresql+psycopg: autocommit connections, BEGIN sent with the first statement (``_psycopg_async``).
    deferred_begin: bool = False
    #: The ``isolation_level`` option (with ``deferred_begin`` it goes into the BEGIN).
    isolation: IsolationLevel | None = None


def build_engine(url: DatabaseURL, o: Mapping[str, Any], *, is_async: bool) -> EngineParts:
    """The engine for the checked options ``o``, with its listeners and deadlines."""
    sa_url = sqlalchemy_url(url, is_async=is_async)
    try:
        driver = sa_url.get_driver_name()  # loads the dialect
    except sa_exc.NoSuchModuleError:
        raise _no_such_dialect(sa_url) from None
    dialect_name = sa_url.get_backend_name()
    # postgresql+psycopg sends BEGIN with the first statement, unless engine_options set an
    # isolation level of SQLAlchemy's (which needs psycopg's own BEGIN).
    own = (o["engine_options"] or {}).keys()
    deferred = (dialect_name, driver) == ("postgresql", "psycopg") and not own & {
        "isolation_level",
        "execution_options",
    }
    args = engine_arguments(url, sa_url, o, deferred_begin=deferred)
    given = args.get("connect_args", o["connect_args"])  # engine_options may give their own
    if driver == "asyncpg" and "options" in sa_url.query:  # asyncpg rejects it: as server_settings
        url_options, sa_url = sa_url.query["options"], sa_url.difference_update_query(["options"])
    else:
        url_options = None
    connect_args = kit.driver_connect_args(dialect_name, driver, o, given, url_options=url_options)
    deadline = kit.resolve_statement_deadline(o["statement_timeout"], o["statement_deadline"])
    if is_async and driver.startswith("psycopg") and deadline is not None:
        # SQLAlchemy's psycopg dialect takes the function that opens a driver connection.
        connect_args = {"async_creator_fn": bounded_connect(deadline, is_async=True), **connect_args}
    args["connect_args"] = connect_args
    engine = create_engine_checked(sa_url, args, is_async=is_async)
    sync_engine: sa.Engine = engine.sync_engine if is_async else engine
    open_connections = count_connections(sync_engine)
    dialect = sync_engine.dialect
    install_listeners(
        sync_engine,
        statement_timeout=o["statement_timeout"],
        # The user's own creator opens connections as it likes.
        deadline=None if "creator" in (o["engine_options"] or {}) else deadline,
        pre_ping=o["pool_pre_ping"] and dialect.name != "sqlite",  # a local file needs none
        autocommit=deferred,
    )
    pool = sync_engine.pool
    timeout, overflow = o["pool_timeout"], o["max_overflow"]
    if isinstance(pool, QueuePool):
        limits = PoolLimits(pool.size(), pool.size() + overflow, timeout, pool.size(), overflow)
    else:  # one shared connection (in-memory SQLite): it is never exhausted
        limits = PoolLimits(1, 2**31, timeout, 1, 0)
    return EngineParts(
        engine=engine,
        sa_engine=sync_engine,
        dialect=dialect.name,
        translator=Translator(kit.lexer_for(dialect.name), kit.target_for(dialect.driver, dialect.paramstyle)),
        limits=limits,
        ping_budget=kit.ping_budget(timeout, o["connect_timeout"], deadline),
        connect_timeout=o["connect_timeout"] or 0.0,
        open=open_connections,
        loggers=tuple(_engine_loggers(sync_engine)),
        connect_args=args["connect_args"],
        deferred_begin=deferred,
        isolation=kit.normalize_isolation(o["isolation_level"]),
    )


def _engine_loggers(engine: sa.Engine) -> list[logging.Logger | str]:
    """The loggers an engine's records go to (its own, its pool's, its driver's), to scrub."""
    found: list[logging.Logger | str] = []
    for holder in (engine, engine.pool):
        logger = getattr(holder, "logger", None)
        logger = getattr(logger, "logger", logger)  # echo/logging_name wrap it in an InstanceLogger
        if isinstance(logger, logging.Logger):
            found.append(logger)
    found += kit.DRIVER_LOGGERS.get(engine.dialect.driver, ())
    return found


def sync_connection(sa_conn: sa.Connection | AsyncConnection) -> sa.Connection:
    """The sync ``Connection`` (under an ``AsyncConnection`` too)."""
    if isinstance(sa_conn, sa.Connection):
        return sa_conn
    sync = sa_conn.sync_connection
    if sync is None:
        raise sa_exc.ResourceClosedError("the connection is not started or already closed")
    return sync


def _no_such_dialect(sa_url: sa.URL) -> ConfigurationError:
    return ConfigurationError(
        f"SQLAlchemy has no dialect or driver named {sa_url.drivername!r}; "
        "check the URL scheme (e.g. postgresql+psycopg://, mysql+pymysql://, sqlite://)"
    )


def sqlalchemy_url(url: DatabaseURL, *, is_async: bool) -> sa.URL:
    """The connectable SQLAlchemy URL: ``postgres://`` renamed, core's default driver added,
    and libpq's multi-host form as SQLAlchemy writes it (``?host=h1:5432&host=h2:5433``)."""
    if url.is_conninfo:
        raise ConfigurationError(
            "the SQLAlchemy backend needs a URL (postgresql://user@host/db), not a libpq key=value string"
        )
    dialect = "postgresql" if url.dialect == "postgres" else url.dialect
    driver = kit.resolve_driver(dialect, url.driver, is_async=is_async, opened_by="AsyncSQLAlchemyDatabase")
    scheme = f"{dialect}+{driver}" if driver else dialect
    connectable = url.with_scheme(scheme) if scheme != url.scheme else url
    try:
        return sa.make_url(connectable.with_hosts_in_query().render(hide_password=False))
    except sa_exc.ArgumentError as exc:
        raise ConfigurationError(f"SQLAlchemy cannot parse {url}: {exc}") from None


def engine_arguments(url: DatabaseURL, sa_url: sa.URL, o: Mapping[str, Any], *, deferred_begin: bool) -> dict[str, Any]:
    """``create_engine`` arguments from the checked options ``o`` (connect arguments aside)."""
    dialect, driver = sa_url.get_backend_name(), sa_url.get_driver_name()
    args: dict[str, Any] = {"echo": o["echo"]}
    if kit.is_memory_sqlite(url):
        # One in-memory database must be one connection, shared; a pool of several
        # would give each its own empty database.
        args["poolclass"] = StaticPool
        if driver == "pysqlite":
            args["connect_args"] = {"check_same_thread": False, **(o["connect_args"] or {})}
    else:
        args.update(
            pool_size=o["pool_size"],
            max_overflow=o["max_overflow"],
            pool_timeout=o["pool_timeout"],
            pool_recycle=-1 if o["pool_recycle"] is None else o["pool_recycle"],
            pool_use_lifo=o["pool_use_lifo"],
        )
    level = kit.normalize_isolation(o["isolation_level"])
    if level and not deferred_begin:  # else it goes into each BEGIN
        args["isolation_level"] = kit.isolation_name(dialect, level)
    args.update(o["engine_options"] or {})
    return args


def create_engine_checked(sa_url: sa.URL, args: Mapping[str, Any], *, is_async: bool) -> Any:
    """``create_engine`` with its failures turned into ConfigurationErrors that say what to install."""
    try:
        if is_async:
            from sqlalchemy.ext.asyncio import create_async_engine

            return create_async_engine(sa_url, **args)
        engine = sa.create_engine(sa_url, **args)
    except sa_exc.NoSuchModuleError:
        raise _no_such_dialect(sa_url) from None
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the database driver for {sa_url.drivername}:// is not installed ({exc.name}); "
            f"{kit.driver_install_hint(sa_url.get_driver_name())}"
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
