"""The ``opentelemetry`` observer: spans and metrics of the database semantic conventions.

Enabled per database with ``observers = ["opentelemetry"]`` (options under
``observer_options.opentelemetry``); docs/observability.md lists every attribute and
metric. It uses the OpenTelemetry API only: without an SDK configured by the
application the API's no-op providers make it nearly free, with one the spans and
metrics go wherever the application exports them.

Each statement (transaction control included: COMMIT, ROLLBACK, SAVEPOINT, RELEASE
SAVEPOINT, ROLLBACK TO SAVEPOINT) becomes a CLIENT span, child of the span current in the
caller, and one ``db.client.operation.duration`` measurement. The engine reports a
statement once it has ended, on the caller's thread or task, so the current context
is still the caller's: the span is started then with ``start_time = now - duration``
and ended at once, which gives the nesting and timing of a span opened around the call.

What is never exported: parameter values; the server's error message (it quotes values,
e.g. PostgreSQL's ``DETAIL: Key (email)=(...)``), unless ``capture_error_message=True``;
any secret of a live database (masked in the query text like in the layer's logs).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from ..._contract.errors import ConfigurationError

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "the 'opentelemetry' observer needs opentelemetry-api, which is not installed: "
        'pip install "./core[opentelemetry]" (see docs/install.md), plus an SDK such as '
        "opentelemetry-sdk to export the spans and metrics"
    ) from exc

from ... import __version__
from ..._contract.hookspecs import hookimpl
from ..._contract.url import DatabaseURL, mask_url
from ..._engine.secrets import _LIVE, Secrets
from .otel_metrics import SCOPE, Instruments, instruments_for
from .otel_summary import db_system_name, sanitize, summarize

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Tracer, TracerProvider

    from ..._contract.events import ConnectionEvent, StatementEvent
    from ..._contract.protocols import PoolInfo

__all__ = ["OpenTelemetryObserver"]

log = logging.getLogger("structum_lab.plugins.database")

#: Transaction control: never a batch, even when a pipeline sent it with other statements.
_CONTROL: Final = frozenset({"COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "BEGIN", "END", "START"})


class _Target:
    """What the spans and metrics say about one database, worked out once from its masked URL."""

    __slots__ = ("mysql", "namespace", "pool_attrs", "ref", "static", "system")

    def __init__(self, database: object, pool_name: str) -> None:
        self.ref = weakref.ref(database)
        try:
            url: DatabaseURL | None = DatabaseURL.parse(str(getattr(database, "url", "")))
        except Exception:
            url = None
        dialect = url.dialect if url is not None else ""
        self.system = db_system_name(dialect)
        self.mysql = self.system in ("mysql", "mariadb")
        self.namespace = _namespace(url, self.system)
        static: dict[str, Any] = {"db.system.name": self.system}
        if self.namespace:
            static["db.namespace"] = self.namespace
        if url is not None and self.system != "sqlite":
            query = url.query_dict()
            host = url.host or query.get("host")
            if host:
                static["server.address"] = host
                ports = {port for _, port in url.hosts} if url.hosts else {url.port}
                port = url.port if url.port is not None else (ports.pop() if len(ports) == 1 else None)
                if port is None and query.get("port", "").isdigit():
                    port = int(query["port"])
                if port is not None:
                    static["server.port"] = port
        self.static = static
        self.pool_attrs = {"db.client.connection.pool.name": pool_name}


def _namespace(url: DatabaseURL | None, system: str) -> str:
    """``db.namespace``: the database, and for PostgreSQL ``database|schema`` when the URL
    sets a search_path (the schema the connection starts with; a later SET is not seen)."""
    if url is None:
        return ""
    query = url.query_dict()
    database = url.database or query.get("dbname") or ""
    if system != "postgresql":
        return database
    schema = ""
    options = query.get("options", "")
    for part in options.replace("-c ", "-c").split():
        if part.startswith("-csearch_path="):
            first = part.removeprefix("-csearch_path=").split(",")[0].strip().strip('"')
            schema = "" if first in ("", "$user") else first
    return f"{database}|{schema}" if database and schema else database or schema


class OpenTelemetryObserver:
    """Spans per statement and the database client metrics, through the OpenTelemetry API.

    - ``tracer_provider``, ``meter_provider``: where spans and metrics go (default: the
      global providers the application set with ``trace.set_tracer_provider`` and
      ``metrics.set_meter_provider``).
    - ``capture_query_text``: put the SQL, with its placeholders, in ``db.query.text``
      (default True, as the conventions recommend for parameterized text).
    - ``sanitize_query_text``: replace the literals written in the SQL (``'active'``, ``42``)
      with ``?`` first, for applications that write values into their SQL (default False).
    - ``capture_error_message``: use the error's message (secrets masked) as the span status
      description; off by default because servers quote values in it. Without it the
      description is the error class and SQLSTATE.
    - ``tracing``, ``metrics``: turn either signal off (default both on).

    One instance serves every database that names it with the same options; their
    attributes (``db.namespace``, ``server.address``, ``db.client.connection.pool.name``)
    tell them apart.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        capture_query_text: bool = True,
        sanitize_query_text: bool = False,
        capture_error_message: bool = False,
        tracing: bool = True,
        metrics: bool = True,
    ) -> None:
        flags = {
            "capture_query_text": capture_query_text,
            "sanitize_query_text": sanitize_query_text,
            "capture_error_message": capture_error_message,
            "tracing": tracing,
            "metrics": metrics,
        }
        for option, value in flags.items():
            if not isinstance(value, bool):
                raise ConfigurationError(
                    f"observer_options.opentelemetry.{option} must be true or false, got {value!r}"
                )
        for option, provider, method in (
            ("tracer_provider", tracer_provider, "get_tracer"),
            ("meter_provider", meter_provider, "get_meter"),
        ):
            if provider is not None and not callable(getattr(provider, method, None)):
                raise ConfigurationError(
                    f"observer_options.opentelemetry.{option} must be an OpenTelemetry {option.replace('_', ' ')} "
                    f"(with {method}()), got {type(provider).__name__}"
                )
        self.capture_query_text = capture_query_text
        self.sanitize_query_text = sanitize_query_text
        self.capture_error_message = capture_error_message
        self._tracer: Tracer | None = None
        # The global provider stays the API's proxy until the application installs an SDK:
        # until then every span would be a no-op, and none is made.
        self._global_tracing = tracer_provider is None
        if tracing:
            tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
            # An explicit no-op provider: no span would ever record, so none is made.
            self._tracer = None if isinstance(tracer, trace.NoOpTracer) else tracer
        self._instruments: Instruments | None = instruments_for(meter_provider) if metrics else None
        self._targets: dict[int, _Target] = {}
        self._lock = threading.Lock()
        self._options = {"tracer_provider": tracer_provider, "meter_provider": meter_provider, **flags}

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in self._options.items())
        return f"OpenTelemetryObserver({shown})"

    # -- helpers -----------------------------------------------------------------------

    def _target(self, database: object) -> _Target:
        found = self._targets.get(id(database))
        if found is not None and found.ref() is database:
            return found
        instruments = self._instruments
        pool_name = instruments.watch(database) if instruments is not None else str(getattr(database, "name", ""))
        target = _Target(database, pool_name or "default")
        key = id(database)
        with self._lock:
            self._targets[key] = target
        weakref.finalize(database, self._targets.pop, key, None)
        return target

    def _tracing_failed(self) -> None:
        # The metrics go on: only the signal that raised is turned off, and said so once.
        if self._tracer is not None:
            self._tracer = None
            log.exception("the opentelemetry observer's tracer raised; spans are off, metrics go on")

    # -- hooks -------------------------------------------------------------------------

    @hookimpl
    def structum_database_statement_executed(self, database: object, event: StatementEvent) -> None:
        target = self._target(database)
        operation = event.operation
        summary = summarize(event.sql, target.mysql)
        batch = event.batch if event.batch > 1 and _is_executemany(event, target.mysql) else 0
        if batch:
            operation = f"BATCH {operation}" if operation else "BATCH"
            summary = f"BATCH {summary}" if summary else operation
        error = event.error
        error_type = event.error_type
        tracer = self._tracer
        if tracer is not None and not (
            self._global_tracing and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        ):
            try:
                self._span(tracer, target, event, operation=operation, summary=summary, batch=batch)
            except Exception:
                self._tracing_failed()
        instruments = self._instruments
        if instruments is not None:
            attributes = dict(target.static)
            if operation:
                attributes["db.operation.name"] = operation
            if summary:
                attributes["db.query.summary"] = summary
            if error is not None:
                attributes["error.type"] = error_type or "_OTHER"
                if event.sqlstate:
                    attributes["db.response.status_code"] = event.sqlstate
            instruments.operation_duration.record(event.duration_s, attributes)

    def _span(
        self, tracer: Tracer, target: _Target, event: StatementEvent, *, operation: str, summary: str, batch: int
    ) -> None:
        attributes = dict(target.static)
        if operation:
            attributes["db.operation.name"] = operation
        if summary:
            attributes["db.query.summary"] = summary
        if self.capture_query_text and event.sql:
            attributes["db.query.text"] = _query_text(
                event.sql, _LIVE.secrets() if _LIVE.live else None, self.sanitize_query_text, target.mysql
            )
        if batch:
            attributes["db.operation.batch.size"] = batch
        error = event.error
        if error is not None:
            attributes["error.type"] = event.error_type or "_OTHER"
            if event.sqlstate:
                attributes["db.response.status_code"] = event.sqlstate
        if summary:
            name = summary
        elif operation:
            name = f"{operation} {target.namespace}" if target.namespace else operation
        else:
            name = target.system
        end = time.time_ns()
        start = end - int(event.duration_s * 1e9)
        # Attributes at creation: samplers decide on them (the conventions ask for it).
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes, start_time=start)
        if error is not None and span.is_recording():
            span.set_status(Status(StatusCode.ERROR, self._describe(error, event)))
        span.end(end_time=end)

    def _describe(self, error: BaseException, event: StatementEvent) -> str:
        if self.capture_error_message:
            secrets = _LIVE.secrets() if _LIVE.live else None
            text = str(error)
            return secrets.scrub(text) if secrets else mask_url(text)
        code = f" (SQLSTATE {event.sqlstate})" if event.sqlstate else ""
        return f"{type(error).__name__}{code}"

    @hookimpl
    def structum_database_connection_checked_out(self, database: object, wait_s: float) -> None:
        if self._instruments is not None:
            self._instruments.wait_time.record(wait_s, self._target(database).pool_attrs)

    @hookimpl
    def structum_database_connection_returned(self, database: object, use_s: float) -> None:
        if self._instruments is not None:
            self._instruments.use_time.record(use_s, self._target(database).pool_attrs)

    @hookimpl
    def structum_database_connection_event(self, database: object, event: ConnectionEvent) -> None:
        if self._instruments is not None:
            target = self._target(database)  # the pool is reported from its first connection on
            if event.kind == "created":
                self._instruments.create_time.record(event.duration_s, target.pool_attrs)

    @hookimpl
    def structum_database_pool_exhausted(self, database: object, pool_info: PoolInfo, waited_s: float) -> None:
        if self._instruments is not None:
            self._instruments.timeouts.add(1, self._target(database).pool_attrs)


def _is_executemany(event: StatementEvent, mysql: bool) -> bool:
    """Whether a statement with ``batch > 1`` is one ``executemany`` (one batch operation), not
    one statement of a pipelined transaction (an operation of its own)."""
    return event.kind == "executemany"


@lru_cache(maxsize=2048)
def _query_text(sql: str, secrets: Secrets | None, sanitized: bool, mysql: bool) -> str:
    """``db.query.text``: the SQL as written (literals replaced if asked), secrets masked."""
    text = sanitize(sql, mysql) if sanitized else sql
    return secrets.scrub(text) if secrets else mask_url(text)
