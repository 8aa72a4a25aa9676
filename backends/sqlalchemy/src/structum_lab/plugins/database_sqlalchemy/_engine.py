"""Building the SQLAlchemy engine from validated options.

Turns the product's options into ``create_engine`` arguments (pool arguments only
for pools that take them), adds driver deadlines, and installs the listeners that
make SQLite's pysqlite driver transactional the way SQLAlchemy documents it
(otherwise ``SAVEPOINT`` and ``BEGIN`` do not behave). :func:`build_engine` returns
the engine with what the driver needs to know about it (:class:`EngineParts`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import event
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
)
from structum_lab.plugins.database.kit import (
    DRIVER_LOGGERS,
    PSYCOPG_PREPARE_THRESHOLD,
    PoolLimits,
    Translator,
    driver_install_hint,
    lexer_for,
    mysql_statement_timeout_sql,
    normalize_isolation,
    ping_budget,
    prepare_threshold_for,
    resolve_statement_deadline,
    target_for,
    timeout_connect_args,
)

from ._deadlines import deadline_connect_args, install_deadline
from ._dialects import (
    is_memory_sqlite,
    to_sqlalchemy_url,
)
from ._liveness import install_liveness, probes_socket

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "ERROR_CLASSES",
    "EngineParts",
    "OpenConnections",
    "SQLAlchemyMultipleResultsFound",
    "SQLAlchemyNoResultFound",
    "SQLAlchemyPoolTimeoutError",
    "build_engine",
    "describe_connection",
    "isolation_option",
    "sync_connection",
]

_SA_ISOLATION: Final[dict[IsolationLevel, str]] = {
    "read_uncommitted": "READ UNCOMMITTED",
    "read_committed": "READ COMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


class SQLAlchemyPoolTimeoutError(PoolTimeoutError, sa_exc.TimeoutError):
    """Pool exhausted: catchable as core ``PoolTimeoutError`` and as ``sqlalchemy.exc.TimeoutError``."""


class SQLAlchemyNoResultFound(NoResultFound, sa_exc.NoResultFound):
    """``one()`` found no row: catchable as core's and as SQLAlchemy's ``NoResultFound``."""


class SQLAlchemyMultipleResultsFound(MultipleResultsFound, sa_exc.MultipleResultsFound):
    """``one()`` found several rows: catchable as core's and as SQLAlchemy's ``MultipleResultsFound``."""


#: The engine's own errors, raised as these subclasses on this backend.
ERROR_CLASSES: Final[Mapping[type[DatabaseError], type[DatabaseError]]] = {
    PoolTimeoutError: SQLAlchemyPoolTimeoutError,
    NoResultFound: SQLAlchemyNoResultFound,
    MultipleResultsFound: SQLAlchemyMultipleResultsFound,
}


class OpenConnections:
    """How many connections the engine's pool holds open, from its connect/close events, and
    the engine's observers told of each (``listener``: the engine's ``connection_event``)."""

    __slots__ = ("_lock", "_started", "count", "listener")

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._started = threading.local()  # SQLAlchemy connects on the thread that checks out
        self.listener: Callable[[Any, float], None] | None = None
        event.listen(engine, "do_connect", self._connecting)
        event.listen(engine, "connect", self._opened)
        event.listen(engine, "close", self._gone)
        event.listen(engine, "detach", self._gone)  # still open, but no longer the pool's

    def _connecting(self, *_: object) -> None:
        self._started.at = time.perf_counter()

    def _opened(self, *_: object) -> None:
        with self._lock:
            self.count += 1
        listener = self.listener
        if listener is not None:
            started = getattr(self._started, "at", None)
            listener("created", 0.0 if started is None else time.perf_counter() - started)

    def _gone(self, *_: object) -> None:
        with self._lock:
            self.count -= 1
        listener = self.listener
        if listener is not None:
            listener("closed", 0.0)


@dataclass(frozen=True, slots=True, eq=False)
class EngineParts:
    """An engine built from the options, and what the driver needs to know about it."""

    engine: Any  # sa.Engine, or AsyncEngine for the asyncio class
    sa_engine: sa.Engine  # the sync Engine (under an AsyncEngine too)
    dialect: str
    translator: Translator
    limits: PoolLimits
    #: Checkouts are checked by a ping where needed (SQLAlchemy's pre-ping, or ``_liveness``).
    pings_at_checkout: bool
    ping_budget: float
    connect_timeout: float
    open: OpenConnections
    loggers: tuple[str | logging.Logger, ...]
    #: What the engine passes to the DB-API driver's connect() besides the URL.
    connect_args: Mapping[str, Any]
    #: postgresql+psycopg: autocommit connections, BEGIN sent with the first statement (``_begin_async``).
    deferred_begin: bool = False
    #: The ``isolation_level`` option (with ``deferred_begin`` it goes into the BEGIN).
    isolation: IsolationLevel | None = None


def isolation_option(dialect: str, level: IsolationLevel) -> str:
    """SQLAlchemy's spelling of an isolation level on ``dialect``."""
    if dialect == "sqlite":
        # SQLite is always serializable; a stronger level than asked for is allowed by the standard.
        return "READ UNCOMMITTED" if level == "read_uncommitted" else "SERIALIZABLE"
    if dialect == "postgresql" and level == "read_uncommitted":
        # PostgreSQL runs READ UNCOMMITTED as READ COMMITTED, and SQLAlchemy's asyncpg dialect
        # refuses the name: ask for what the server gives.
        return "READ COMMITTED"
    return _SA_ISOLATION[level]


