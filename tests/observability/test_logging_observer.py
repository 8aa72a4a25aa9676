"""The ``logging`` observer on real servers: one record per event with structured fields,
slow and failed statements at their levels, no parameter value and no secret unless asked."""

from __future__ import annotations

import contextlib
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import (
    ConfigurationError,
    DataError,
    IntegrityError,
    PoolTimeoutError,
    connect,
    connect_async,
    from_config,
    hookimpl,
)
from structum_lab.plugins.database._config.manager import get_plugin_manager
from structum_lab.plugins.database._integrations.observers.logs import DEFAULT_LOGGER, LoggingObserver

PASSWORD = "s3cret-pw"
VALUE = "TOP-SECRET-VALUE"

pytestmark = pytest.mark.postgres


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


@contextlib.contextmanager
def registered(plugin: object) -> Iterator[None]:
    get_plugin_manager().register(plugin)
    try:
        yield
    finally:
        get_plugin_manager().unregister(plugin)


def events(caplog: pytest.LogCaptureFixture, kind: str, logger: str = DEFAULT_LOGGER) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and getattr(r, "db_event", None) == kind]


def everything(record: logging.LogRecord) -> str:
    """What any handler or formatter could print of a record: its message and every attribute."""
    return record.getMessage() + " " + " ".join(repr(v) for v in vars(record).values())


def pg(url: str, name: str, options: dict[str, Any] | None = None, **more: Any) -> Any:
    return connect(
        url,
        backend="psycopg",
        name=name,
        observers=["logging"],
        observer_options={"logging": options} if options else None,
        **more,
    )


