"""The FastAPI integration against the real PostgreSQL: lifespan, dependencies, transactions."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest
from _fastapi_support import TestClient, pg_rows
from fastapi import Depends, FastAPI, HTTPException, Request

from structum_lab.plugins.database import (
    AsyncConnection,
    AsyncDatabaseInterface,
    ConfigurationError,
    Connection,
    DatabaseError,
    DatabaseInterface,
    connect,
    get_database,
    registered_databases,
    set_database,
)
from structum_lab.plugins.database import fastapi as integration
from structum_lab.plugins.database._integrations import fastapi_lifespan as _fastapi_lifespan
from structum_lab.plugins.database.fastapi import (
    DB,
    AsyncDB,
    AsyncDBTransaction,
    AsyncTransaction,
    DBTransaction,
    Transaction,
    async_database_dependency,
    database_dependency,
    database_lifespan,
    db_transaction,
    get_db,
)

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("fastapi_isolation")]

Configure = Callable[..., None]


@pytest.fixture
def url(pg_schema_url: str) -> str:
    """A fresh schema with the tables these tests write to."""
    pg_rows(pg_schema_url, "CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
    pg_rows(pg_schema_url, "CREATE TABLE deferred (x INT UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    return pg_schema_url


def names(url: str) -> list[str]:
    return [row[0] for row in pg_rows(url, "SELECT name FROM items ORDER BY id")]


# -- packaging ---------------------------------------------------------------------------


def test_core_import_does_not_import_fastapi() -> None:
    code = "import sys, structum_lab.plugins.database; print('fastapi' in sys.modules, 'starlette' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_missing_fastapi_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "try:\n"
        "    import structum_lab.plugins.database.fastapi\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "fastapi>=0.121"' in out


def test_dependency_kinds() -> None:
    # Sync transactions are generator functions (FastAPI runs them in its threadpool),
    # async ones async generators (run on the loop); lookups are async (no I/O, no thread hop).
    assert inspect.isgeneratorfunction(db_transaction)
    assert inspect.isasyncgenfunction(integration.async_db_transaction)
    assert inspect.iscoroutinefunction(get_db)
    assert database_dependency("replica_db") is database_dependency("replica_db")
    assert integration.transaction_dependency() is db_transaction
    for alias in (DBTransaction, AsyncDBTransaction):
        assert alias.__metadata__[0].scope == "function"


# -- lifespan with two namespaces (spec 9.2/9.3) ------------------------------------------


def two_database_app(**lifespan_options: Any) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan("primary_db", "replica_db", **lifespan_options))

    @app.post("/items/{name}")
    def create(name: str, conn: DBTransaction) -> dict[str, int]:
        return {"id": conn.execute("INSERT INTO items (name) VALUES (:n) RETURNING id", {"n": name}).scalar()}

    @app.get("/items")
    def read(conn: Annotated[Connection, Transaction("replica_db")]) -> list[str]:
        return [row["name"] for row in conn.execute("SELECT name FROM items ORDER BY id")]

    @app.get("/names")
    async def which(
        db: DB, replica: Annotated[DatabaseInterface, Depends(database_dependency("replica_db"))]
    ) -> dict[str, str]:
        return {"default": db.name, "replica": replica.name}

    return app


def test_lifespan_opens_registers_and_shuts_down_two_databases(url: str, configure: Configure, db_backend: str) -> None:
    configure("primary_db", url)
    configure("replica_db", url, pool_size=2)
    app = two_database_app()
    with TestClient(app) as client:
        registered = registered_databases()
        primary, replica = registered["primary_db"], registered["replica_db"]
        assert registered["default"] is primary
        assert primary.backend == replica.backend == db_backend
        assert replica.get_pool_info()["size"] == 2

        assert client.post("/items/alice").json() == {"id": 1}
        assert client.post("/items/bob").json() == {"id": 2}
        assert client.get("/items").json() == ["alice", "bob"]
        assert client.get("/names").json() == {"default": "primary_db", "replica": "replica_db"}
        assert names(url) == ["alice", "bob"]

    assert not {"primary_db", "replica_db", "default"} & set(registered_databases())
    for db in (primary, replica):
        with pytest.raises(DatabaseError, match="shut down"), db.transaction():  # type: ignore[union-attr]
            pass


def test_default_can_be_chosen_or_left_out(url: str, configure: Configure) -> None:
    configure("primary_db", url)
    configure("replica_db", url)
    with TestClient(FastAPI(lifespan=database_lifespan("primary_db", "replica_db", default="replica_db"))):
        assert get_database().name == "replica_db"
    with TestClient(FastAPI(lifespan=database_lifespan("primary_db", "replica_db", default=False))):
        assert "default" not in registered_databases()
    with pytest.raises(ConfigurationError, match="not one of the namespaces"):
        database_lifespan("primary_db", default="replcia_db")


def test_a_replaced_registration_is_put_back(url: str, configure: Configure) -> None:
    configure("database", url)
    earlier = connect(url, backend="sqlalchemy", name="earlier")
    set_database(earlier)
    try:
        with TestClient(FastAPI(lifespan=database_lifespan())):  # namespace "database"
            assert get_database().name == "database"
        assert get_database() is earlier
    finally:
        earlier.shutdown()


def test_startup_failure_shuts_down_the_databases_already_opened(
    url: str, configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure("primary_db", url)  # replica_db has no URL anywhere
    opened: list[DatabaseInterface] = []
    real = _fastapi_lifespan.from_config

    def recording(namespace: str, **kwargs: Any) -> DatabaseInterface:
        db = real(namespace, **kwargs)
        opened.append(db)
        return db

    monkeypatch.setattr(_fastapi_lifespan, "from_config", recording)
    app = two_database_app()
    with pytest.raises(ConfigurationError, match="replica_db") as caught, TestClient(app):
        pass
    assert "while opening database 'replica_db' at application startup; 'primary_db' shut down again" in (
        caught.value.__notes__
    )
    assert [db.name for db in opened] == ["primary_db"]
    with pytest.raises(DatabaseError, match="shut down"), opened[0].transaction():
        pass
    assert not {"primary_db", "default"} & set(registered_databases())


# -- composing with the user's own lifespan ------------------------------------------------


def _async_gen_lifespan(events: list[str]) -> Callable[[Any], Any]:
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append(f"user startup sees {get_database('primary_db').name}")
        yield {"greeting": "hello"}
        events.append(f"user shutdown sees {get_database('primary_db').name}")

    return lifespan


def _context_manager_lifespan(events: list[str]) -> Callable[[Any], Any]:
    return asynccontextmanager(_async_gen_lifespan(events))


def _sync_gen_lifespan(events: list[str]) -> Callable[[Any], Any]:
    def lifespan(app: FastAPI) -> Iterator[dict[str, Any]]:
        events.append(f"user startup sees {get_database('primary_db').name}")
        yield {"greeting": "hello"}
        events.append(f"user shutdown sees {get_database('primary_db').name}")

    return lifespan


@pytest.mark.parametrize("make", [_async_gen_lifespan, _context_manager_lifespan, _sync_gen_lifespan])
def test_user_lifespan_runs_inside_with_its_state(
    url: str, configure: Configure, make: Callable[[list[str]], Any]
) -> None:
    configure("primary_db", url)
    events: list[str] = []
    app = FastAPI(lifespan=database_lifespan("primary_db", lifespan=make(events)))

    @app.get("/greeting")
    async def greeting(request: Request, db: DB) -> dict[str, str]:
        return {"greeting": request.state.greeting, "db": db.name}

    with TestClient(app) as client:
        assert client.get("/greeting").json() == {"greeting": "hello", "db": "primary_db"}
    assert events == ["user startup sees primary_db", "user shutdown sees primary_db"]
    assert "primary_db" not in registered_databases()


def test_sync_and_async_lifespans_nest(url: str, configure: Configure) -> None:
    configure("primary_db", url)
    configure("analytics", url)
    app = FastAPI(
        lifespan=database_lifespan("analytics", async_=True, default=False, lifespan=database_lifespan("primary_db"))
    )

    @app.get("/kinds")
    async def kinds(
        db: DB, analytics: Annotated[AsyncDatabaseInterface, Depends(async_database_dependency("analytics"))]
    ) -> list[str]:
        return [type(db).__name__, type(analytics).__name__]

    with TestClient(app) as client:
        sync_name, async_name = client.get("/kinds").json()
        assert not sync_name.startswith("Async") and async_name.startswith("Async")
    assert not {"primary_db", "analytics", "default"} & set(registered_databases())


# -- the per-request transaction, sync ------------------------------------------------------


def sync_app(url: str, configure: Configure) -> FastAPI:
    configure("database", url)
    app = FastAPI(lifespan=database_lifespan())

    @app.post("/items/{name}")
    def create(name: str, conn: DBTransaction) -> dict[str, str]:
        conn.execute("INSERT INTO items (name) VALUES (:n)", {"n": name})
        if name.startswith("boom"):
            raise RuntimeError("the handler failed after writing")
        if name.startswith("conflict"):
            raise HTTPException(409, "conflict")
        return {"created": name}

    @app.post("/deferred")
    def deferred(conn: DBTransaction) -> dict[str, bool]:
        conn.execute("INSERT INTO deferred (x) VALUES (1), (1)")  # checked only at COMMIT
        conn.execute("INSERT INTO items (name) VALUES ('lost')")
        return {"ok": True}

    return app


def test_sync_transaction_commits_after_the_handler(url: str, configure: Configure) -> None:
    with TestClient(sync_app(url, configure)) as client:
        assert client.post("/items/kept").json() == {"created": "kept"}
    assert names(url) == ["kept"]


def test_sync_transaction_rolls_back_when_the_handler_raises(url: str, configure: Configure) -> None:
    with TestClient(sync_app(url, configure), raise_server_exceptions=False) as client:
        assert client.post("/items/boom").status_code == 500
        assert client.post("/items/conflict").status_code == 409
        assert client.post("/items/kept").status_code == 200
        assert registered_databases()["default"].get_pool_info()["checked_out"] == 0
    assert names(url) == ["kept"]


def test_sync_commit_failure_answers_500_not_200(url: str, configure: Configure) -> None:
    with TestClient(sync_app(url, configure), raise_server_exceptions=False) as client:
        response = client.post("/deferred")
    assert response.status_code == 500
    assert pg_rows(url, "SELECT count(*) FROM deferred") == [(0,)]
    assert names(url) == []


def test_the_commit_error_reaches_the_server_as_an_integrity_error(url: str, configure: Configure) -> None:
    from structum_lab.plugins.database import IntegrityError

    with TestClient(sync_app(url, configure)) as client, pytest.raises(IntegrityError):
        client.post("/deferred")


def test_without_function_scope_a_failed_commit_still_answers_200(url: str, configure: Configure) -> None:
    # Why the dependency must be declared with scope="function" (DBTransaction, Transaction()):
    # FastAPI's default scope ends it after the response has been sent.
    configure("database", url)
    app = FastAPI(lifespan=database_lifespan())

    @app.post("/deferred")
    def deferred(conn: Annotated[Connection, Depends(db_transaction)]) -> dict[str, bool]:
        conn.execute("INSERT INTO deferred (x) VALUES (1), (1)")
        return {"ok": True}

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/deferred").status_code == 200
    assert pg_rows(url, "SELECT count(*) FROM deferred") == [(0,)]


def test_sync_dependency_runs_off_the_event_loop(url: str, configure: Configure) -> None:
    app = sync_app(url, configure)
    threads: dict[str, int] = {}

    @app.get("/loop")
    async def loop_thread() -> None:
        threads["loop"] = threading.get_ident()

    with TestClient(app) as client:
        db = registered_databases()["default"]
        real = db.get_connection

        def spying() -> Any:
            threads["checkout"] = threading.get_ident()
            return real()  # type: ignore[operator]

        db.get_connection = spying  # type: ignore[method-assign,union-attr]
        client.get("/loop")
        assert client.post("/items/kept").status_code == 200
    assert threads["checkout"] != threads["loop"]


def test_sync_transaction_on_an_async_database_is_a_clear_error(url: str, configure: Configure) -> None:
    configure("database", url)
    app = FastAPI(lifespan=database_lifespan(async_=True))

    @app.get("/wrong")
    def wrong(conn: DBTransaction) -> None:
        pass

    with TestClient(app) as client, pytest.raises(ConfigurationError, match=r"asynchronous.*AsyncTransaction"):
        client.get("/wrong")


# -- the per-request transaction, async -----------------------------------------------------


def async_app(url: str, configure: Configure) -> FastAPI:
    configure("primary_db", url)
    configure("replica_db", url)
    app = FastAPI(lifespan=database_lifespan("primary_db", "replica_db", async_=True))

    @app.post("/items/{name}")
    async def create(name: str, conn: AsyncDBTransaction) -> dict[str, str]:
        await conn.execute("INSERT INTO items (name) VALUES (:n)", {"n": name})
        if name.startswith("boom"):
            raise RuntimeError("the handler failed after writing")
        return {"created": name}

    @app.get("/items")
    async def read(conn: Annotated[AsyncConnection, AsyncTransaction("replica_db")]) -> list[str]:
        result = await conn.execute("SELECT name FROM items ORDER BY id")
        return [row["name"] for row in await result.fetchall()]

    @app.post("/deferred")
    async def deferred(conn: AsyncDBTransaction) -> dict[str, bool]:
        await conn.execute("INSERT INTO deferred (x) VALUES (1), (1)")
        return {"ok": True}

    @app.get("/db")
    async def which(db: AsyncDB) -> dict[str, str]:
        result = await db.health_check()
        return {"name": db.name, "health": result.status.value}

    return app


def test_async_database_dependencies(url: str, configure: Configure, db_backend: str) -> None:
    with TestClient(async_app(url, configure), raise_server_exceptions=False) as client:
        assert registered_databases()["default"].backend == db_backend
        assert client.get("/db").json() == {"name": "primary_db", "health": "healthy"}
        assert client.post("/items/kept").json() == {"created": "kept"}
        assert client.post("/items/boom").status_code == 500
        assert client.get("/items").json() == ["kept"]
        assert client.post("/deferred").status_code == 500
        for db in registered_databases().values():
            assert db.get_pool_info()["checked_out"] == 0
    assert names(url) == ["kept"]
    assert pg_rows(url, "SELECT count(*) FROM deferred") == [(0,)]


def test_async_transaction_on_a_sync_database_is_a_clear_error(url: str, configure: Configure) -> None:
    configure("database", url)
    app = FastAPI(lifespan=database_lifespan())

    @app.get("/wrong")
    async def wrong(conn: AsyncDBTransaction) -> None:
        pass

    with TestClient(app) as client, pytest.raises(ConfigurationError, match=r"synchronous.*Transaction"):
        client.get("/wrong")


# -- sharing and overriding ------------------------------------------------------------------


def test_one_transaction_per_request_and_name(url: str, configure: Configure) -> None:
    configure("database", url)
    app = FastAPI(lifespan=database_lifespan())

    def helper(conn: DBTransaction) -> Connection:
        return conn

    @app.get("/same")
    def same(conn: DBTransaction, other: Connection = Depends(helper)) -> bool:  # noqa: B008
        return conn is other

    with TestClient(app) as client:
        assert client.get("/same").json() is True


def test_dependency_overrides_replace_the_transaction(url: str, configure: Configure) -> None:
    app = sync_app(url, configure)
    executed: list[Any] = []

    class RecordingConnection:
        def execute(self, sql: str, params: Any = None) -> None:
            executed.append(params)

    def fake_transaction() -> Iterator[Any]:
        yield RecordingConnection()

    app.dependency_overrides[db_transaction] = fake_transaction
    with TestClient(app) as client:
        assert client.post("/items/recorded").status_code == 200
    assert executed == [{"n": "recorded"}]
    assert names(url) == []
