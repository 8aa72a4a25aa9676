"""The ``opentelemetry`` observer against the real PostgreSQL (psycopg backend) and SQLite
(SQLAlchemy backend), exported with the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

import importlib
import itertools
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from structum_lab.plugins.database import ConfigurationError, PoolTimeoutError, connect, connect_async
from structum_lab.plugins.database._integrations.observers.otel_summary import sanitize, summarize

PASSWORD = "s3cret-pw"
SCOPE = "structum_lab.plugins.database"


class Otel:
    """An SDK tracer and meter provider exporting to memory, and the options naming them."""

    def __init__(self, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.options = {
            "opentelemetry": {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider, **options}
        }

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer("test")

    def spans(self) -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if s.instrumentation_scope is not None and s.instrumentation_scope.name == SCOPE]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points (the observable instruments are read now)."""
        found: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                assert scope.scope.name == SCOPE
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def units(self) -> dict[str, str]:
        data = self.reader.get_metrics_data()
        metrics = [m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics] if data else []
        return {m.name: m.unit or "" for m in metrics}


def _with_password(url: str) -> str:
    secret = url.replace("://postgres@", f"://postgres:{PASSWORD}@", 1)
    if PASSWORD not in secret:
        pytest.skip("STRUCTUM_TEST_PG_URL does not have the postgres@ form this test puts a password in")
    return secret


