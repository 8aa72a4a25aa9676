"""The ``observers`` workload: what each first-party observer costs per operation.

``BEGIN; SELECT 1; COMMIT`` on a pooled connection of the psycopg backend (as
``pooled_tx``), through raw psycopg_pool (the baseline), the layer without observers, and
the layer with each observer: ``logging`` with its logger below the level (the usual
production setting) and enabled into a ``NullHandler`` (every record made and handled),
``prometheus`` (a registry of its own) and ``opentelemetry`` (the SDK with an in-memory
span exporter and metric reader). Each observer's row compares it with the layer without
observers (``vs psycopg, no observer`` in the notes: wall ratio and client CPU per op).

Kept in its own module so that ``workloads.py`` does not grow further; ``workloads``
imports it lazily (it needs ``workloads``' types).
"""

from __future__ import annotations

import contextlib
import logging
import timeit
from collections.abc import Callable, Iterator
from typing import Any

import workloads
from psycopg_pool import ConnectionPool
from workloads import Measured, MultiWorkload, Scale, Side

from structum_lab.plugins.database import hookimpl

NO_OBSERVER = "psycopg, no observer"
POOL = 4
#: Loggers of the logging sides, outside the layer's own hierarchy so that nothing else
#: (pytest's capture, a root handler) changes what they cost.
LOGGER_OFF = "bench.observers.off"
LOGGER_ON = "bench.observers.on"


def _loggers() -> None:
    off = logging.getLogger(LOGGER_OFF)
    off.setLevel(logging.WARNING)  # DEBUG records are not made at all
    off.propagate = False
    on = logging.getLogger(LOGGER_ON)
    on.setLevel(logging.DEBUG)  # every record made, formatted by nobody, dropped by the handler
    on.propagate = False
    if not on.handlers:
        on.addHandler(logging.NullHandler())


def _otel() -> tuple[dict[str, Any] | None, str | None, Callable[[], None]]:
    """The OpenTelemetry observer's options (an SDK TracerProvider with an in-memory exporter,
    a MeterProvider with an in-memory reader) and a reset that empties them, or why not."""
    try:
        import importlib

        importlib.import_module("structum_lab.plugins.database._integrations.observers.otel")
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except Exception as exc:
        return None, f"opentelemetry observer not importable: {type(exc).__name__}: {exc}", lambda: None
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return {"tracer_provider": tracer_provider, "meter_provider": meter_provider}, None, exporter.clear


class _Recorder:
    """Records the events of the databases while registered: (event kind, hook arguments)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def structum_database_statement_executed(self, event: Any) -> None:
        self.seen.append(("statement", {"event": event}))

    @hookimpl
    def structum_database_transaction_event(self, event: Any) -> None:
        self.seen.append(("transaction", {"event": event}))

    @hookimpl
    def structum_database_transaction_finished(self, outcome: str, duration_s: float, error: Any) -> None:
        self.seen.append(("finished", {"outcome": outcome, "duration_s": duration_s, "error": error}))

    @hookimpl
    def structum_database_connection_checked_out(self, wait_s: float) -> None:
        self.seen.append(("checkout", {"wait_s": wait_s}))

    @hookimpl
    def structum_database_connection_returned(self, use_s: float) -> None:
        self.seen.append(("returned", {"use_s": use_s}))


def _events_of_one_transaction(url: str) -> list[tuple[str, dict[str, Any]]]:
    """The events one ``BEGIN; SELECT 1; COMMIT`` sends, recorded on a database of its own
    (the recorder observes every database while registered, so it is removed at once)."""
    from structum_lab.plugins.database import connect
    from structum_lab.plugins.database._config.manager import get_plugin_manager

    db = connect(url, backend="psycopg", pool_size=1, max_overflow=0, name="bench_recorder")
    try:
        db.execute("SELECT 1")  # the pool's first connection opened, outside the recording
        recorder = _Recorder()
        get_plugin_manager().register(recorder)
        try:
            with db.transaction() as conn:
                conn.execute("SELECT 1").fetchone()
        finally:
            get_plugin_manager().unregister(recorder)
    finally:
        db.shutdown()
    return recorder.seen


def _hook_cost(db: Any, events: list[tuple[str, dict[str, Any]]], rounds: int = 2000) -> str:
    """Client CPU of the observer alone per transaction: the recorded events replayed through
    the database's own observer calls (each isolated, as the engine makes them), no I/O, the
    best of 5. Steadier than the end-to-end rows on a shared machine."""
    observers = db._engine.observers  # the engine's per-database observer calls (private: a bench)
    calls = [(getattr(observers, kind), {"database": observers.database, **kwargs}) for kind, kwargs in events]

    def replay() -> None:
        for _ in range(rounds):
            for functions, kwargs in calls:
                observers._call(functions, kwargs)

    best = min(timeit.repeat(replay, number=1, repeat=5)) / rounds * 1e6
    if observers._disabled:
        return f"replay disabled the observer ({len(observers._disabled)}): not measured"
    return f"{best:,.1f} us/op ({len(calls)} events)"


def observer_workloads(url: str, scale: Scale) -> list[MultiWorkload]:
    if getattr(workloads, "PostgresDatabase", None) is None:  # the psycopg backend is optional
        return []
    from prometheus_client import CollectorRegistry

    from structum_lab.plugins.database import connect

    ops = max(50, scale.tx // 2)
    otel_options, otel_missing, otel_reset = _otel()

    def run(db: Any) -> Callable[[], Measured]:
        def go() -> None:
            for _ in range(ops):
                with db.transaction() as conn:
                    conn.execute("SELECT 1").fetchone()

        return lambda: workloads._measured(go)

    @contextlib.contextmanager
    def observers() -> Iterator[tuple[Callable[[], Measured], list[Side]]]:
        _loggers()
        events = _events_of_one_transaction(url)
        raw_pool = ConnectionPool(url, min_size=POOL, max_size=POOL, open=True)
        raw_pool.wait()
        with contextlib.ExitStack() as stack:
            stack.callback(raw_pool.close)

            def layer(**options: Any) -> Any:
                db = connect(url, backend="psycopg", pool_size=POOL, max_overflow=0, **options)
                stack.callback(db.shutdown)
                return db

            def observed(label: str, name: str, settings: dict[str, Any], **notes: str) -> Side:
                try:
                    db = layer(name=f"bench_{name}", observers=[name], observer_options={name: settings})
                except Exception as exc:  # an observer that cannot be built: its row says why
                    return Side(label, skipped=f"{type(exc).__name__}: {exc}")
                notes["hooks alone"] = _hook_cost(db, events)
                return Side(label, run(db), baseline=NO_OBSERVER, notes=notes)

            sides = [
                Side(NO_OBSERVER, run(layer(name="no_observer"))),
                observed("logging, level off", "logging", {"logger": LOGGER_OFF}, logger="below DEBUG"),
                observed("logging, NullHandler", "logging", {"logger": LOGGER_ON}, logger="DEBUG to a NullHandler"),
                observed("prometheus", "prometheus", {"registry": CollectorRegistry()}),
            ]
            if otel_options is None:
                sides.append(Side("opentelemetry", skipped=otel_missing))
            else:
                sides.append(
                    observed("opentelemetry", "opentelemetry", otel_options, sdk="in-memory exporter and reader")
                )

            def raw() -> Measured:
                def go() -> None:
                    for _ in range(ops):
                        with raw_pool.connection() as conn:
                            conn.execute("SELECT 1").fetchone()

                return workloads._measured(go)

            yield raw, sides

    return [MultiWorkload("observers", "psycopg_pool", "tx/s", ops, observers, reset=otel_reset)]
