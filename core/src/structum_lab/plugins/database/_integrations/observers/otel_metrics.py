"""The OpenTelemetry metric instruments of the ``opentelemetry`` observer.

Names, units and attributes are those of the database client metrics of the semantic
conventions: the stable ``db.client.operation.duration`` and the ``db.client.connection.*``
pool metrics. The pool gauges are observable instruments whose callbacks read
``get_pool_info()`` of the databases seen, held by weak reference so that a database
dropped by the application stops being reported instead of being kept alive.

The instruments are made once per meter provider and shared by every observer instance
using it: an SDK meter hands back the first instrument of a name and drops the callbacks
of a second observable one, so two observers with different options (two instances) on
one provider must not each register their own.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from ... import __version__

__all__ = ["OPERATION_BUCKETS", "POOL_BUCKETS", "SCOPE", "Instruments", "instruments_for"]

#: The instrumentation scope of every span and metric.
SCOPE: Final = "structum_lab.plugins.database"

#: The bucket boundaries the conventions give for ``db.client.operation.duration``.
OPERATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
#: The pool's timings (no boundaries in the conventions): the same, with two below a
#: millisecond, where a healthy pool's checkout waits are, so that they are not one bucket.
POOL_BUCKETS: Final = (0.0001, 0.0005, *OPERATION_BUCKETS)

log = logging.getLogger("structum_lab.plugins.database")

_POOL_NAME: Final = "db.client.connection.pool.name"
_STATE: Final = "db.client.connection.state"


class Instruments:
    """Every instrument on one meter, and the databases whose pools the gauges report."""

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._pools: dict[int, tuple[weakref.ref[Any], str]] = {}  # id(database) -> (ref, pool name)
        self.operation_duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=OPERATION_BUCKETS,
        )
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            unit="{timeout}",
            description=(
                "The number of connection timeouts that have occurred trying to obtain a connection from the pool."
            ),
        )
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time",
            unit="s",
            description="The time it took to create a new connection.",
            explicit_bucket_boundaries_advisory=POOL_BUCKETS,
        )
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="The time it took to obtain an open connection from the pool.",
            explicit_bucket_boundaries_advisory=POOL_BUCKETS,
        )
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time",
            unit="s",
            description="The time between borrowing a connection and returning it to the pool.",
            explicit_bucket_boundaries_advisory=POOL_BUCKETS,
        )
        gauges: tuple[tuple[str, str, str, Callable[[CallbackOptions], Iterable[Observation]]], ...] = (
            (
                "db.client.connection.count",
                "{connection}",
                "The number of connections that are currently in state described by the state attribute.",
                self._count,
            ),
            (
                "db.client.connection.idle.max",
                "{connection}",
                "The maximum number of idle open connections allowed.",
                self._figure(_idle_max),
            ),
            (
                "db.client.connection.idle.min",
                "{connection}",
                "The minimum number of idle open connections allowed.",
                self._figure(lambda info: info.get("min_size", 0)),
            ),
            (
                "db.client.connection.max",
                "{connection}",
                "The maximum number of open connections allowed.",
                self._figure(lambda info: info.get("max_size")),
            ),
            (
                "db.client.connection.pending_requests",
                "{request}",
                "The number of current pending requests for an open connection.",
                self._figure(lambda info: info.get("requests_waiting", 0)),
            ),
        )
        # The conventions make them UpDownCounters; observed, as the pool keeps the figures.
        for name, unit, description, callback in gauges:
            meter.create_observable_up_down_counter(name, callbacks=[callback], unit=unit, description=description)

    def watch(self, database: object) -> str:
        """Report ``database``'s pool from now on; returns its ``db.client.connection.pool.name``:
        the database's name, with ``#2``, ``#3``... when another live database has it already
        (the conventions want it unique in the application)."""
        key = id(database)
        with self._lock:
            found = self._pools.get(key)
            if found is not None and found[0]() is database:
                return found[1]
            base = str(getattr(database, "name", "") or "default")
            taken = {name for ref, name in self._pools.values() if ref() is not None}
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base}#{n}"
            self._pools[key] = (weakref.ref(database, lambda _ref: self._forget(key)), name)
            return name

    def _forget(self, key: int) -> None:
        with self._lock:
            found = self._pools.get(key)
            if found is not None and found[0]() is None:
                del self._pools[key]

    def _infos(self) -> list[tuple[str, Mapping[str, Any]]]:
        with self._lock:
            pools = list(self._pools.values())
        out: list[tuple[str, Mapping[str, Any]]] = []
        for ref, name in pools:
            database = ref()
            if database is None or getattr(database, "closed", False):  # shut down: no pool to report
                continue
            try:
                info = database.get_pool_info()
            except Exception:  # a pool shut down or being replaced: skip it this time
                log.debug("get_pool_info() of database %r failed", name, exc_info=True)
                continue
            if isinstance(info, Mapping):
                out.append((name, info))
        return out

    def _count(self, _options: CallbackOptions) -> Iterable[Observation]:
        for name, info in self._infos():
            used = int(info.get("checked_out", 0))
            idle = int(info.get("available", max(0, int(info.get("total", used)) - used)))
            yield Observation(idle, {_POOL_NAME: name, _STATE: "idle"})
            yield Observation(used, {_POOL_NAME: name, _STATE: "used"})

    def _figure(
        self, read: Callable[[Mapping[str, Any]], object]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            for name, info in self._infos():
                value = read(info)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    yield Observation(value, {_POOL_NAME: name})

        return observe


def _idle_max(info: Mapping[str, Any]) -> object:
    # A pool that has a min_size (psycopg_pool) grows to max_size and closes idle
    # connections above min_size only after max_idle: all max_size may sit idle. A pool
    # without one (SQLAlchemy's QueuePool) keeps at most ``size`` and closes overflow
    # connections as they come back.
    return info.get("max_size") if "min_size" in info else info.get("size")


_shared_lock = threading.Lock()
_by_provider: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()
_global: list[Instruments] = []  # the global provider's, made on first use


def instruments_for(meter_provider: MeterProvider | None) -> Instruments:
    """The instruments on ``meter_provider`` (None: the global one, which may still be the API's
    proxy: its instruments follow the SDK provider set later)."""
    with _shared_lock:
        if meter_provider is None:
            if not _global:
                _global.append(Instruments(metrics.get_meter(SCOPE, __version__)))
            return _global[0]
        found = _by_provider.get(meter_provider)
        if found is None:
            found = _by_provider[meter_provider] = Instruments(meter_provider.get_meter(SCOPE, __version__))
        return found