def _schema_of(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[1]


@pytest.fixture
def otel() -> Otel:
    return Otel()


@pytest.fixture
def pg(pg_schema_url: str, otel: Otel) -> Iterator[Any]:
    db = connect(
        _with_password(pg_schema_url), backend="psycopg", observers=["opentelemetry"], observer_options=otel.options
    )
    try:
        yield db
    finally:
        db.shutdown()


def _by_name(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _everything(otel: Otel) -> str:
    """Every exported text: span names, attributes, status descriptions, events, metric attributes."""
    parts: list[str] = []
    for span in otel.exporter.get_finished_spans():
        parts += [span.name, repr(dict(span.attributes or {})), str(span.status.description)]
        parts += [repr(dict(e.attributes or {})) + e.name for e in span.events]
    for name, points in otel.metrics().items():
        parts.append(name)
        parts += [repr(dict(p.attributes)) for p in points]
    return "\n".join(parts)


# -- spans -------------------------------------------------------------------------------


def test_statement_and_commit_spans_follow_the_conventions_under_the_callers_span(pg: Any, otel: Otel) -> None:
    schema = _schema_of(pg.url)
    with otel.tracer.start_as_current_span("request") as parent, pg.transaction() as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO users (id, name) VALUES (:id, :name)", {"id": 1, "name": "ada"})
        conn.executemany(
            "INSERT INTO users (id, name) VALUES (:id, :name)", [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
        )
        assert conn.execute("SELECT count(*) FROM users WHERE id > :id", {"id": 0}).scalar() == 3
    spans = otel.spans()
    assert [s.name for s in spans] == [
        "CREATE TABLE users",
        "INSERT users",
        "BATCH INSERT users",
        "SELECT users",
        "COMMIT",
    ]
    request = next(s for s in otel.exporter.get_finished_spans() if s.name == "request")
    for span in spans:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.start_time is not None and span.end_time is not None and request.start_time is not None
        assert request.start_time <= span.start_time <= span.end_time <= (request.end_time or 0)
        assert span.status.status_code is StatusCode.UNSET
        attributes = dict(span.attributes or {})
        assert attributes["db.system.name"] == "postgresql"
        assert attributes["db.namespace"] == f"test|{schema}"  # database|schema, from the URL's search_path
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == 5432
        assert "error.type" not in attributes and "db.response.status_code" not in attributes
    # One after the other, in the order they ran.
    assert all((a.end_time or 0) <= (b.start_time or 0) for a, b in itertools.pairwise(spans))
    insert, batch, select, commit = (dict(s.attributes or {}) for s in spans[1:])
    assert insert["db.operation.name"] == "INSERT" and insert["db.query.summary"] == "INSERT users"
    assert insert["db.query.text"] == "INSERT INTO users (id, name) VALUES (:id, :name)"
    assert "db.operation.batch.size" not in insert
    assert batch["db.operation.name"] == "BATCH INSERT" and batch["db.operation.batch.size"] == 2
    assert batch["db.query.summary"] == "BATCH INSERT users"
    assert select["db.query.text"] == "SELECT count(*) FROM users WHERE id > :id"
    assert commit["db.operation.name"] == "COMMIT" and commit["db.query.text"] == "COMMIT"
    assert "ada" not in _everything(otel)  # a parameter value is never exported


def test_savepoints_and_rollback_get_spans(pg: Any, otel: Otel) -> None:
    with pg.transaction() as conn:
        with conn.transaction():
            conn.execute("SELECT 1")
        with pytest.raises(RuntimeError), conn.transaction():
            raise RuntimeError("undo the savepoint")
    with pytest.raises(RuntimeError), pg.transaction() as conn:
        conn.execute("SELECT 2")
        raise RuntimeError("undo the transaction")
    summaries = [dict(s.attributes or {}).get("db.query.summary") for s in otel.spans()]
    assert summaries == [
        "SAVEPOINT",
        "SELECT",
        "RELEASE SAVEPOINT",
        "SAVEPOINT",
        "ROLLBACK TO SAVEPOINT",
        "COMMIT",
        "SELECT",
        "ROLLBACK",
    ]
    names = [dict(s.attributes or {})["db.operation.name"] for s in otel.spans()]
    assert names == ["SAVEPOINT", "SELECT", "RELEASE", "SAVEPOINT", "ROLLBACK", "COMMIT", "SELECT", "ROLLBACK"]


def test_pipelined_statements_are_operations_of_their_own(pg: Any, otel: Otel) -> None:
    with otel.tracer.start_as_current_span("request"), pg.transaction(pipeline=True) as conn:
        conn.execute("SELECT :n::int AS n", {"n": 1})
        conn.execute("SELECT 2")
        conn.executemany("SELECT :n::int", [{"n": 3}, {"n": 4}])  # flushes the queue, then a batch
    spans = otel.spans()
    assert [s.name for s in spans] == ["SELECT", "SELECT", "BATCH SELECT", "COMMIT"]
    assert [dict(s.attributes or {}).get("db.operation.batch.size") for s in spans] == [None, None, 2, None]


def test_a_failed_statement_has_an_error_span_with_its_sqlstate(pg: Any, otel: Otel) -> None:
    with pg.transaction() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (:id)", {"id": 41})
    with otel.tracer.start_as_current_span("request"), pytest.raises(Exception) as caught:
        pg.execute("INSERT INTO t VALUES (:id)", {"id": 41})
    failed = _by_name(otel.spans(), "INSERT t")[-1]
    attributes = dict(failed.attributes or {})
    assert attributes["error.type"] == type(caught.value).__name__ == "IntegrityError"
    assert attributes["db.response.status_code"] == "23505"
    assert failed.status.status_code is StatusCode.ERROR
    # The server's message quotes the value (DETAIL: Key (id)=(41)); by default it stays out.
    assert failed.status.description == "IntegrityError (SQLSTATE 23505)"
    assert "(41)" not in _everything(otel)
    durations = otel.metrics()["db.client.operation.duration"]
    errors = [p for p in durations if p.attributes.get("error.type") == "IntegrityError"]
    assert len(errors) == 1 and errors[0].count == 1
    assert errors[0].attributes["db.response.status_code"] == "23505"


def test_capture_error_message_puts_the_masked_message_in_the_status(pg_url: str) -> None:
    otel = Otel(capture_error_message=True)
    db = connect(_with_password(pg_url), backend="psycopg", observers=["opentelemetry"], observer_options=otel.options)
    try:
        with pytest.raises(Exception, match="invalid input syntax"):
            db.execute(f"SELECT '{PASSWORD}'::int")
    finally:
        db.shutdown()
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert "invalid input syntax for type integer" in str(span.status.description)
    assert PASSWORD not in _everything(otel)  # in the SQL text and in the server's message: masked


def test_query_text_options(pg_url: str) -> None:
    dropped, sanitized = Otel(capture_query_text=False), Otel(sanitize_query_text=True)
    for otel in (dropped, sanitized):
        db = connect(pg_url, backend="psycopg", observers=["opentelemetry"], observer_options=otel.options)
        try:
            db.execute("SELECT 'active' AS status, 42 AS n, :x::text AS x", {"x": "bound"})
        finally:
            db.shutdown()
    (span,) = dropped.spans()
    assert "db.query.text" not in dict(span.attributes or {})
    assert span.name == "SELECT"
    (span,) = sanitized.spans()
    assert dict(span.attributes or {})["db.query.text"] == "SELECT ? AS status, ? AS n, :x::text AS x"


def test_no_secret_in_any_span_or_metric(pg: Any, otel: Otel) -> None:
    with otel.tracer.start_as_current_span("request"), pg.transaction() as conn:
        conn.execute(f"SELECT '{PASSWORD}' AS pw")  # the password written into the SQL itself
        conn.execute("SELECT :pw AS pw", {"pw": PASSWORD})
    with pytest.raises(Exception), pg.transaction() as conn:
        conn.execute(f"SELECT '{PASSWORD}'::int")
    text = _everything(otel)
    assert "db.query.text" in text and "db.client.connection.count" in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(otel.metrics())


# -- metrics -----------------------------------------------------------------------------


def test_operation_duration_and_connection_metrics(pg: Any, otel: Otel) -> None:
    for _ in range(3):
        pg.execute("SELECT 1")
    with pg.transaction() as conn:
        conn.execute("SELECT 2")
        busy = otel.metrics()  # read while this connection is lent out
        info = pg.get_pool_info()
    metrics = otel.metrics()
    units = otel.units()
    assert units["db.client.operation.duration"] == "s"
    assert units["db.client.connection.count"] == "{connection}"
    assert units["db.client.connection.pending_requests"] == "{request}"
    for name in ("create_time", "wait_time", "use_time"):
        assert units[f"db.client.connection.{name}"] == "s"

    (selects,) = [p for p in metrics["db.client.operation.duration"] if p.attributes["db.operation.name"] == "SELECT"]
    assert selects.count == 4 and selects.sum > 0
    assert tuple(selects.explicit_bounds) == (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
    assert dict(selects.attributes) == {
        "db.system.name": "postgresql",
        "db.namespace": f"test|{_schema_of(pg.url)}",
        "server.address": "127.0.0.1",
        "server.port": 5432,
        "db.operation.name": "SELECT",
        "db.query.summary": "SELECT",
    }
    (commit,) = [p for p in metrics["db.client.operation.duration"] if p.attributes["db.operation.name"] == "COMMIT"]
    assert commit.count == 1

    pool = {"db.client.connection.pool.name": pg.name}
    counts = {p.attributes["db.client.connection.state"]: p.value for p in busy["db.client.connection.count"]}
    assert counts["used"] == 1 and counts["idle"] == info["available"]
    assert all(dict(p.attributes) == {**pool, "db.client.connection.state": s} for s, p in zip(
        ("idle", "used"), busy["db.client.connection.count"], strict=True))  # fmt: skip
    idle = {p.attributes["db.client.connection.state"]: p.value for p in metrics["db.client.connection.count"]}
    assert idle["used"] == 0
    (maximum,) = metrics["db.client.connection.max"]
    assert maximum.value == info["max_size"] and dict(maximum.attributes) == pool
    (idle_max,) = metrics["db.client.connection.idle.max"]
    assert idle_max.value == info["max_size"]  # psycopg_pool keeps connections above min_size until max_idle
    (idle_min,) = metrics["db.client.connection.idle.min"]
    assert idle_min.value == info["min_size"]
    (pending,) = metrics["db.client.connection.pending_requests"]
    assert pending.value == 0
    (waits,) = metrics["db.client.connection.wait_time"]
    (uses,) = metrics["db.client.connection.use_time"]
    assert waits.count == 4 and uses.count == 4 and dict(waits.attributes) == pool
    assert waits.explicit_bounds[0] == 0.0001
    (created,) = metrics["db.client.connection.create_time"]
    assert created.count >= 1 and created.sum > 0


def test_pool_timeouts_are_counted(pg_url: str, otel: Otel) -> None:
    db = connect(
        pg_url,
        backend="psycopg",
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
        observers=["opentelemetry"],
        observer_options=otel.options,
    )
    try:
        holder = db.get_connection()
        try:
            with pytest.raises(PoolTimeoutError):
                db.execute("SELECT 1")
        finally:
            holder.close()
    finally:
        db.shutdown()
    (timeouts,) = otel.metrics()["db.client.connection.timeouts"]
    assert timeouts.value == 1 and dict(timeouts.attributes) == {"db.client.connection.pool.name": db.name}
    assert otel.units()["db.client.connection.timeouts"] == "{timeout}"


def test_one_instance_observes_several_databases(pg_url: str, tmp_path: Path, otel: Otel) -> None:
    first = connect(
        pg_url, backend="psycopg", name="orders", observers=["opentelemetry"], observer_options=otel.options
    )
    second = connect(pg_url, backend="psycopg", observers=["opentelemetry"], observer_options=otel.options)
    third = connect(pg_url, backend="psycopg", observers=["opentelemetry"], observer_options=otel.options)
    try:
        for db in (first, second, third):
            db.execute("SELECT 1")
        pools = {p.attributes["db.client.connection.pool.name"] for p in otel.metrics()["db.client.connection.max"]}
    finally:
        for db in (first, second, third):
            db.shutdown()
    # The same name twice (both default to the URL's database): the second is told apart.
    assert pools == {"orders", second.name, f"{third.name}#2"}
    assert len(otel.spans()) == 3


def test_sqlite_through_sqlalchemy(tmp_path: Path, otel: Otel) -> None:
    path = tmp_path / "app.db"
    db = connect(f"sqlite:///{path}", observers=["opentelemetry"], observer_options=otel.options)
    try:
        with otel.tracer.start_as_current_span("request") as parent, db.transaction() as conn:
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            conn.execute("INSERT INTO notes (body) VALUES (:body)", {"body": "x"})
        with pytest.raises(Exception) as caught:
            db.execute("SELECT * FROM missing_table")
        metrics = otel.metrics()
    finally:
        db.shutdown()
    spans = otel.spans()
    assert [s.name for s in spans] == ["CREATE TABLE notes", "INSERT notes", "COMMIT", "SELECT missing_table"]
    for span in spans[:3]:
        assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    attributes = dict(spans[0].attributes or {})
    assert attributes["db.system.name"] == "sqlite" and attributes["db.namespace"] == str(path)
    assert "server.address" not in attributes and "server.port" not in attributes
    assert spans[3].status.status_code is StatusCode.ERROR
    assert dict(spans[3].attributes or {})["error.type"] == type(caught.value).__name__ == "ProgrammingError"
    counts = {p.attributes["db.client.connection.state"]: p.value for p in metrics["db.client.connection.count"]}
    assert counts == {"idle": 1, "used": 0}
    (maximum,) = metrics["db.client.connection.max"]
    (idle_max,) = metrics["db.client.connection.idle.max"]
    info = db.get_pool_info()
    assert maximum.value == info["max_size"] and idle_max.value == info["size"]  # QueuePool closes overflow
    assert {p.attributes["db.operation.name"] for p in metrics["db.client.operation.duration"]} == {
        "CREATE",
        "INSERT",
        "COMMIT",
        "SELECT",
    }


def test_mysql_through_sqlalchemy(mysql_db_url: str, otel: Otel) -> None:
    db = connect(mysql_db_url, observers=["opentelemetry"], observer_options=otel.options)
    try:
        with db.transaction() as conn:
            conn.execute("CREATE TABLE `order` (id INT PRIMARY KEY, note VARCHAR(20))")
            conn.execute("INSERT INTO `order` (id, note) VALUES (:id, :note)", {"id": 1, "note": "x"})
        with pytest.raises(Exception) as caught:
            db.execute("INSERT INTO `order` (id, note) VALUES (:id, :note)", {"id": 1, "note": "dup"})
    finally:
        db.shutdown()
    spans = otel.spans()
    assert [s.name for s in spans] == ["CREATE TABLE `order`", "INSERT `order`", "COMMIT", "INSERT `order`"]
    attributes = dict(spans[0].attributes or {})
    assert attributes["db.system.name"] == "mysql"  # from the URL's dialect (the server may be MariaDB)
    assert attributes["db.namespace"] == mysql_db_url.rsplit("/", 1)[1]
    assert attributes["server.address"] == "127.0.0.1" and attributes["server.port"] == 3306
    failed = dict(spans[3].attributes or {})
    assert failed["error.type"] == type(caught.value).__name__ == "IntegrityError"
    assert failed["db.response.status_code"] == "23000"
    assert "dup" not in _everything(otel)


async def test_asyncio_spans_nest_under_the_tasks_span(pg_url: str, otel: Otel) -> None:
    db = connect_async(pg_url, backend="psycopg", observers=["opentelemetry"], observer_options=otel.options)
    try:
        with otel.tracer.start_as_current_span("request") as parent:
            async with db.transaction() as conn:
                await conn.execute("SELECT 1")
    finally:
        await db.shutdown()
    spans = otel.spans()
    assert [s.name for s in spans] == ["SELECT", "COMMIT"]
    assert all(s.parent is not None and s.parent.span_id == parent.get_span_context().span_id for s in spans)
    (point,) = [
        p for p in otel.metrics()["db.client.operation.duration"] if p.attributes["db.operation.name"] == "SELECT"
    ]
    assert point.count == 1


# -- failures and no-ops -------------------------------------------------------------------


class _RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("the collector is down")


class _RaisingTracerProvider(TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        real = super().get_tracer(*args, **kwargs)

        class Broken(trace.Tracer):
            def start_span(self, *a: Any, **k: Any) -> trace.Span:
                raise RuntimeError("a broken tracer")

            def start_as_current_span(self, *a: Any, **k: Any) -> Any:  # pragma: no cover - not used
                return real.start_as_current_span(*a, **k)

        return Broken()


def test_a_raising_exporter_or_tracer_does_not_break_the_query(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    exporting = Otel()
    exporting.tracer_provider.add_span_processor(SimpleSpanProcessor(_RaisingExporter()))
    broken = Otel()
    broken.tracer_provider = _RaisingTracerProvider()
    broken.options["opentelemetry"]["tracer_provider"] = broken.tracer_provider
    for otel in (exporting, broken):
        db = connect(pg_url, backend="psycopg", observers=["opentelemetry"], observer_options=otel.options)
        try:
            with caplog.at_level(logging.ERROR):
                for n in range(3):
                    assert db.execute("SELECT :n::int AS n", {"n": n}).scalar() == n
                with db.transaction() as conn:
                    assert conn.execute("SELECT 7").scalar() == 7
        finally:
            db.shutdown()
        (point,) = [
            p for p in otel.metrics()["db.client.operation.duration"] if p.attributes["db.operation.name"] == "SELECT"
        ]
        assert point.count == 4  # the metrics go on whatever happens to the spans
    assert len(exporting.spans()) == 5  # the SDK keeps the exporter's error to itself
    broken_logs = [r for r in caplog.records if "tracer raised" in r.getMessage()]
    assert len(broken_logs) == 1  # said once, then spans are off


def test_a_noop_tracer_provider_makes_no_spans(pg_url: str) -> None:
    otel = Otel()
    otel.options["opentelemetry"]["tracer_provider"] = trace.NoOpTracerProvider()
    db = connect(pg_url, backend="psycopg", observers=["opentelemetry"], observer_options=otel.options)
    try:
        db.execute("SELECT 1")
    finally:
        db.shutdown()
    assert otel.spans() == []
    assert "db.client.operation.duration" in otel.metrics()


def test_signals_can_be_turned_off(pg_url: str) -> None:
    otel = Otel(tracing=False, metrics=False)
    db = connect(pg_url, backend="psycopg", observers=["opentelemetry"], observer_options=otel.options)
    try:
        db.execute("SELECT 1")
    finally:
        db.shutdown()
    assert otel.spans() == [] and otel.metrics() == {}


def test_bad_options_fail_with_the_option_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="capture_query_text must be true or false"):
        connect(
            f"sqlite:///{tmp_path}/x.db",
            observers=["opentelemetry"],
            observer_options={"opentelemetry": {"capture_query_text": "yes"}},
        )
    with pytest.raises(ConfigurationError, match="tracer_provider must be an OpenTelemetry tracer provider"):
        connect(
            f"sqlite:///{tmp_path}/y.db",
            observers=["opentelemetry"],
            observer_options={"opentelemetry": {"tracer_provider": "global"}},
        )
    with pytest.raises(ConfigurationError, match="unexpected keyword argument 'sample_rate'"):
        connect(
            f"sqlite:///{tmp_path}/z.db",
            observers=["opentelemetry"],
            observer_options={"opentelemetry": {"sample_rate": 0.5}},
        )


def test_without_opentelemetry_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    module = "structum_lab.plugins.database._integrations.observers.otel"
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ConfigurationError, match=r'pip install "\./core\[opentelemetry\]"'):
        importlib.import_module(module)


# -- db.query.summary ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "summary"),
    [
        # The conventions' own examples (a string literal in FROM is not shown: it could be a value).
        ("SELECT * FROM wuser_table WHERE username = ?", "SELECT wuser_table"),
        (
            "INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders WHERE order_id = ?",
            "INSERT shipping_details SELECT orders",
        ),
        ("SELECT * FROM songs, artists WHERE songs.artist_id = artists.id", "SELECT songs artists"),
        (
            "SELECT order_date FROM (SELECT * FROM orders o JOIN customers c ON o.customer_id = c.customer_id)",
            "SELECT SELECT orders customers",
        ),
        ('SELECT * FROM "song list", artists', 'SELECT "song list" artists'),
        # Clauses that are not operations, functions that are not tables.
        ("SELECT * FROM t FOR UPDATE", "SELECT t"),
        ("INSERT INTO t (a) VALUES (:a) ON CONFLICT (a) DO UPDATE SET a = excluded.a", "INSERT t"),
        ("SELECT EXTRACT(YEAR FROM ts), REPLACE(a, 'x', 'y') FROM public.events", "SELECT public.events"),
        ("SELECT (SELECT max(a) FROM u), b FROM t", "SELECT SELECT u t"),
        ("SELECT * FROM generate_series(1, 3) g", "SELECT"),
        ("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent", "SELECT orders SELECT recent"),
        ("UPDATE ONLY accounts SET n = n + 1 FROM users WHERE users.id = accounts.uid", "UPDATE accounts users"),
        ("DELETE FROM sessions WHERE expires < now()", "DELETE sessions"),
        ("CREATE TABLE IF NOT EXISTS users (id int REFERENCES orgs(id) ON DELETE CASCADE)", "CREATE TABLE users"),
        ("DROP INDEX CONCURRENTLY idx_users_name", "DROP INDEX idx_users_name"),
        ("TRUNCATE TABLE users", "TRUNCATE users"),
        ("COPY users (id, name) FROM STDIN", "COPY users"),
        ("CALL refresh_totals(:day)", "CALL refresh_totals"),
        # Transaction control: keywords only, savepoint names are not kept.
        ("SAVEPOINT structum_sp_1", "SAVEPOINT"),
        ("ROLLBACK TO SAVEPOINT structum_sp_1", "ROLLBACK TO SAVEPOINT"),
        ("SET search_path TO tenant_42", "SET"),
        # Never a value: literals, dollar quotes and comments are skipped.
        ("SELECT * FROM t WHERE a = 'x FROM secret'", "SELECT t"),
        ("SELECT $q$ FROM secret $q$ FROM t", "SELECT t"),
        ("SELECT * FROM t WHERE a = E'it\\'s FROM secret'", "SELECT t"),
        ("/* FROM secret */ SELECT 1 -- FROM secret", "SELECT"),
        ("", ""),
    ],
)
def test_query_summary(sql: str, summary: str) -> None:
    assert summarize(sql) == summary


def test_query_summary_mysql_strings_and_the_length_limit() -> None:
    assert summarize('SELECT * FROM `order` WHERE a = "FROM secret"', True) == "SELECT `order`"
    long = " UNION ".join(f"SELECT * FROM table_{i:03d}" for i in range(60))
    summary = summarize(long)
    assert len(summary) <= 255 and summary.endswith(tuple(f"table_{i:03d}" for i in range(60)))


def test_sanitize_replaces_literals_only() -> None:
    sql = "SELECT * FROM t2 WHERE a = 'x' AND b = 42 AND c = $$y$$ AND d = :d AND e = $1 AND f = 1.5e3"
    assert sanitize(sql) == "SELECT * FROM t2 WHERE a = ? AND b = ? AND c = ? AND d = :d AND e = $1 AND f = ?"
    commented = "SELECT \"Col\" FROM t -- it's\nWHERE x = 'a''b'"
    assert sanitize(commented) == 'SELECT "Col" FROM t -- it\'s\nWHERE x = ?'
    assert sanitize("SELECT * FROM t WHERE a = \"pw\" AND b = 'x\\'y'", True) == "SELECT * FROM t WHERE a = ? AND b = ?"