def build_engine(url: DatabaseURL, o: Mapping[str, Any], *, is_async: bool) -> EngineParts:
    """The engine for the checked options ``o``, with its listeners and deadlines."""
    sa_url = sqlalchemy_url(url, is_async=is_async)
    try:
        driver = sa_url.get_driver_name()  # loads the dialect
    except sa_exc.NoSuchModuleError:
        raise _no_such_dialect(sa_url) from None
    sa_url, server_settings = split_libpq_options(sa_url)
    deferred = defers_begin(sa_url, o)
    connect_args = o["connect_args"]
    if server_settings:
        connect_args = {
            **(connect_args or {}),
            "server_settings": {**server_settings, **(connect_args or {}).get("server_settings", {})},
        }
    args = engine_arguments(url, sa_url, o, connect_args, deferred_begin=deferred)
    apply_prepare_threshold(args, driver, o["prepare_threshold"], pgbouncer=bool(o.get("pgbouncer")))
    deadline = resolve_statement_deadline(o["statement_timeout"], o["statement_deadline"])
    bounded = deadline_connect_args(driver, deadline, is_async=is_async)
    if bounded:  # the user's connect_args win
        args["connect_args"] = {**bounded, **args.get("connect_args", {})}
    engine = create_engine_checked(sa_url, args, is_async=is_async)
    sync_engine: sa.Engine = engine.sync_engine if is_async else engine
    install_listeners(sync_engine, statement_timeout=o["statement_timeout"])
    dialect = sync_engine.dialect
    probed = probes_socket(dialect.name, dialect.driver)
    if probed or deferred:
        install_liveness(sync_engine, pre_ping=probed and o["pool_pre_ping"], autocommit=deferred)
    if "creator" not in (o["engine_options"] or {}):  # the user's own creator opens connections as it likes
        install_deadline(sync_engine, deadline)
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
        translator=Translator(lexer_for(dialect.name), target_for(dialect.driver, dialect.paramstyle)),
        limits=limits,
        pings_at_checkout=bool(o["pool_pre_ping"]) and dialect.name != "sqlite",
        ping_budget=ping_budget(timeout, o["connect_timeout"], deadline),
        connect_timeout=o["connect_timeout"] or 0.0,
        open=OpenConnections(sync_engine),
        loggers=tuple(_engine_loggers(sync_engine)),
        connect_args=dict(args.get("connect_args") or {}),
        deferred_begin=deferred,
        isolation=normalize_isolation(o["isolation_level"]),
    )


def defers_begin(sa_url: sa.URL, o: Mapping[str, Any]) -> bool:
    """postgresql+psycopg sends BEGIN with the first statement, unless ``engine_options`` set
    an isolation level of their own (SQLAlchemy's, which needs psycopg's own BEGIN)."""
    own = o["engine_options"] or {}
    return (
        sa_url.get_backend_name() == "postgresql"
        and sa_url.get_driver_name() == "psycopg"
        and "isolation_level" not in own
        and "execution_options" not in own
    )


