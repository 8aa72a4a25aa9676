"""What the doc examples assume, by name: the ``setup=`` and ``check=`` of a doc-test mark.

A setup prepares the world a block runs in before it runs (tables, config files,
environment variables) and may give it names (``conn``, and the application's own helpers
that examples call, such as ``handle``). A check runs after the block and asserts what the
page says happened, observed from a connection of its own.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import logging
import textwrap
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import connect

Namespace = dict[str, Any]


class DocEnv:
    """The world of one doc example: a working directory, the servers, the names it gets."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.request = request
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.kind = "sqlite"
        self.names: Namespace = {}
        self.cleanups: list[Callable[[], None]] = []
        self.handled: list[tuple[Any, ...]] = []
        #: Every database created while the block runs (also those it dropped), to shut down.
        self.created: list[Any] = []
        self._record_databases()

    def _record_databases(self) -> None:
        from structum_lab.plugins.database.kit import AsyncEngineDatabase, EngineDatabase

        for cls in (EngineDatabase, AsyncEngineDatabase):
            attach = cls._attach

            def recording(db: Any, *args: Any, _attach: Any = attach, **kwargs: Any) -> None:
                self.created.append(db)
                _attach(db, *args, **kwargs)

            self.monkeypatch.setattr(cls, "_attach", recording)

    # -- the servers -----------------------------------------------------------------

    @property
    def dialect(self) -> str:
        if "pg" in self.kind or "psycopg" in self.kind:
            return "postgresql"
        return "mysql" if self.kind == "mysql" else "sqlite"

    @property
    def url(self) -> str:
        """The plain URL of the block's database: what a config file of the example would hold."""
        if self.dialect == "postgresql":
            return str(self.request.getfixturevalue("pg_schema_url"))
        if self.dialect == "mysql":
            return str(self.request.getfixturevalue("mysql_db_url"))
        return f"sqlite:///{self.tmp_path}/docs.db"

    def make_db(self) -> Any:
        """The ``db`` the block finds, by its ``db=`` kind (None for ``none``)."""
        from structum_lab.plugins.database import (
            AsyncPostgresDatabase,
            AsyncSQLAlchemyDatabase,
            PostgresDatabase,
            SQLAlchemyDatabase,
        )

        if self.kind == "none":
            return None
        url = self.url
        sqlalchemy_pg = url.replace("postgresql://", "postgresql+psycopg://", 1)
        factories: dict[str, Callable[[], Any]] = {
            "sqlite": lambda: SQLAlchemyDatabase(url),
            "mysql": lambda: SQLAlchemyDatabase(url),
            "psycopg": lambda: PostgresDatabase(url),
            "sqlalchemy-pg": lambda: SQLAlchemyDatabase(sqlalchemy_pg),
            "async-sqlite": lambda: AsyncSQLAlchemyDatabase(url),
            "async-psycopg": lambda: AsyncPostgresDatabase(url),
            "async-sqlalchemy-pg": lambda: AsyncSQLAlchemyDatabase(sqlalchemy_pg),
        }
        return factories[self.kind]()

    # -- seeing what happened, from a connection of its own ----------------------------

    def sql(self, *statements: str) -> None:
        db = connect(self.url)
        try:
            with db.transaction() as conn:
                for statement in statements:
                    conn.execute(statement)
        finally:
            db.shutdown()

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        db = connect(self.url)
        try:
            return [dict(row) for row in db.execute(sql, params).fetchall()]
        finally:
            db.shutdown()

    def write(self, relative: str, text: str) -> Path:
        path = self.tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path


# -- setups ------------------------------------------------------------------------------


def _tables(env: DocEnv) -> None:
    """Every table the examples use, with a few rows: accounts 1 and 2 (500 each), user 1
    ``jane``, order 1 without items, events of 2026-01-01."""
    key = {
        "sqlite": "id INTEGER PRIMARY KEY",
        "postgresql": "id SERIAL PRIMARY KEY",
        "mysql": "id INTEGER AUTO_INCREMENT PRIMARY KEY",
    }[env.dialect]
    ts = "DATETIME NULL" if env.dialect == "mysql" else "TIMESTAMP"
    env.sql(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
        "INSERT INTO accounts (id, balance) VALUES (1, 500), (2, 500)",
        "CREATE TABLE transfers (src INTEGER, dst INTEGER, amount INTEGER)",
        f"CREATE TABLE users ({key}, username VARCHAR(50) UNIQUE, name VARCHAR(50), email VARCHAR(255),"
        f" active BOOLEAN DEFAULT TRUE, created_at {ts}, last_login {ts})",
        "INSERT INTO users (username, name, email) VALUES ('jane', 'Jane', 'jane@example.com')",
        "CREATE TABLE profiles (user_id INTEGER, bio VARCHAR(255))",
        f"CREATE TABLE sessions ({key}, expires_at {ts})",
        "CREATE TABLE audit (user_id INTEGER, at TIMESTAMP NULL)",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY)",
        "CREATE TABLE order_items (order_id INTEGER, sku VARCHAR(50), UNIQUE (order_id, sku))",
        "CREATE TABLE events (id INTEGER PRIMARY KEY, day DATE, payload VARCHAR(255))",
        "INSERT INTO events (id, day, payload) VALUES (1, '2026-01-01', 'a'), (2, '2026-01-01', 'b')",
    )


