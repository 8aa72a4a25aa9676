"""Shared fixtures: real servers (skipped when unreachable unless STRUCTUM_REQUIRE_SERVERS=1)."""

from __future__ import annotations

import os
import socket
import textwrap
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from _roundtrips import RoundTripProxy
from fake_servers import SilentServer

PG_URL = os.environ.get("STRUCTUM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("STRUCTUM_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REQUIRE_SERVERS = os.environ.get("STRUCTUM_REQUIRE_SERVERS") == "1"


@cache
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip (or fail, in CI) when a server the test needs is not listening."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVERS:
        pytest.fail(f"{message} and STRUCTUM_REQUIRE_SERVERS=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pg_url() -> str:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    return PG_URL


@pytest.fixture
def round_trips(pg_url: str) -> Iterator[RoundTripProxy]:
    """A TCP proxy in front of PostgreSQL that counts round trips (``tests/_roundtrips.py``):
    connect through ``round_trips.url()``, then ``with round_trips.counting() as trips: ...``."""
    counting = RoundTripProxy()
    yield counting
    counting.close()


@pytest.fixture
def mysql_url() -> str:
    require_server("MariaDB/MySQL", "127.0.0.1", 3306)
    return MYSQL_URL


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A listener that accepts connections and never answers (a hung host)."""
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def table() -> str:
    """A unique table name, so tests can run side by side on one server."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _clean_structum_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STRUCTUM_* variable from the outer environment leaks into a test."""
    for key in list(os.environ):
        if (
            key.startswith("STRUCTUM_")
            and key not in {"STRUCTUM_REQUIRE_SERVERS"}
            and not key.startswith("STRUCTUM_TEST_")
        ):
            monkeypatch.delenv(key)


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards.

    Lets tests use the spec's table names (users, orders, ...) without colliding.
    """
    import psycopg

    schema = f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def mysql_db_url(mysql_url: str) -> Iterator[str]:
    """A MariaDB URL on a fresh database, dropped afterwards."""
    import pymysql

    name = f"d_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield mysql_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.fixture
def quick_start_project(tmp_path: Path, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project directory laid out as the spec's Quick Start says (``config/app/database.toml``,
    the URL of a fresh schema in ``config/.secrets.toml``), as the working directory; the
    config provider is reset afterwards."""
    from structum_lab.config import set_config_provider

    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        textwrap.dedent(
            """
            [default]
            url = "postgresql://user:password@localhost:5432/mydb"
            pool_size = 10
            pool_timeout = 30
            echo = false  # Set true to log SQL queries
            """
        )
    )
    (tmp_path / "config" / ".secrets.toml").write_text(f'[database]\nurl = "{pg_schema_url}"\n')
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    set_config_provider(None)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def any_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """The same test on SQLite, PostgreSQL (own schema) and MariaDB (own database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/any.db"
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_schema_url")).replace("postgresql://", "postgresql+psycopg://", 1)
    return str(request.getfixturevalue("mysql_db_url"))
