"""The ``prometheus`` observer on real servers: after a known workload the registry holds
the expected samples; the pool gauges follow ``get_pool_info()``; several databases and
several observers share one registry; no secret reaches a label."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from structum_lab.plugins.database import (
    ConfigurationError,
    DataError,
    PoolTimeoutError,
    connect,
    connect_async,
    hookimpl,
)
from structum_lab.plugins.database._config.manager import get_plugin_manager
from structum_lab.plugins.database._integrations.observers.prometheus import PrometheusObserver

PASSWORD = "s3cret-pw"

pytestmark = pytest.mark.postgres


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@contextlib.contextmanager
def registered(plugin: object) -> Iterator[None]:
    """``plugin`` observes every database during the block."""
    get_plugin_manager().register(plugin)
    try:
        yield
    finally:
        get_plugin_manager().unregister(plugin)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def pg(url: str, registry: CollectorRegistry, name: str, **options: Any) -> Any:
    return connect(
        url,
        backend="psycopg",
        name=name,
        observers=["prometheus"],
        observer_options={"prometheus": {"registry": registry}},
        **options,
    )


def test_known_workload(pg_schema_url: str, registry: CollectorRegistry) -> None:
    db = pg(with_password(pg_schema_url), registry, "main", pool_size=1, max_overflow=0, pool_timeout=0.2)
    labels = {"db_system": "postgresql", "db_name": "main"}
    try:
        db.execute("CREATE TABLE items (id INT PRIMARY KEY)")
        with db.transaction() as conn:  # 5 INSERTs and a COMMIT
            for i in range(5):
                conn.execute("INSERT INTO items VALUES (:id)", {"id": i})
        with pytest.raises(DataError):  # a failing statement
            db.execute("SELECT 1 / :zero", {"zero": 0})
        with pytest.raises(RuntimeError), db.transaction() as conn:  # a rollback
            conn.execute("INSERT INTO items VALUES (:id)", {"id": 99})
            raise RuntimeError("abandon")
        with db.get_connection(), pytest.raises(PoolTimeoutError):  # a pool timeout
            db.get_connection()
        assert db.execute("SELECT count(*) FROM items").scalar() == 5

        duration = "db_client_operation_duration_seconds_count"
        assert sample(registry, duration, **labels, operation="INSERT") == 6
        assert sample(registry, duration, **labels, operation="COMMIT") == 1
        assert sample(registry, duration, **labels, operation="ROLLBACK") == 1
        assert sample(registry, duration, **labels, operation="CREATE") == 1
        assert sample(registry, duration, **labels, operation="SELECT") == 2  # the failed one and the count
        insert_sum = sample(registry, "db_client_operation_duration_seconds_sum", **labels, operation="INSERT")
        assert insert_sum is not None
        assert 0 < insert_sum < 5
        errors = "db_client_operation_errors_total"
        assert sample(registry, errors, **labels, operation="SELECT", error_type="DataError") == 1
        assert sample(registry, errors, **labels, operation="INSERT", error_type="DataError") is None

        info = db.get_pool_info()
        assert sample(registry, "db_client_connection_timeouts_total", db_name="main") == 1 == info["timeouts"]
        assert sample(registry, "db_client_connection_wait_time_seconds_count", db_name="main") == info["checkouts"]
        assert sample(registry, "db_client_connection_use_time_seconds_count", db_name="main") == info["checkouts"]
        created = sample(registry, "db_client_connection_create_time_seconds_count", db_name="main")
        assert created is not None
        assert created >= 1
    finally:
        db.shutdown()


def test_gauges_follow_pool_info(pg_url: str, registry: CollectorRegistry) -> None:
    db = pg(pg_url, registry, "gauged", pool_size=1, max_overflow=0, pool_timeout=3)
    name = {"db_name": "gauged"}

    def gauges() -> tuple[float | None, ...]:
        return (
            sample(registry, "db_client_connection_count", **name, state="used"),
            sample(registry, "db_client_connection_count", **name, state="idle"),
            sample(registry, "db_client_connection_max", **name),
            sample(registry, "db_client_connection_pending_requests", **name),
        )

    try:
        db.execute("SELECT 1")
        info = db.get_pool_info()
        assert gauges() == (info["checked_out"], info["available"], info["max_size"], info["requests_waiting"])
        assert gauges() == (0, 1, 1, 0)

        held = db.get_connection()
        waiter = threading.Thread(target=lambda: db.execute("SELECT 1"))
        waiter.start()
        try:
            wait_for(lambda: db.get_pool_info().get("requests_waiting") == 1)
            assert gauges() == (1, 0, 1, 1)  # read at scrape time, not at the last event
        finally:
            held.close()
            waiter.join()
        assert gauges() == (0, 1, 1, 0)
    finally:
        db.shutdown()
    assert gauges() == (None, None, None, None)  # a shut-down database leaves the gauges


def test_garbage_collected_database_leaves_the_gauges(pg_url: str, registry: CollectorRegistry) -> None:
    db = pg(pg_url, registry, "collected")
    db.execute("SELECT 1")
    assert sample(registry, "db_client_connection_max", db_name="collected") == db.get_pool_info()["max_size"]
    db.shutdown()
    del db
    gc.collect()
    assert sample(registry, "db_client_connection_max", db_name="collected") is None
    # The counters stay: Prometheus counters never go back.
    assert sample(registry, "db_client_connection_timeouts_total", db_name="collected") == 0


def test_two_databases_get_their_own_labels(pg_url: str, registry: CollectorRegistry) -> None:
    alpha = pg(pg_url, registry, "alpha", pool_size=1, max_overflow=0)
    beta = pg(pg_url, registry, "beta", pool_size=2, max_overflow=1)
    try:
        for _ in range(2):
            alpha.execute("SELECT 1")
        for _ in range(3):
            beta.execute("SELECT 1")
        count = "db_client_operation_duration_seconds_count"
        assert sample(registry, count, db_system="postgresql", db_name="alpha", operation="SELECT") == 2
        assert sample(registry, count, db_system="postgresql", db_name="beta", operation="SELECT") == 3
        assert sample(registry, "db_client_connection_max", db_name="alpha") == 1
        assert sample(registry, "db_client_connection_max", db_name="beta") == 3
    finally:
        alpha.shutdown()
        beta.shutdown()


def test_observers_of_one_registry_share_the_metrics(pg_url: str, registry: CollectorRegistry) -> None:
    # Different options make different observer instances: no "Duplicated timeseries".
    first = pg(pg_url, registry, "shared_a")
    second = connect(
        pg_url,
        backend="psycopg",
        name="shared_b",
        observers=["prometheus"],
        observer_options={"prometheus": {"registry": registry, "buckets": [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                           0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]}},
    )  # fmt: skip
    try:
        first.execute("SELECT 1")
        second.execute("SELECT 1")
        count = "db_client_operation_duration_seconds_count"
        assert sample(registry, count, db_system="postgresql", db_name="shared_a", operation="SELECT") == 1
        assert sample(registry, count, db_system="postgresql", db_name="shared_b", operation="SELECT") == 1
    finally:
        first.shutdown()
        second.shutdown()
    with pytest.raises(ConfigurationError, match="buckets"):
        PrometheusObserver(registry=registry, buckets=[1.0, 2.0])
    named = PrometheusObserver(registry=registry, namespace="myapp", buckets=[1.0, 2.0])  # another family
    assert named.namespace == "myapp"


def test_namespace_prefixes_every_metric(pg_url: str, registry: CollectorRegistry) -> None:
    db = connect(
        pg_url,
        backend="psycopg",
        name="spaced",
        observers=["prometheus"],
        observer_options={"prometheus": {"registry": registry, "namespace": "myapp"}},
    )
    try:
        db.execute("SELECT 1")
        labels = {"db_system": "postgresql", "db_name": "spaced", "operation": "SELECT"}
        assert sample(registry, "myapp_db_client_operation_duration_seconds_count", **labels) == 1
        assert sample(registry, "myapp_db_client_connection_max", db_name="spaced") is not None
        assert sample(registry, "db_client_operation_duration_seconds_count", **labels) is None
    finally:
        db.shutdown()


def test_no_secret_in_any_label(pg_url: str, registry: CollectorRegistry) -> None:
    db = pg(with_password(pg_url), registry, "secretive", pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        db.execute("SELECT :v::text", {"v": PASSWORD})
        with pytest.raises(DataError):
            db.execute("SELECT :v::int", {"v": PASSWORD})
        with db.get_connection(), pytest.raises(PoolTimeoutError):
            db.get_connection()
        text = generate_latest(registry).decode()
        assert "secretive" in text
        assert PASSWORD not in text
        assert "SELECT :v" not in text  # never SQL text either
    finally:
        db.shutdown()


def test_raising_observer_is_disabled_and_the_query_goes_on(
    pg_url: str, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    class Broken(PrometheusObserver):
        @hookimpl
        def structum_database_statement_executed(self, database: Any, event: Any) -> None:
            calls.append(event.sql)
            raise ZeroDivisionError("observer bug")

    db = connect(pg_url, backend="psycopg", name="broken")
    try:
        with registered(Broken(registry=registry)), caplog.at_level(logging.ERROR, "structum_lab.plugins.database"):
            assert db.execute("SELECT 41 + 1").scalar() == 42
            assert db.execute("SELECT 2").scalar() == 2
    finally:
        db.shutdown()
    assert calls == ["SELECT 41 + 1"]
    reports = [r for r in caplog.records if "raised and is disabled" in r.getMessage()]
    assert len(reports) == 1
    assert "broken" in reports[0].getMessage()
    assert reports[0].exc_info is not None


def test_configuration_errors_name_the_problem(pg_url: str) -> None:
    with pytest.raises(ConfigurationError, match="no observer named 'prometheos'"):
        connect(pg_url, backend="psycopg", observers=["prometheos"])
    with pytest.raises(ConfigurationError, match="bucket"):
        connect(pg_url, backend="psycopg", observers=["prometheus"], observer_options={"prometheus": {"bucket": [1]}})
    with pytest.raises(ConfigurationError, match="namespace"):
        PrometheusObserver(registry=CollectorRegistry(), namespace="9a")
    with pytest.raises(ConfigurationError, match="increasing"):
        connect(
            pg_url,
            backend="psycopg",
            observers=["prometheus"],
            observer_options={"prometheus": {"registry": CollectorRegistry(), "buckets": [2, 1]}},
        )
    with pytest.raises(ConfigurationError, match="registry"):
        PrometheusObserver(registry="default")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="does not enable"):
        connect(pg_url, backend="psycopg", observers=["logging"], observer_options={"prometheus": {}})


async def test_asyncio_database(pg_url: str, registry: CollectorRegistry) -> None:
    db = connect_async(
        pg_url,
        backend="psycopg",
        name="async_main",
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
        observers=["prometheus"],
        observer_options={"prometheus": {"registry": registry}},
    )
    try:
        async with db.transaction() as conn:
            for _ in range(3):
                await conn.execute("SELECT 1")
        with pytest.raises(DataError):
            await db.execute("SELECT 1 / :zero", {"zero": 0})
        held = await db.get_connection()
        try:
            with pytest.raises(PoolTimeoutError):
                await db.get_connection()
            assert sample(registry, "db_client_connection_count", db_name="async_main", state="used") == 1
        finally:
            await held.close()
        await asyncio.sleep(0)
        labels = {"db_system": "postgresql", "db_name": "async_main"}
        count = "db_client_operation_duration_seconds_count"
        assert sample(registry, count, **labels, operation="SELECT") == 4
        assert sample(registry, count, **labels, operation="COMMIT") == 1
        errors = "db_client_operation_errors_total"
        assert sample(registry, errors, **labels, operation="SELECT", error_type="DataError") == 1
        assert sample(registry, "db_client_connection_timeouts_total", db_name="async_main") == 1
        assert sample(registry, "db_client_connection_count", db_name="async_main", state="used") == 0
    finally:
        await db.shutdown()


def test_sqlite_through_sqlalchemy(tmp_path: Path, registry: CollectorRegistry) -> None:
    db = connect(
        f"sqlite:///{tmp_path}/obs.db",
        name="lite",
        observers=["prometheus"],
        observer_options={"prometheus": {"registry": registry}},
    )
    try:
        with db.transaction() as conn:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            conn.execute("INSERT INTO t VALUES (1)")
        assert db.execute("SELECT count(*) FROM t").scalar() == 1
        labels = {"db_system": "sqlite", "db_name": "lite"}
        count = "db_client_operation_duration_seconds_count"
        assert sample(registry, count, **labels, operation="INSERT") == 1
        assert sample(registry, count, **labels, operation="SELECT") == 1
        # db.execute() on SQLite commits too (the SQLAlchemy backend ends its implicit transaction).
        commits = sample(registry, count, **labels, operation="COMMIT")
        assert commits is not None
        assert commits >= 1
        assert sample(registry, "db_client_connection_max", db_name="lite") == db.get_pool_info()["max_size"]
    finally:
        db.shutdown()


def test_grafana_dashboard_uses_the_exported_names(pg_url: str, registry: CollectorRegistry) -> None:
    """docs/grafana-dashboard.json is valid JSON and every series it queries is one this
    observer exports, with the labels it groups by."""
    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"DS_PROMETHEUS", "db_name"}
    db = pg(pg_url, registry, "dashboard", pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        with pytest.raises(DataError):
            db.execute("SELECT 1 / :zero", {"zero": 0})
        with db.get_connection(), pytest.raises(PoolTimeoutError):
            db.get_connection()
        exported = {sample.name: set(sample.labels) for family in registry.collect() for sample in family.samples}
    finally:
        db.shutdown()
    for expr in exprs:
        for name in re.findall(r"\b(db_client_[a-z_]+)\{", expr):
            assert name in exported, f"{name} (in {expr!r}) is not exported"
        for grouped in re.findall(r"by \(([^)]*)\)", expr):
            for label in (x.strip() for x in grouped.split(",")):
                assert any(label in labels for labels in exported.values()), f"no series has label {label!r}"


def test_missing_library_names_the_extra() -> None:
    """Without prometheus-client, enabling the observer says which extra to install."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        from structum_lab.plugins.database import ConfigurationError, connect
        try:
            connect("sqlite://", observers=["prometheus"])
        except ConfigurationError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert './core[prometheus]"' in done.stdout, done.stdout + done.stderr
    assert "pip install structum-database" not in done.stdout
