"""The ``logging`` observer: one stdlib log record per database event, with structured fields.

Enabled per database with ``observers = ["logging"]`` (options under
``observer_options.logging``); docs/observability.md lists the fields. Every record
carries its figures as ``extra=`` attributes (``db_name``, ``db_operation``,
``duration_ms``...), so a JSON formatter exports them as fields without parsing text.

Parameter values are never logged unless ``log_parameters=True``; neither is the
server's error message, because servers quote values in it (PostgreSQL's ``DETAIL: Key
(id)=(...)``, MySQL's ``Duplicate entry '...'``): without that option a failure is logged
by its error class and SQLSTATE. The SQL text has its placeholders, never values, and
goes through the same secret masking as the layer's other logs.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from ..._contract.errors import ConfigurationError
from ..._contract.health import HealthStatus
from ..._contract.hookspecs import hookimpl
from ..._contract.url import DatabaseURL, mask_url
from ..._engine.secrets import _LIVE, Secrets
from .otel_summary import db_system_name

if TYPE_CHECKING:
    from ..._contract.events import ConnectionEvent, StatementEvent, TransactionEvent
    from ..._contract.health import HealthCheckResult
    from ..._contract.protocols import PoolInfo

__all__ = ["DEFAULT_LOGGER", "LoggingObserver", "db_system_of", "describe_database"]

#: The logger records go to by default: a child of the layer's own logger, so that
#: ``logging.getLogger("structum_lab.plugins.database")`` settings apply to it too.
DEFAULT_LOGGER: Final = "structum_lab.plugins.database.events"


@lru_cache(maxsize=256)
def db_system_of(url: str) -> str:
    """The database system of a (masked) URL, as OpenTelemetry names it (``postgresql``,
    ``sqlite``, ``mysql``...); the URL's dialect for one it does not name; ``other_sql``
    when the URL cannot be read."""
    try:
        dialect = DatabaseURL.parse(url).dialect
    except Exception:
        return "other_sql"
    return db_system_name(dialect)


_DESCRIBED: weakref.WeakKeyDictionary[object, tuple[str, str]] = weakref.WeakKeyDictionary()


def describe_database(database: object) -> tuple[str, str]:
    """``(name, db_system)`` of a database, computed once per database (its ``url`` property
    renders the masked URL on every read)."""
    try:
        found = _DESCRIBED.get(database)
    except TypeError:  # neither hashable nor weakly referenceable: compute every time
        found = None
    if found is not None:
        return found
    found = (str(getattr(database, "name", "?")), db_system_of(str(getattr(database, "url", ""))))
    with contextlib.suppress(TypeError):
        _DESCRIBED[database] = found
    return found


def _scrub(text: str) -> str:
    """``text`` with the secrets of every live database masked (the same filter as the layer's
    loggers: logger filters do not reach the ``extra`` fields, so the SQL is scrubbed here)."""
    return _scrub_with(_LIVE.secrets() if _LIVE.live else None, text)


@lru_cache(maxsize=1024)
def _scrub_with(secrets: Secrets | None, text: str) -> str:
    # Cached per statement text: an application runs a few hundred distinct statements, and
    # the merged Secrets object is replaced (a new cache key) whenever a database is added.
    return secrets.scrub(text) if secrets else mask_url(text)


def _level(option: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f"observer_options.logging.{option} must be a level name or number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        number = logging.getLevelName(value.strip().upper())
        if isinstance(number, int):
            return number
    raise ConfigurationError(
        f"observer_options.logging.{option}: unknown logging level {value!r}; "
        "use DEBUG, INFO, WARNING, ERROR, CRITICAL or a number"
    )


class LoggingObserver:
    """Logs statements, transactions and pool events through the stdlib ``logging``.

    - ``logger``: the logger's name (default ``structum_lab.plugins.database.events``).
    - ``level``: statements, transactions, connections opened/closed, healthy checks
      (default ``DEBUG``).
    - ``slow_ms``: statements, transactions and connection waits at least this long are
      logged at ``slow_level`` (default ``WARNING``); None (the default) disables it.
    - ``error_level``: failed statements, pool exhaustion, lost connections, unhealthy
      checks (default ``WARNING``: the caller gets the exception and decides if it is an error).
    - ``log_parameters``: add the parameter values (``db_params``) and the server's error
      message (``error_message``). Off by default: values can be personal data or secrets.

    One instance serves every database that names it with the same options; each record
    says which (``db_name``). A level the logger does not emit costs one check per event.
    """

    def __init__(
        self,
        *,
        logger: str = DEFAULT_LOGGER,
        slow_ms: float | None = None,
        log_parameters: bool = False,
        level: str | int = "DEBUG",
        slow_level: str | int = "WARNING",
        error_level: str | int = "WARNING",
    ) -> None:
        if not isinstance(logger, str) or not logger.strip():
            raise ConfigurationError(f"observer_options.logging.logger must be a logger name, got {logger!r}")
        if slow_ms is not None and (isinstance(slow_ms, bool) or not isinstance(slow_ms, int | float) or slow_ms < 0):
            raise ConfigurationError(
                f"observer_options.logging.slow_ms must be a number of milliseconds >= 0, got {slow_ms!r}"
            )
        if not isinstance(log_parameters, bool):
            raise ConfigurationError(
                f"observer_options.logging.log_parameters must be true or false, got {log_parameters!r}"
            )
        self.logger = logging.getLogger(logger.strip())
        self.slow_ms = None if slow_ms is None else float(slow_ms)
        self._slow_s = None if slow_ms is None else float(slow_ms) / 1000.0
        self.log_parameters = log_parameters
        self.level = _level("level", level)
        self.slow_level = _level("slow_level", slow_level)
        self.error_level = _level("error_level", error_level)

    def __repr__(self) -> str:
        return (
            f"LoggingObserver(logger={self.logger.name!r}, slow_ms={self.slow_ms!r}, "
            f"log_parameters={self.log_parameters!r}, level={logging.getLevelName(self.level)!r})"
        )

    # -- helpers -----------------------------------------------------------------------

    def _emit(
        self, level: int, database: object, event: str, message: str, args: tuple[Any, ...], **fields: Any
    ) -> None:
        name, system = describe_database(database)
        extra = {
            "db_event": event,
            "db_name": name,
            "db_system": system,
            "db_backend": str(getattr(database, "backend", "")),
            **fields,
        }
        # stacklevel would point at the engine's frame, which says nothing to the reader.
        self.logger.log(level, "database %r: " + message, name, *args, extra=extra)

    def _error_fields(self, error: BaseException | None, sqlstate: str | None = None) -> dict[str, Any]:
        if error is None:
            return {}
        fields: dict[str, Any] = {
            "error_type": type(error).__name__,
            "sqlstate": sqlstate if sqlstate is not None else getattr(error, "sqlstate", None),
        }
        if self.log_parameters:
            fields["error_message"] = _scrub(str(error))
        return fields

    # -- hooks -------------------------------------------------------------------------

    @hookimpl
    def structum_database_statement_executed(self, database: object, event: StatementEvent) -> None:
        error = event.error
        slow = self._slow_s is not None and event.duration_s >= self._slow_s
        level = self.error_level if error is not None else self.slow_level if slow else self.level
        if not self.logger.isEnabledFor(level):
            return  # the common production case: nothing formatted, nothing allocated
        duration_ms = event.duration_s * 1000.0
        sql = _scrub(event.sql)
        fields: dict[str, Any] = {
            "db_operation": event.operation,
            "db_statement": sql,
            "duration_ms": round(duration_ms, 3),
            "rowcount": event.rowcount,
            "batch": event.batch,
            "in_transaction": event.in_transaction,
            "slow": slow,
            **self._error_fields(error, event.sqlstate),
        }
        params = ""
        if self.log_parameters and event.params is not None:
            fields["db_params"] = _scrub(repr(event.params))
            params = " params=" + fields["db_params"]
        if error is not None:
            code = f", SQLSTATE {event.sqlstate}" if event.sqlstate else ""
            detail = f": {fields['error_message']}" if "error_message" in fields else ""
            self._emit(
                level,
                database,
                "statement",
                "%s failed after %.3f ms (%s%s%s): %s%s",
                (event.operation or "statement", duration_ms, fields["error_type"], code, detail, sql, params),
                **fields,
            )
            return
        rows = f", {event.rowcount} row{'' if event.rowcount == 1 else 's'}" if event.rowcount >= 0 else ""
        batch = f", {event.batch} parameter sets" if event.batch > 1 else ""
        self._emit(
            level,
            database,
            "statement",
            "%s%s took %.3f ms%s%s: %s%s",
            ("slow " if slow else "", event.operation or "statement", duration_ms, rows, batch, sql, params),
            **fields,
        )

    @hookimpl
    def structum_database_transaction_event(self, database: object, event: TransactionEvent) -> None:
        slow = event.phase != "begin" and self._slow_s is not None and event.duration_s >= self._slow_s
        level = self.slow_level if slow else self.level
        if not self.logger.isEnabledFor(level):
            return
        what = "savepoint" if event.savepoint else "transaction"
        fields = {
            "db_transaction": event.phase,
            "db_savepoint": event.savepoint,
            "duration_ms": round(event.duration_s * 1000.0, 3),
            "slow": slow,
            **self._error_fields(event.error),
        }
        if event.phase == "begin":
            self._emit(level, database, "transaction", "%s began", (what,), **fields)
            return
        verb = "committed" if event.phase == "commit" else "rolled back"
        cause = f" ({type(event.error).__name__})" if event.error is not None else ""
        self._emit(
            level,
            database,
            "transaction",
            "%s%s %s%s after %.3f ms",
            ("slow " if slow else "", what, verb, cause, event.duration_s * 1000.0),
            **fields,
        )

    @hookimpl
    def structum_database_connection_checked_out(self, database: object, wait_s: float) -> None:
        # Only long waits: a record per checkout would drown everything else.
        if self._slow_s is None or wait_s < self._slow_s or not self.logger.isEnabledFor(self.slow_level):
            return
        self._emit(
            self.slow_level,
            database,
            "checkout",
            "waited %.3f ms for a pooled connection",
            (wait_s * 1000.0,),
            wait_ms=round(wait_s * 1000.0, 3),
            slow=True,
        )

    @hookimpl
    def structum_database_connection_event(self, database: object, event: ConnectionEvent) -> None:
        level = self.error_level if event.kind == "lost" else self.level
        if not self.logger.isEnabledFor(level):
            return
        text: dict[str, tuple[str, tuple[Any, ...]]] = {
            "created": ("opened a connection in %.3f ms", (event.duration_s * 1000.0,)),
            "closed": ("closed a connection", ()),
            "lost": ("lost a connection (dropped by the server or the network); it is not reused", ()),
        }
        message, args = text.get(event.kind, ("connection event %s", (event.kind,)))
        self._emit(
            level,
            database,
            "connection",
            message,
            args,
            db_connection=event.kind,
            duration_ms=round(event.duration_s * 1000.0, 3),
        )

    @hookimpl
    def structum_database_pool_exhausted(self, database: object, pool_info: PoolInfo, waited_s: float) -> None:
        if not self.logger.isEnabledFor(self.error_level):
            return
        info: Mapping[str, Any] = pool_info
        self._emit(
            self.error_level,
            database,
            "pool_exhausted",
            "no pooled connection became free within %.3f s: %s of %s in use, %s callers waiting",
            (waited_s, info.get("checked_out", "?"), info.get("max_size", "?"), info.get("requests_waiting", "?")),
            wait_ms=round(waited_s * 1000.0, 3),
            pool_info={k: v for k, v in info.items() if k != "members"},
        )

    @hookimpl
    def structum_database_health_checked(self, database: object, result: HealthCheckResult) -> None:
        status = result.status
        level = (
            self.level
            if status is HealthStatus.HEALTHY
            else self.slow_level
            if status is HealthStatus.DEGRADED
            else self.error_level
        )
        if not self.logger.isEnabledFor(level):
            return
        health = str(status.value)
        self._emit(
            level,
            database,
            "health",
            "health check %s in %.3f ms: %s",
            (health, result.latency_ms, _scrub(result.message)),
            health_status=health,
            latency_ms=round(result.latency_ms, 3),
        )