def test_known_workload(pg_schema_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = pg(pg_schema_url, "logged", pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        with caplog.at_level(logging.DEBUG, DEFAULT_LOGGER):
            db.execute("CREATE TABLE items (id INT PRIMARY KEY)")
            with db.transaction() as conn:
                for i in range(3):
                    conn.execute("INSERT INTO items VALUES (:id)", {"id": i})
            with pytest.raises(IntegrityError), db.transaction() as conn:
                conn.execute("INSERT INTO items VALUES (:id)", {"id": 1})
            with db.get_connection(), pytest.raises(PoolTimeoutError):
                db.get_connection()
            assert db.health_check().healthy
            db.shutdown()
    finally:
        db.shutdown()

    statements = events(caplog, "statement")
    ops = [r.db_operation for r in statements]  # type: ignore[attr-defined]
    assert ops == ["CREATE", "INSERT", "INSERT", "INSERT", "COMMIT", "INSERT", "ROLLBACK"]
    first = statements[1]
    assert first.levelno == logging.DEBUG
    assert first.db_name == "logged"  # type: ignore[attr-defined]
    assert first.db_system == "postgresql"  # type: ignore[attr-defined]
    assert first.db_backend == "psycopg"  # type: ignore[attr-defined]
    assert first.db_statement == "INSERT INTO items VALUES (:id)"  # type: ignore[attr-defined]
    assert first.rowcount == 1  # type: ignore[attr-defined]
    assert first.in_transaction is True  # type: ignore[attr-defined]
    assert first.duration_ms > 0  # type: ignore[attr-defined]
    assert not hasattr(first, "db_params")
    assert statements[0].in_transaction is False  # type: ignore[attr-defined]

    failed = statements[5]
    assert failed.levelno == logging.WARNING
    assert failed.error_type == "IntegrityError"  # type: ignore[attr-defined]
    assert failed.sqlstate == "23505"  # type: ignore[attr-defined]
    assert failed.rowcount == -1  # type: ignore[attr-defined]
    assert "IntegrityError" in failed.getMessage()
    assert "23505" in failed.getMessage()
    assert not hasattr(failed, "error_message")  # the server quotes the value in it

    transactions = [(r.db_transaction, r.error_type if hasattr(r, "error_type") else None)  # type: ignore[attr-defined]
                    for r in events(caplog, "transaction")]  # fmt: skip
    assert transactions == [("begin", None), ("commit", None), ("begin", None), ("rollback", "IntegrityError")]

    [exhausted] = events(caplog, "pool_exhausted")
    assert exhausted.levelno == logging.WARNING
    assert exhausted.pool_info["max_size"] == 1  # type: ignore[attr-defined]
    assert exhausted.pool_info["checked_out"] == 1  # type: ignore[attr-defined]
    assert exhausted.wait_ms >= 150  # type: ignore[attr-defined]

    [health] = events(caplog, "health")
    assert health.levelno == logging.DEBUG
    assert health.health_status == "healthy"  # type: ignore[attr-defined]

    connections = [r.db_connection for r in events(caplog, "connection")]  # type: ignore[attr-defined]
    assert "created" in connections
    assert "closed" in connections


def test_slow_statements_at_slow_level(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = pg(pg_url, "slowpoke", {"slow_ms": 150, "level": "INFO"})
    try:
        with caplog.at_level(logging.INFO, DEFAULT_LOGGER):
            db.execute("SELECT 1")
            db.execute("SELECT pg_sleep(0.2)")
    finally:
        db.shutdown()
    fast, slow = events(caplog, "statement")
    assert (fast.levelno, fast.slow) == (logging.INFO, False)  # type: ignore[attr-defined]
    assert (slow.levelno, slow.slow) == (logging.WARNING, True)  # type: ignore[attr-defined]
    assert slow.duration_ms >= 150  # type: ignore[attr-defined]
    assert slow.getMessage().startswith("database 'slowpoke': slow SELECT took")


def test_disabled_level_logs_nothing(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = pg(pg_url, "quiet", pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        with caplog.at_level(logging.WARNING, DEFAULT_LOGGER):
            with db.transaction() as conn:
                conn.execute("SELECT 1")
            with pytest.raises(DataError):
                db.execute("SELECT 1 / :zero", {"zero": 0})
            with db.get_connection(), pytest.raises(PoolTimeoutError):
                db.get_connection()
    finally:
        db.shutdown()
    kinds = [r.db_event for r in caplog.records if r.name == DEFAULT_LOGGER]  # type: ignore[attr-defined]
    assert kinds == ["statement", "pool_exhausted"]  # only the failure and the exhaustion reach WARNING


def test_no_value_and_no_password_unless_asked(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = pg(with_password(pg_url), "private", {"slow_ms": 0})
    try:
        with caplog.at_level(logging.DEBUG, DEFAULT_LOGGER):
            db.execute("SELECT :v::text", {"v": VALUE})
            with pytest.raises(DataError):
                db.execute("SELECT :v::int", {"v": VALUE})  # the server quotes the value in its message
            db.execute(f"SELECT '{PASSWORD}'")  # a secret written into the SQL itself
    finally:
        db.shutdown()
    records = [r for r in caplog.records if r.name == DEFAULT_LOGGER]
    assert len(events(caplog, "statement")) == 3
    for record in records:
        assert VALUE not in everything(record)
        assert PASSWORD not in everything(record)
    assert events(caplog, "statement")[2].db_statement == "SELECT '***'"  # type: ignore[attr-defined]


def test_log_parameters_adds_values_and_messages(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = pg(with_password(pg_url), "chatty", {"log_parameters": True})
    try:
        with caplog.at_level(logging.DEBUG, DEFAULT_LOGGER):
            db.execute("SELECT :v::text", {"v": VALUE})
            with pytest.raises(DataError):
                db.execute("SELECT :v::int", {"v": VALUE})
            db.execute("SELECT :pw::text", {"pw": PASSWORD})
    finally:
        db.shutdown()
    ok, failed, secret = events(caplog, "statement")
    assert VALUE in ok.db_params  # type: ignore[attr-defined]
    assert VALUE in ok.getMessage()
    assert VALUE in failed.error_message  # type: ignore[attr-defined]
    assert PASSWORD not in everything(secret)  # the URL's password stays masked even as a value


def test_custom_logger_and_levels(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = pg(pg_url, "custom", {"logger": "myapp.sql", "level": "INFO", "error_level": "ERROR"})
    try:
        with caplog.at_level(logging.INFO, "myapp.sql"):
            db.execute("SELECT 1")
            with pytest.raises(DataError):
                db.execute("SELECT 1 / :zero", {"zero": 0})
    finally:
        db.shutdown()
    ok, failed = events(caplog, "statement", logger="myapp.sql")
    assert (ok.levelno, failed.levelno) == (logging.INFO, logging.ERROR)


def test_config_file_and_environment(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        textwrap.dedent(
            f"""
            [default]
            url = "{pg_url}"
            backend = "psycopg"
            observers = ["logging"]

            [default.observer_options.logging]
            slow_ms = 100000
            """
        )
    )
    monkeypatch.setenv("STRUCTUM_DATABASE__OBSERVER_OPTIONS__LOGGING__LEVEL", "INFO")
    provider = DynaconfConfigProvider(tmp_path).auto_discover()
    try:
        db = from_config(provider=provider)
        try:
            with caplog.at_level(logging.INFO, DEFAULT_LOGGER):
                db.execute("SELECT 1")
        finally:
            db.shutdown()
    finally:
        set_config_provider(None)
    [record] = events(caplog, "statement")
    assert record.levelno == logging.INFO
    assert record.db_name == "database"  # type: ignore[attr-defined]
    observer = get_plugin_manager().named_observer("logging", {"slow_ms": 100000, "level": "INFO"})
    assert isinstance(observer, LoggingObserver)
    assert observer.slow_ms == 100000


def test_raising_observer_is_logged_once_and_disabled(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    class Broken(LoggingObserver):
        @hookimpl
        def structum_database_statement_executed(self, database: Any, event: Any) -> None:
            calls.append(event.sql)
            raise RuntimeError("observer bug")

    db = connect(pg_url, backend="psycopg", name="fragile")
    try:
        with registered(Broken()), caplog.at_level(logging.ERROR, "structum_lab.plugins.database"):
            with db.transaction() as conn:
                assert conn.execute("SELECT 6 * 7").scalar() == 42
            assert db.execute("SELECT 'still fine'").scalar() == "still fine"
    finally:
        db.shutdown()
    assert calls == ["SELECT 6 * 7"]
    reports = [r for r in caplog.records if "raised and is disabled" in r.getMessage()]
    assert len(reports) == 1
    assert "fragile" in reports[0].getMessage()


def test_bad_options_name_the_problem(pg_url: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown logging level 'LOUD'"):
        connect(pg_url, backend="psycopg", observers=["logging"], observer_options={"logging": {"level": "LOUD"}})
    with pytest.raises(ConfigurationError, match="slow_ms"):
        connect(pg_url, backend="psycopg", observers=["logging"], observer_options={"logging": {"slow_ms": -1}})
    with pytest.raises(ConfigurationError, match=r"'logging'.*slow"):
        connect(pg_url, backend="psycopg", observers=["logging"], observer_options={"logging": {"slow": 10}})
    with pytest.raises(ConfigurationError, match="log_parameters"):
        LoggingObserver(log_parameters="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no observer named 'loging'"):
        connect(pg_url, backend="psycopg", observers=["loging"])


async def test_asyncio_database(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = connect_async(pg_url, backend="psycopg", name="async_logged", observers=["logging"])
    try:
        with caplog.at_level(logging.DEBUG, DEFAULT_LOGGER):
            async with db.transaction() as conn:
                await conn.execute("SELECT 1")
            with pytest.raises(DataError):
                await db.execute("SELECT 1 / :zero", {"zero": 0})
    finally:
        await db.shutdown()
    statements = events(caplog, "statement")
    assert [(r.db_operation, r.levelno) for r in statements] == [  # type: ignore[attr-defined]
        ("SELECT", logging.DEBUG),
        ("COMMIT", logging.DEBUG),
        ("SELECT", logging.WARNING),
    ]
    assert {r.db_name for r in statements} == {"async_logged"}  # type: ignore[attr-defined]


def test_sqlite_through_sqlalchemy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = connect(f"sqlite:///{tmp_path}/logged.db", name="lite", observers=["logging"])
    try:
        with caplog.at_level(logging.DEBUG, DEFAULT_LOGGER), db.transaction() as conn:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            conn.execute("INSERT INTO t VALUES (:id)", {"id": 1})
    finally:
        db.shutdown()
    statements = events(caplog, "statement")
    assert [r.db_operation for r in statements] == ["CREATE", "INSERT", "COMMIT"]  # type: ignore[attr-defined]
    assert {(r.db_system, r.db_backend) for r in statements} == {("sqlite", "sqlalchemy")}  # type: ignore[attr-defined]