def _imports(env: DocEnv) -> None:
    """``from structum_lab.plugins.database import *``, for blocks that leave out their imports
    (a block that goes on from an earlier one of its page, e.g. ``except IntegrityError:``)."""
    import structum_lab.plugins.database as package

    env.names.update({name: getattr(package, name) for name in package.__all__})


def _app(env: DocEnv) -> None:
    """The application's own names that examples call without defining them: ``handle``
    records its arguments, ``done`` says a loop may stop, ``log`` is a logger, ``now``,
    ``day``, ``rows`` (records for COPY) and ``user_id`` are values."""
    day = dt.date(2026, 1, 1)

    def handle(*args: Any) -> None:
        env.handled.append(args)

    async def ahandle(*args: Any) -> None:
        env.handled.append(args)

    env.names.update(
        handle=handle,
        ahandle=ahandle,
        done=lambda row: True,
        log=logging.getLogger("docs.example"),
        logger=logging.getLogger("docs.example"),
        now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        day=day,
        rows=[(10, day, "x"), (11, day, "y")],
        user_id=1,
    )


def _conn(env: DocEnv) -> None:
    """``conn``: a connection of ``db`` in an open transaction, committed and closed after the block."""
    db = env.names["db"]
    conn = db.get_connection()

    def close() -> None:
        try:
            conn.commit()
        finally:
            conn.close()

    env.cleanups.append(close)
    env.names["conn"] = conn


def _config(env: DocEnv) -> None:
    """A project directory (the working directory) with ``config/app/database.toml``,
    ``primary_db.toml`` and ``replica_db.toml``, each holding the block's database URL."""
    for namespace in ("database", "primary_db", "replica_db"):
        env.write(f"config/app/{namespace}.toml", f'[default]\nurl = "{env.url}"\npool_size = 2\n')


def _quickstart(env: DocEnv) -> None:
    """The Quick Start's project: ``config/app/database.toml`` exactly as docs/quickstart.md
    shows it, and a ``config/.secrets.toml`` whose URL is the block's database (the secrets
    file is where a deployment puts the real one)."""
    env.write(
        "config/app/database.toml",
        """
        [default]
        url = "postgresql://user:password@localhost:5432/mydb"
        pool_size = 10
        pool_timeout = 30
        echo = false  # Set true to log SQL queries
        """,
    )
    env.write("config/.secrets.toml", f'[database]\nurl = "{env.url}"\n')


def _env_url(env: DocEnv) -> None:
    """``STRUCTUM_DATABASE__URL`` (and ``STRUCTUM_PRIMARY_DB__URL``, ``STRUCTUM_REPLICA_DB__URL``)
    name the block's database: configuration by environment variables alone."""
    for namespace in ("DATABASE", "PRIMARY_DB", "REPLICA_DB"):
        env.monkeypatch.setenv(f"STRUCTUM_{namespace}__URL", env.url)


def _config_files(env: DocEnv) -> None:
    """The layout of docs/configuration-files.md: ``config/app/database.toml`` (its
    environments example), ``primary_db.toml``, and the secrets file of the page."""
    env.write(
        "config/app/database.toml",
        """
        [default]                       # applies in every environment
        url = "postgresql://localhost:5432/dev_db"
        pool_size = 5
        echo = true

        [default.options]
        pool_pre_ping = true
        connect_args = { connect_timeout = 10 }

        [production]                    # merged over [default] when production is active
        url = "postgresql://prod.db.internal:5432/prod_db"
        pool_size = 20
        echo = false

        [production.options]
        pool_use_lifo = true
        """,
    )
    env.write("config/app/primary_db.toml", '[default]\nurl = "postgresql://primary/app"\n')


def _secrets_file(env: DocEnv) -> None:
    """docs/configuration-files.md's ``config/.secrets.toml``."""
    env.write(
        "config/.secrets.toml",
        """
        [database]
        url = "postgresql://app_user:STRONG_PASSWORD@prod.db.example.com:5432/production"

        [database.options.connect_args]
        sslpassword = "..."

        [cache]                        # a namespace with no config/app/cache.toml is fine
        password = "..."
        """,
    )


def _production(env: DocEnv) -> None:
    env.monkeypatch.setenv("STRUCTUM_ENV", "production")


