"""Replicas as configuration: the options, checked like every other one; the three ways to
build a database with replicas; secrets of replica URLs never shown. Nothing here needs the
throwaway servers (closed ports stand in for unreachable replicas)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from fake_servers import closed_port

from structum_lab.plugins.database import (
    ConfigurationError,
    PostgresDatabase,
    ReplicatedDatabase,
    SQLAlchemyDatabase,
    connect,
    from_config,
)
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

SECRET = "R3plica-s3cret"


def test_options_are_checked_before_anything_connects() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/db"
    with pytest.raises(ConfigurationError, match=r"replica_strategy.*one of 'round_robin', 'latency'"):
        connect(url, replicas=[url], replica_strategy="fastest")
    with pytest.raises(ConfigurationError, match=r"replica_max_lag.*>= 0"):
        connect(url, replicas=[url], replica_max_lag=-1)
    with pytest.raises(ConfigurationError, match="must be a list"):
        connect(url, replicas=42)
    with pytest.raises(ConfigurationError, match="without a 'url'"):
        connect(url, replicas=[{"pool_size": 1}])
    with pytest.raises(ConfigurationError, match="cannot have replicas of its own"):
        connect(url, replicas=[{"url": url, "replicas": [url]}])
    with pytest.raises(ConfigurationError, match="did you mean 'replica_fallback'"):
        connect(url, replicas=[url], replica_falback="error")
    with pytest.raises(ConfigurationError, match="read_your_writes = 'lsn' follows PostgreSQL"):
        connect("sqlite:///:memory:", replicas=["sqlite:///:memory:"])


def test_the_class_constructors_build_a_database_with_replicas() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/app"
    db = PostgresDatabase(url, replicas=[url, {"url": url, "pool_size": 1, "name": "reporting"}], pool_size=3)
    try:
        assert isinstance(db, ReplicatedDatabase) and isinstance(db.primary, PostgresDatabase)
        assert [r.name for r in db.replicas] == ["app/replica1", "reporting"]
        assert db.settings.min_size == 3  # what only the class has is the primary's  # type: ignore[attr-defined]
        assert [r.settings.min_size for r in db.replicas] == [3, 1]  # type: ignore[attr-defined]
    finally:
        db.shutdown()
    plain = PostgresDatabase(url, replica_strategy="latency")  # without replicas: an ordinary database
    assert type(plain) is PostgresDatabase
    plain.shutdown()
    sa = SQLAlchemyDatabase(url, replicas=[url])
    assert isinstance(sa, ReplicatedDatabase) and isinstance(sa.replicas[0], SQLAlchemyDatabase)
    assert sa.engine is sa.primary.engine  # type: ignore[attr-defined]
    sa.shutdown()


def test_any_backend_can_be_a_member(tmp_path: Path) -> None:
    # SQLite has no WAL positions: read-your-writes by a time window; the members' own health checks.
    with connect(
        f"sqlite:///{tmp_path}/primary.db", replicas=[f"sqlite:///{tmp_path}/copy.db"], read_your_writes="window"
    ) as db:
        db.replicas[0].execute("CREATE TABLE whoami (name TEXT)")
        db.replicas[0].execute("INSERT INTO whoami VALUES ('copy')")
        with db.transaction(readonly=True) as conn:
            assert conn.execute("SELECT name FROM whoami").scalar() == "copy"
        assert db.health_check().healthy


def test_from_config_reads_replicas_from_their_namespaces(tmp_path: Path) -> None:
    port = closed_port()
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text(
        f'[default]\nurl = "postgresql://app@127.0.0.1:{port}/app"\npool_size = 2\n'
        f'replicas = ["replica_db", {{ url = "postgresql://app:{SECRET}@127.0.0.1:{port}/app", pool_size = 1 }}]\n'
        'replica_strategy = "latency"\nread_your_writes_wait = 0.5\n'
    )
    (app / "replica_db.toml").write_text(
        f'[default]\nurl = "postgresql://app:{SECRET}@127.0.0.1:{port}/app"\npool_size = 4\n'
    )
    provider = DynaconfConfigProvider.discover(tmp_path)
    db = from_config("database", provider=provider)
    try:
        assert isinstance(db, ReplicatedDatabase)
        assert [r.name for r in db.replicas] == ["replica_db", "database/replica2"]
        assert [r.get_pool_info()["size"] for r in db.replicas] == [4, 1]  # a namespace is a database of its own
        assert SECRET not in repr(db) and SECRET not in str(db.get_pool_info())
    finally:
        db.shutdown()
    db = PostgresDatabase.from_config("database", provider=provider)
    assert isinstance(db, ReplicatedDatabase) and db.replicas[0].name == "replica_db"
    db.shutdown()
    shown = subprocess.run(
        [sys.executable, "-m", "structum_lab.plugins.database._integrations.cli", "config", "-n", "database"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "replicas" in shown.stdout and "app:***@" in shown.stdout
    assert SECRET not in shown.stdout + shown.stderr


def test_replica_secrets_never_show(caplog: pytest.LogCaptureFixture) -> None:
    primary = f"postgresql://postgres@127.0.0.1:{closed_port()}/app"
    replica = f"postgresql://app:{SECRET}@127.0.0.1:{closed_port()}/app"
    with caplog.at_level(logging.DEBUG):
        db = connect(primary, replicas=[replica], connect_timeout=2, health_check_timeout=2, replica_check_interval=0.1)
        try:
            health = db.health_check()
            assert health.details["members"][1]["status"] == "unhealthy"
            with pytest.raises(Exception) as failed, db.transaction(readonly=True):
                pass  # the replica is down: the primary, down too, fails
            texts = [repr(db), str(db.get_pool_info()), str(health.to_dict()), str(failed.value), caplog.text]
        finally:
            db.shutdown()
    assert all(SECRET not in text for text in texts)


def test_a_multi_host_primary_url_reaches_the_writable_server() -> None:
    replica = f"postgresql://postgres@127.0.0.1:{closed_port()}/app"
    two = "postgresql://app@127.0.0.1:5432,127.0.0.1:5433/app"
    db = connect(two, replicas=[replica])
    assert db.url == f"{two}?target_session_attrs=read-write"
    db.shutdown()
    db = connect(f"{two}?target_session_attrs=primary", replicas=[replica])  # the URL's own choice stays
    assert db.url.endswith("target_session_attrs=primary")
    db.shutdown()
    db = SQLAlchemyDatabase(two, replicas=[replica])
    assert db.url == f"{two}?target_session_attrs=read-write"
    db.shutdown()
