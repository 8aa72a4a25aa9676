"""The ``prometheus`` observer: the database client metrics of the OpenTelemetry
conventions, in Prometheus' names (docs/observability.md lists them).

Durations, waits and timeouts are recorded as the events arrive; the pool gauges
(connections used and idle, the maximum, callers waiting) are read from
``get_pool_info()`` when Prometheus scrapes, by one collector per registry that holds
weak references to the databases it has seen: a database that is shut down or
garbage-collected drops out of them.

Labels stay low-cardinality: ``db_system``, ``db_name`` (the database's ``name``) and
``operation`` (the statement's first keyword), plus ``error_type`` (the error class) on
the error counter and ``state`` on the connection count. Never SQL text, never values.

The metric objects are shared per registry and namespace: several observers (one per
set of ``observer_options``) and several databases write to the same series families.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from ..._contract.errors import ConfigurationError
from ..._contract.hookspecs import hookimpl
from .logs import describe_database

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError(
        "the 'prometheus' observer needs prometheus-client: install the extra from a checkout of this "
        'repository, pip install "./core[prometheus]" (see docs/install.md)'
    ) from exc

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..._contract.events import ConnectionEvent, StatementEvent
    from ..._contract.protocols import PoolInfo

__all__ = ["DEFAULT_BUCKETS", "PrometheusObserver"]

#: ``db_client_operation_duration_seconds``: from a loopback point read (~0.2 ms) to a
#: report query; the conventions' own advice starts at 1 ms, which hides the fast end.
DEFAULT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Checkout waits: microseconds when the pool has a free connection, up to the default
#: ``pool_timeout`` (30 s) when it has not.
WAIT_BUCKETS: Final = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: How long a connection stays lent: a transaction, or a ``get_connection()`` session.
USE_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Opening a connection: TCP, TLS, authentication.
CREATE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_DB: Final = ("db_system", "db_name")

log = logging.getLogger("structum_lab.plugins.database")


class _State:
    """The label children of one database, made once (``labels()`` takes a lock and builds a
    tuple key: too slow to repeat on every statement)."""

    __slots__ = ("create", "database", "errors", "name", "operations", "system", "timeouts", "use", "wait")

    def __init__(self, metrics: _Metrics, database: object) -> None:
        self.name, self.system = describe_database(database)
        try:
            self.database: weakref.ref[object] | object = weakref.ref(database)
        except TypeError:  # not weakly referenceable: kept alive, and reported, as long as the process
            self.database = database
        self.operations: dict[str, Any] = {}
        self.errors: dict[tuple[str, str], Any] = {}
        # Created at once, so the series exist at 0 from the first scrape (rate() needs a start).
        self.wait = metrics.wait.labels(self.name)
        self.use = metrics.use.labels(self.name)
        self.create = metrics.create.labels(self.name)
        self.timeouts = metrics.timeouts.labels(self.name)

    def alive(self) -> object | None:
        database = self.database
        return database() if isinstance(database, weakref.ref) else database


class _PoolCollector(Collector):
    """The pool gauges, read from ``get_pool_info()`` of every live database at scrape time."""

    def __init__(self, metrics: _Metrics) -> None:
        self._metrics = metrics

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        prefix = self._metrics.prefix
        return (
            GaugeMetricFamily(
                prefix + "db_client_connection_count",
                "Open connections of the pool, by state: used (lent to a caller) or idle",
                labels=["db_name", "state"],
            ),
            GaugeMetricFamily(
                prefix + "db_client_connection_max",
                "The most connections the pool may open (pool_size + max_overflow)",
                labels=["db_name"],
            ),
            GaugeMetricFamily(
                prefix + "db_client_connection_pending_requests",
                "Callers waiting for a connection of the pool right now",
                labels=["db_name"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        # Names only: the registry checks them for clashes without reading any pool.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        count, maximum, pending = self._families()
        totals: dict[str, list[float]] = {}  # db_name -> used, idle, max, pending
        for state in list(self._metrics.states.values()):
            database = state.alive()
            if database is None or _shut_down(database):
                continue
            try:
                info: PoolInfo = database.get_pool_info()  # type: ignore[attr-defined]
            except Exception:  # a database being torn down: no figures this scrape
                log.debug("get_pool_info() of database %r failed during a scrape", state.name, exc_info=True)
                continue
            # Two databases with one name are one to the reader: their figures add up.
            figures = totals.setdefault(state.name, [0.0, 0.0, 0.0, 0.0])
            figures[0] += info.get("checked_out", 0)
            figures[1] += info.get("available", 0)
            figures[2] += info.get("max_size", 0)
            figures[3] += info.get("requests_waiting", 0)
        for name, (used, idle, most, waiting) in sorted(totals.items()):
            count.add_metric([name, "used"], used)
            count.add_metric([name, "idle"], idle)
            maximum.add_metric([name], most)
            pending.add_metric([name], waiting)
        yield count
        yield maximum
        yield pending


def _shut_down(database: object) -> bool:
    # The engine has no public "closed" flag yet; its engine object has.
    return bool(getattr(database, "closed", False))


class _Metrics:
    """The metric objects of one registry and namespace, and the databases they have seen."""

    def __init__(self, registry: CollectorRegistry, namespace: str, buckets: tuple[float, ...]) -> None:
        self.prefix = f"{namespace}_" if namespace else ""
        self.buckets = buckets
        self.states: dict[int, _State] = {}
        self._lock = threading.Lock()
        common: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.duration = Histogram(
            "db_client_operation_duration_seconds",
            "Duration of database client operations (statements, COMMIT, ROLLBACK...), failed ones included",
            [*_DB, "operation"],
            buckets=buckets,
            **common,
        )
        self.errors = Counter(
            "db_client_operation_errors_total",
            "Database client operations that failed, by error class",
            [*_DB, "operation", "error_type"],
            **common,
        )
        self.wait = Histogram(
            "db_client_connection_wait_time_seconds",
            "Time it took to obtain a connection from the pool",
            ["db_name"],
            buckets=WAIT_BUCKETS,
            **common,
        )
        self.use = Histogram(
            "db_client_connection_use_time_seconds",
            "Time between borrowing a connection and returning it to the pool",
            ["db_name"],
            buckets=USE_BUCKETS,
            **common,
        )
        self.create = Histogram(
            "db_client_connection_create_time_seconds",
            "Time it took to open a new connection",
            ["db_name"],
            buckets=CREATE_BUCKETS,
            **common,
        )
        self.timeouts = Counter(
            "db_client_connection_timeouts_total",
            "Checkouts that timed out waiting for a free connection (PoolTimeoutError)",
            ["db_name"],
            **common,
        )
        self.collector = _PoolCollector(self)
        registry.register(self.collector)

    def adopt(self, database: object) -> _State:
        key = id(database)
        with self._lock:
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = _State(self, database)
                if isinstance(state.database, weakref.ref):
                    # Before the id can be reused by another object.
                    weakref.finalize(database, self.states.pop, key, None)
        return state

    def operation(self, state: _State, operation: str) -> Any:
        child = self.duration.labels(state.system, state.name, operation or "OTHER")
        state.operations[operation] = child
        return child

    def error(self, state: _State, operation: str, error_type: str) -> Any:
        child = self.errors.labels(state.system, state.name, operation or "OTHER", error_type)
        state.errors[(operation, error_type)] = child
        return child


_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def _metrics_for(registry: CollectorRegistry, namespace: str, buckets: tuple[float, ...] | None) -> _Metrics:
    with _SHARED_LOCK:
        per_namespace = _SHARED.setdefault(registry, {})
        found = per_namespace.get(namespace)
        if found is not None:
            if buckets is not None and buckets != found.buckets:
                raise ConfigurationError(
                    f"observer_options.prometheus.buckets: {list(buckets)} differs from the buckets "
                    f"{list(found.buckets)} already registered for namespace {namespace!r} in this registry; "
                    "give every database the same buckets, or another namespace"
                )
            return found
        try:
            metrics = _Metrics(registry, namespace, DEFAULT_BUCKETS if buckets is None else buckets)
        except ValueError as exc:  # a name already registered by someone else, or bad buckets
            raise ConfigurationError(f"the 'prometheus' observer cannot register its metrics: {exc}") from exc
        per_namespace[namespace] = metrics
        return metrics


def _check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str):
        raise ConfigurationError(f"observer_options.prometheus.namespace must be a string, got {namespace!r}")
    text = namespace.strip()
    if (text and not (text[0].isalpha() or text[0] == "_")) or not all(
        c.isascii() and (c.isalnum() or c == "_") for c in text
    ):
        raise ConfigurationError(
            f"observer_options.prometheus.namespace {namespace!r} is not a metric name prefix "
            "(letters, digits and underscores, not starting with a digit)"
        )
    return text


def _check_buckets(buckets: object) -> tuple[float, ...] | None:
    if buckets is None:
        return None
    if isinstance(buckets, str | bytes) or not isinstance(buckets, Sequence):
        raise ConfigurationError(f"observer_options.prometheus.buckets must be a list of seconds, got {buckets!r}")
    try:
        values = tuple(float(b) for b in buckets)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"observer_options.prometheus.buckets must be a list of seconds, got {buckets!r}"
        ) from None
    if not values or any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigurationError(
            f"observer_options.prometheus.buckets must be increasing upper bounds in seconds, got {list(values)}"
        )
    return values


class PrometheusObserver:
    """Records database client metrics in a prometheus-client registry.

    - ``registry``: where the metrics go (default ``prometheus_client.REGISTRY``, the one
      ``start_http_server()`` and ``make_asgi_app()`` serve).
    - ``namespace``: a prefix for every metric name (``myapp`` gives
      ``myapp_db_client_operation_duration_seconds``).
    - ``buckets``: upper bounds, in seconds, of ``db_client_operation_duration_seconds``
      (default :data:`DEFAULT_BUCKETS`); the same for every observer of a registry and namespace.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "",
        buckets: Sequence[float] | None = None,
    ) -> None:
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise ConfigurationError(
                f"observer_options.prometheus.registry must be a prometheus_client CollectorRegistry, got {registry!r}"
            )
        self.registry = REGISTRY if registry is None else registry
        self.namespace = _check_namespace(namespace)
        self._metrics = _metrics_for(self.registry, self.namespace, _check_buckets(buckets))

    def __repr__(self) -> str:
        return f"PrometheusObserver(registry={self.registry!r}, namespace={self.namespace!r})"

    def _state(self, database: object) -> _State:
        state = self._metrics.states.get(id(database))
        return state if state is not None else self._metrics.adopt(database)

    # -- hooks -------------------------------------------------------------------------

    @hookimpl
    def structum_database_statement_executed(self, database: object, event: StatementEvent) -> None:
        state = self._metrics.states.get(id(database)) or self._metrics.adopt(database)  # _state(), inlined
        operation = event.operation
        child = state.operations.get(operation)
        if child is None:
            child = self._metrics.operation(state, operation)
        child.observe(event.duration_s)
        error = event.error
        if error is not None:
            error_type = type(error).__name__
            counter = state.errors.get((operation, error_type))
            if counter is None:
                counter = self._metrics.error(state, operation, error_type)
            counter.inc()

    @hookimpl
    def structum_database_connection_checked_out(self, database: object, wait_s: float) -> None:
        self._state(database).wait.observe(wait_s)

    @hookimpl
    def structum_database_connection_returned(self, database: object, use_s: float) -> None:
        self._state(database).use.observe(use_s)

    @hookimpl
    def structum_database_connection_event(self, database: object, event: ConnectionEvent) -> None:
        state = self._state(database)  # also the moment a database is first seen: its gauges appear
        if event.kind == "created" and event.duration_s > 0:
            state.create.observe(event.duration_s)

    @hookimpl
    def structum_database_pool_exhausted(self, database: object, pool_info: PoolInfo, waited_s: float) -> None:
        self._state(database).timeouts.inc()