def _page_env_vars(env: DocEnv) -> None:
    """The environment variables of docs/configuration-files.md, section "Environment variables"."""
    for name, value in {
        "STRUCTUM_DATABASE__URL": "postgresql://localhost/test_db",
        "STRUCTUM_DATABASE__POOL_SIZE": "20",
        "STRUCTUM_DATABASE__OPTIONS__POOL_PRE_PING": "false",
        "STRUCTUM_PRIMARY_DB__URL": "postgresql://primary/app",
        "STRUCTUM_REPLICA_DB__URL": "postgresql://replica/app",
    }.items():
        env.monkeypatch.setenv(name, value)


def _provider(env: DocEnv) -> None:
    """``provider``: a ``DynaconfConfigProvider`` over the working directory, installed."""
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    provider = DynaconfConfigProvider.discover(str(env.tmp_path))
    set_config_provider(provider)
    env.names["provider"] = provider


def _password_env(env: DocEnv) -> None:
    """``STRUCTUM_DATABASE__PASSWORD=123456``: the password that TOML parsing turns into an int."""
    env.monkeypatch.setenv("STRUCTUM_DATABASE__PASSWORD", "123456")


def _otel(env: DocEnv) -> None:
    """``url`` (the block's database), ``tp`` and ``mp``: OpenTelemetry SDK providers of the test's own."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    env.names.update(url=env.url, tp=tp, mp=MeterProvider(metric_readers=[InMemoryMetricReader()]))
    env.names["_spans"] = exporter


def _fastapi(env: DocEnv) -> None:
    """FastAPI's ``TestClient`` for checks (and Starlette's httpx2 warning silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from fastapi.testclient import TestClient
    env.names["_TestClient"] = TestClient


def _pytest_module(env: DocEnv) -> None:
    """For a block that is a pytest test module: ``TEST_DATABASE_URL`` names the block's database
    (the check runs the module with pytest, with ``--structum-db-url`` set to it too)."""
    env.monkeypatch.setenv("TEST_DATABASE_URL", env.url)


#: setup name -> function; they run in the order the mark names them, after ``db`` exists.
SETUPS: dict[str, Callable[[DocEnv], None]] = {
    "tables": _tables,
    "imports": _imports,
    "app": _app,
    "conn": _conn,
    "config": _config,
    "quickstart": _quickstart,
    "env-url": _env_url,
    "config-files": _config_files,
    "secrets-file": _secrets_file,
    "production": _production,
    "page-env-vars": _page_env_vars,
    "provider": _provider,
    "password-env": _password_env,
    "otel": _otel,
    "fastapi": _fastapi,
    "pytest-module": _pytest_module,
}


# -- checks ------------------------------------------------------------------------------


def _balances(env: DocEnv) -> dict[int, int]:
    return {row["id"]: row["balance"] for row in env.rows("SELECT id, balance FROM accounts ORDER BY id")}


def check_transfer_committed(env: DocEnv, ns: Namespace) -> None:
    """100 moved from account 1 to account 2, committed."""
    assert _balances(env) == {1: 400, 2: 600}


def check_debited(env: DocEnv, ns: Namespace) -> None:
    """Account 1 lost 100, committed."""
    assert _balances(env)[1] == 400


def check_order_kept(env: DocEnv, ns: Namespace) -> None:
    """``create_order`` keeps the order when its items are rejected (a duplicate item)."""
    ns["create_order"](ns["db"], 7, ["sku-1", "sku-1"])
    assert env.rows("SELECT id FROM orders WHERE id = 7") == [{"id": 7}]
    assert env.rows("SELECT sku FROM order_items WHERE order_id = 7") == []
    ns["create_order"](ns["db"], 8, ["sku-1", "sku-2"])
    assert len(env.rows("SELECT sku FROM order_items WHERE order_id = 8")) == 2


def check_pipelined(env: DocEnv, ns: Namespace) -> None:
    """30 moved from 1 to 2 in one pipelined transaction; the sum read inside it is 1000."""
    assert _balances(env) == {1: 470, 2: 530}
    assert env.rows("SELECT src, dst, amount FROM transfers") == [{"src": 1, "dst": 2, "amount": 30}]


def check_pipelined_savepoint(env: DocEnv, ns: Namespace) -> None:
    """Only the failed INSERT was undone: both UPDATEs committed."""
    assert _balances(env) == {1: 0, 2: 1}


def check_handled(env: DocEnv, ns: Namespace) -> None:
    """The loop handed rows (or notifications) to ``handle``."""
    assert env.handled


def check_copied(env: DocEnv, ns: Namespace) -> None:
    assert ns["n"] == 2
    assert [row["id"] for row in env.rows("SELECT id FROM events WHERE id >= 10 ORDER BY id")] == [10, 11]


