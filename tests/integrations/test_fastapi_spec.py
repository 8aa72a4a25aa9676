"""The spec's section 10 examples, as written, against the real PostgreSQL.

The glue is only what the spec leaves to the reader: imports, the ``UserCreate``
model, the ``users`` table, and configuration pointing at the test database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _fastapi_support import TestClient, pg_rows
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.middleware.base import BaseHTTPMiddleware

from structum_lab.plugins.database import (
    DatabaseInterface,
    SQLAlchemyDatabase,
    get_database,
    registered_databases,
    set_database,
)
from structum_lab.plugins.database.fastapi import database_lifespan

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("fastapi_isolation")]


class UserCreate(BaseModel):
    username: str
    email: str


@pytest.fixture
def url(pg_schema_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``users`` table in a fresh schema, configured as the default namespace."""
    pg_rows(
        pg_schema_url,
        "CREATE TABLE users (id SERIAL PRIMARY KEY, username VARCHAR(50) UNIQUE NOT NULL, email VARCHAR(255) NOT NULL)",
    )
    pg_rows(pg_schema_url, "INSERT INTO users (username, email) VALUES ('alice', 'alice@example.com')")
    pg_rows(pg_schema_url, "CREATE TABLE deferred (x INT UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", pg_schema_url)
    monkeypatch.setenv("STRUCTUM_DATABASE__BACKEND", "sqlalchemy")
    return pg_schema_url


# -- 10.1 Dependency Injection ---------------------------------------------------------------


def spec_10_1_app() -> FastAPI:
    app = FastAPI()

    # Database initialization
    @app.on_event("startup")
    async def startup():
        db = SQLAlchemyDatabase.from_config()
        set_database(db)

    @app.on_event("shutdown")
    async def shutdown():
        db = get_database()
        db.shutdown()

    # Dependency
    def get_db() -> DatabaseInterface:
        return get_database()

    # Route with injection
    @app.get("/users/{user_id}")
    async def get_user(user_id: int, db: DatabaseInterface = Depends(get_db)):  # noqa: B008
        with db.transaction() as conn:
            result = conn.execute("SELECT * FROM users WHERE id = :id", {"id": user_id})
            user = result.fetchone()

            if not user:
                raise HTTPException(status_code=404, detail="User not found")

            return {"id": user["id"], "username": user["username"]}

    return app


@pytest.mark.filterwarnings("ignore:\\s*on_event is deprecated:DeprecationWarning")
def test_10_1_dependency_injection_as_written(url: str) -> None:
    with TestClient(spec_10_1_app()) as client:
        db = get_database()
        assert isinstance(db, SQLAlchemyDatabase)
        assert client.get("/users/1").json() == {"id": 1, "username": "alice"}
        missing = client.get("/users/99")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "User not found"}
    with pytest.raises(Exception, match="shut down"), db.transaction():
        pass


@pytest.mark.filterwarnings("ignore:\\s*on_event is deprecated:DeprecationWarning")
def test_on_event_handlers_do_not_run_when_a_lifespan_is_given(url: str) -> None:
    events: list[str] = []
    app = FastAPI(lifespan=database_lifespan())

    @app.on_event("startup")
    async def startup() -> None:
        events.append("startup")

    with TestClient(app):
        assert "default" in registered_databases()
    assert events == []  # FastAPI ignores on_event handlers once lifespan= is passed


# -- 10.2 Transaction Middleware -----------------------------------------------------------


class TransactionMiddleware(BaseHTTPMiddleware):
    """Automatic transaction per request."""

    async def dispatch(self, request, call_next):
        db = get_database()

        with db.transaction() as conn:
            # Attach connection to request state
            request.state.db_conn = conn

            try:
                response = await call_next(request)
                # Transaction auto-commits on success
                return response
            except Exception:
                # Transaction auto-rollbacks on error
                raise


def spec_10_2_app(extra_routes: Callable[[FastAPI], None] | None = None) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan())  # glue: opens and registers the default database

    app.add_middleware(TransactionMiddleware)

    # Routes can access connection
    @app.post("/users")
    async def create_user(user: UserCreate, request: Request):
        conn = request.state.db_conn

        result = conn.execute(
            "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id", {"u": user.username, "e": user.email}
        )

        new_id = result.fetchone()["id"]
        return {"id": new_id}

    if extra_routes is not None:
        extra_routes(app)
    return app


def usernames(url: str) -> list[str]:
    return [row[0] for row in pg_rows(url, "SELECT username FROM users ORDER BY id")]


def test_10_2_transaction_middleware_as_written(url: str) -> None:
    with TestClient(spec_10_2_app()) as client:
        response = client.post("/users", json={"username": "bob", "email": "bob@example.com"})
        assert response.status_code == 200
        assert response.json() == {"id": 2}
        assert get_database().get_pool_info()["checked_out"] == 0
    assert usernames(url) == ["alice", "bob"]


def failing_routes(app: FastAPI) -> None:
    @app.post("/users/fail")
    async def fail(request: Request) -> None:
        request.state.db_conn.execute("INSERT INTO users (username, email) VALUES ('ghost', 'g@example.com')")
        raise RuntimeError("boom")

    @app.post("/users/conflict")
    async def conflict(request: Request) -> None:
        request.state.db_conn.execute("INSERT INTO users (username, email) VALUES ('kept', 'k@example.com')")
        raise HTTPException(status_code=409)

    @app.post("/users/deferred")
    async def deferred(request: Request) -> None:
        request.state.db_conn.execute("INSERT INTO deferred (x) VALUES (1), (1)")  # fails at COMMIT

    @app.get("/users/stream")
    async def stream(request: Request) -> StreamingResponse:
        conn = request.state.db_conn

        def body() -> Iterator[str]:
            yield "first line\n"
            yield str(conn.execute("SELECT count(*) FROM users").scalar())

        return StreamingResponse(body())


def test_10_2_middleware_rolls_back_when_the_handler_raises(url: str) -> None:
    with TestClient(spec_10_2_app(failing_routes), raise_server_exceptions=False) as client:
        assert client.post("/users/fail").status_code == 500
        assert client.post("/users", json={"username": "alice", "email": "dup@example.com"}).status_code == 500
        assert client.post("/users/deferred").status_code == 500
    assert usernames(url) == ["alice"]
    assert pg_rows(url, "SELECT count(*) FROM deferred") == [(0,)]


def test_10_2_middleware_limits_documented_in_docs(url: str) -> None:
    # docs/fastapi.md: an HTTPException is a response, not an error, to the middleware,
    # so it commits; and the transaction ends before a streaming body runs.
    with TestClient(spec_10_2_app(failing_routes), raise_server_exceptions=False) as client:
        assert client.post("/users/conflict").status_code == 409
        streamed: Any = client.get("/users/stream")
    assert usernames(url) == ["alice", "kept"]
    assert streamed.status_code == 200
    assert streamed.text == "first line\n"  # the second chunk failed: its connection was already closed