def _engine_loggers(engine: sa.Engine) -> list[logging.Logger | str]:
    """The loggers an engine's records go to (its own, its pool's, its driver's), to scrub."""
    found: list[logging.Logger | str] = []
    for holder in (engine, engine.pool):
        logger = getattr(holder, "logger", None)
        logger = getattr(logger, "logger", logger)  # echo/logging_name wrap it in an InstanceLogger
        if isinstance(logger, logging.Logger):
            found.append(logger)
    found += DRIVER_LOGGERS.get(engine.dialect.driver, ())
    return found


def describe_connection(sa_conn: sa.Connection) -> str:
    """How a leak warning names a connection: its server pid when the driver tells (psycopg)."""
    if sa_conn.closed or sa_conn.invalidated:
        return "closed"
    try:
        driver = sa_conn.connection.driver_connection
    except sa_exc.SQLAlchemyError:
        return "closed"
    pid = getattr(getattr(driver, "info", None), "backend_pid", None)
    return f"server pid {pid}" if pid else type(driver).__name__


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
    o: Mapping[str, Any],
    connect_args: Mapping[str, Any] | None,
    *,
    deferred_begin: bool = False,
) -> dict[str, Any]:
    """``create_engine`` arguments from the checked options ``o``."""
    dialect, driver = sa_url.get_backend_name(), sa_url.get_driver_name()
    args: dict[str, Any] = {"echo": o["echo"]}
    driver_args = dict(
        timeout_connect_args(
            dialect, driver, connect_timeout=o["connect_timeout"], statement_timeout=o["statement_timeout"]
        )
    )
    if is_memory_sqlite(url):
        # One in-memory database must be one connection, shared; a pool of several
        # would give each its own empty database.
        args["poolclass"] = StaticPool
        if driver == "pysqlite":
            driver_args["check_same_thread"] = False
    else:
        args.update(
            pool_size=o["pool_size"],
            max_overflow=o["max_overflow"],
            pool_timeout=o["pool_timeout"],
            pool_recycle=-1 if o["pool_recycle"] is None else o["pool_recycle"],
            # Checked here where the socket is reachable (_liveness); SQLite needs no ping.
            pool_pre_ping=o["pool_pre_ping"] and dialect != "sqlite" and not probes_socket(dialect, driver),
            pool_use_lifo=o["pool_use_lifo"],
        )
    user_args = dict(connect_args or {})
    if isinstance(user_args.get("server_settings"), Mapping) and "server_settings" in driver_args:
        user_args["server_settings"] = {**driver_args["server_settings"], **user_args["server_settings"]}
    driver_args.update(user_args)
    if driver_args:
        args["connect_args"] = driver_args
    level = normalize_isolation(o["isolation_level"])
    if level and not deferred_begin:  # else it goes into each BEGIN
        args["isolation_level"] = isolation_option(dialect, level)
    args.update(o["engine_options"] or {})
    return args


def apply_prepare_threshold(
    args: dict[str, Any], driver: str, prepare_threshold: object, *, pgbouncer: bool = False
) -> None:
    """psycopg's ``prepare_threshold``: none/false turns server-side prepared statements off
    (PgBouncer in transaction mode), and so does ``pgbouncer = true``. A value in
    ``connect_args`` wins, and is read the same way, so ``connect_args = { prepare_threshold =
    false }`` in TOML works too."""
    driver_args = dict(args.get("connect_args") or {})
    given = driver_args.get("prepare_threshold", prepare_threshold)
    if driver == "psycopg":
        value = prepare_threshold_for(given, pgbouncer=pgbouncer)
        if value != PSYCOPG_PREPARE_THRESHOLD or "prepare_threshold" in driver_args:
            args["connect_args"] = {**driver_args, "prepare_threshold": value}
    elif pgbouncer:
        # asyncpg prepares every statement under names of its own; what it needs behind PgBouncer
        # (unique names, no statement cache) is not set up here.
        raise ConfigurationError(
            f"pgbouncer = true configures the psycopg driver, and this URL uses {driver}; "
            "use a postgresql+psycopg:// URL"
        )
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
        raise _no_such_dialect(sa_url) from None
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