def check_production_namespace(env: DocEnv, ns: Namespace) -> None:
    """With production active, the database namespace resolves to the dict the page shows."""
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    shown = ast.literal_eval(ns["_source"])  # the block is that dict literal
    assert DynaconfConfigProvider.discover(str(env.tmp_path)).get_namespace("database") == shown


def check_password_raw(env: DocEnv, ns: Namespace) -> None:
    assert ns["item"].value == 123456
    assert ns["item"].raw == "123456"


def check_fastapi_app(env: DocEnv, ns: Namespace) -> None:
    """The application of docs/fastapi.md serves its routes: a write committed on primary_db,
    read back through replica_db (the same database here), a 404, /health and /pool."""
    with ns["_TestClient"](ns["app"]) as client:
        created = client.post("/users", json={"username": "ada", "email": "ada@example.com"})
        assert created.status_code == 200, created.text
        new_id = created.json()["id"]
        assert client.get(f"/users/{new_id}").json() == {"id": new_id, "username": "ada"}
        assert client.get("/users/999999").status_code == 404
        health = client.get("/health")
        assert health.status_code == 200, health.text
        assert set(health.json()["databases"]) == {"primary_db", "replica_db"}
        assert {"checked_out", "available", "total", "overflow"} <= set(client.get("/pool").json())
    assert env.rows("SELECT username FROM users WHERE username = 'ada'") == [{"username": "ada"}]


def check_otel_spans(env: DocEnv, ns: Namespace) -> None:
    """The observer sends its spans to the ``tp`` given in ``observer_options``."""
    ns["db"].execute("SELECT 1")
    assert ns["_spans"].get_finished_spans()


def check_quickstart_output(env: DocEnv, ns: Namespace) -> None:
    """The Quick Start found user 1 (and printed it; pytest captured the output)."""
    assert ns["user"]["username"] == "jane"


def check_orm(env: DocEnv, ns: Namespace) -> None:
    """The ORM example's writes, and the joint transaction's, are committed."""
    rows = env.rows("SELECT id, username, email FROM users ORDER BY id")
    assert rows == [
        {"id": 1, "username": "jane", "email": "newemail@example.com"},
        {"id": 2, "username": "ann", "email": "ann@example.com"},
    ]


def check_pytest_module(env: DocEnv, ns: Namespace) -> None:
    """The block is a test module: pytest runs it (in a process of its own) and every test passes."""
    import os
    import subprocess
    import sys

    module = env.write("test_doc_module.py", ns["_source"])
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module.name]
    command += ["--structum-db-url", env.url]
    done = subprocess.run(
        command, cwd=env.tmp_path, capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout


def check_health_endpoint(env: DocEnv, ns: Namespace) -> None:
    """The specification's endpoint answers the healthy shape."""
    with ns["_TestClient"](ns["app"]) as client:
        body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["database"]["status"] == "healthy"
    assert body["database"]["message"] == "Database connection OK"


def check_health_router(env: DocEnv, ns: Namespace) -> None:
    """health_router() reports the registered database: 200, healthy, no caching."""
    with ns["_TestClient"](ns["app"]) as client:
        response = client.get("/health")
    assert response.status_code == 200, response.text
    assert response.json()["databases"]["database"]["status"] == "healthy"
    assert response.headers["cache-control"] == "no-store"


#: check name -> function, run after the block with the block's namespace.
CHECKS: dict[str, Callable[[DocEnv, Namespace], None]] = {
    name.removeprefix("check_").replace("_", "-"): value
    for name, value in dict(globals()).items()
    if name.startswith("check_") and callable(value)
}


# -- shutting down what a block opened ---------------------------------------------------


def _is_database(value: object) -> bool:
    from structum_lab.plugins.database import AsyncReplicatedDatabase, ReplicatedDatabase
    from structum_lab.plugins.database.kit import AsyncEngineDatabase, EngineDatabase

    return isinstance(value, EngineDatabase | AsyncEngineDatabase | ReplicatedDatabase | AsyncReplicatedDatabase)


async def ashutdown_all(values: list[Any]) -> None:
    for value in values:
        result = value.shutdown()
        if asyncio.iscoroutine(result):
            await result


def databases_in(ns: Namespace, extra: list[Any]) -> list[Any]:
    """Every database object a block left in its namespace, plus ``extra``, each once."""
    from structum_lab.plugins.database import registered_databases, remove_database

    found: list[Any] = []
    for name, db in registered_databases().items():
        remove_database(name)
        found.append(db)
    found += [value for value in ns.values() if _is_database(value)]
    found += [value for value in extra if value is not None]
    unique: dict[int, Any] = {}
    for value in found:
        if not getattr(value, "closed", False):
            unique.setdefault(id(value), value)
    return list(unique.values())


@contextmanager
def working_directory_reset() -> Iterator[None]:
    set_config_provider(None)
    try:
        yield
    finally:
        set_config_provider(None)
