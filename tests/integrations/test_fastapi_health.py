"""The health router: spec section 8.2's JSON, status codes, and application/health+json."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from _fastapi_support import TestClient, closed_port
from fastapi import FastAPI

from structum_lab.plugins.database import HealthCheckResult, HealthStatus, set_database
from structum_lab.plugins.database.fastapi import database_lifespan, health_router

pytestmark = pytest.mark.usefixtures("fastapi_isolation")

Configure = Callable[..., None]
PASSWORD = "s3cret-Pa55"


def app_with(*namespaces: str, async_: bool = False, **router_options: Any) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(*namespaces, async_=async_))
    app.include_router(health_router(**router_options))
    return app


@pytest.mark.postgres
@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
def test_two_healthy_databases(pg_url: str, configure: Configure, async_: bool) -> None:
    configure("primary_db", pg_url)
    configure("replica_db", pg_url)
    with TestClient(app_with("primary_db", "replica_db", async_=async_)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "healthy"
    assert "database" not in body  # several databases: keyed by name only
    assert list(body["databases"]) == ["primary_db", "replica_db"]  # "default" is primary_db, shown once
    for entry in body["databases"].values():
        assert entry["status"] == "healthy"
        assert entry["message"] == "Database connection OK"
        assert isinstance(entry["latency_ms"], float) and entry["latency_ms"] >= 0


@pytest.mark.postgres
def test_one_database_answers_the_spec_shape(pg_url: str, configure: Configure) -> None:
    configure("database", pg_url)
    with TestClient(app_with()) as client:
        body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert set(body["database"]) == {"status", "latency_ms", "message"}
    assert body["database"]["status"] == "healthy"
    assert body["databases"] == {"database": body["database"]}


@pytest.mark.postgres
@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
def test_an_unreachable_database_answers_503_without_its_password(
    pg_url: str, configure: Configure, async_: bool
) -> None:
    configure("primary_db", pg_url)
    configure("replica_db", f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/test", connect_timeout=2)
    with TestClient(app_with("primary_db", "replica_db", async_=async_)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert PASSWORD not in response.text
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["databases"]["primary_db"]["status"] == "healthy"
    replica = body["databases"]["replica_db"]
    assert replica["status"] == "unhealthy"
    assert replica["message"].startswith("Database unreachable")


@pytest.mark.postgres
def test_health_json_format(pg_url: str, configure: Configure) -> None:
    configure("primary_db", pg_url)
    configure("replica_db", f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/test", connect_timeout=2)
    app = FastAPI(lifespan=database_lifespan("primary_db", "replica_db"))
    app.include_router(health_router(media="health+json"))
    app.include_router(health_router("/health/primary", names=["primary_db"], media="health+json"))
    with TestClient(app) as client:
        failing = client.get("/health")
        passing = client.get("/health/primary")

    assert failing.status_code == 503
    assert failing.headers["content-type"] == "application/health+json"
    assert PASSWORD not in failing.text
    body = failing.json()
    assert body["status"] == "fail"
    assert set(body["checks"]) == {"primary_db:responseTime", "replica_db:responseTime"}
    (primary,) = body["checks"]["primary_db:responseTime"]
    (replica,) = body["checks"]["replica_db:responseTime"]
    assert primary["componentId"] == "primary_db"
    assert primary["componentType"] == "datastore"
    assert primary["observedUnit"] == "ms" and isinstance(primary["observedValue"], float)
    assert primary["status"] == "pass" and "output" not in primary
    assert datetime.fromisoformat(primary["time"]).tzinfo is not None
    assert replica["status"] == "fail" and replica["output"].startswith("Database unreachable")

    assert passing.status_code == 200
    assert passing.json()["status"] == "pass"
    assert list(passing.json()["checks"]) == ["primary_db:responseTime"]


# -- status rules, with stand-in databases ---------------------------------------------------


class FakeDatabase:
    """Just enough of a database for the health router."""

    def __init__(self, name: str, status: HealthStatus = HealthStatus.HEALTHY, delay: float = 0.0) -> None:
        self.name = name
        self.status = status
        self.delay = delay

    def health_check(self) -> HealthCheckResult:
        time.sleep(self.delay)
        return HealthCheckResult(self.status, f"{self.name} is {self.status.value}", 1.5)


class AsyncFakeDatabase(FakeDatabase):
    is_async = True

    async def health_check(self) -> HealthCheckResult:  # type: ignore[override]
        await asyncio.sleep(self.delay)
        return HealthCheckResult(self.status, f"{self.name} is {self.status.value}", 1.5)


class BrokenDatabase(FakeDatabase):
    def health_check(self) -> HealthCheckResult:
        raise RuntimeError(f"postgresql://app:{PASSWORD}@db/app exploded")


def serve(*databases: FakeDatabase, **router_options: Any) -> Any:
    for db in databases:
        set_database(db, db.name)  # type: ignore[arg-type]
    app = FastAPI()
    app.include_router(health_router(**router_options))
    return TestClient(app).get("/health")


def test_degraded_answers_200_and_warn() -> None:
    fakes = FakeDatabase("a"), FakeDatabase("b", HealthStatus.DEGRADED)
    response = serve(*fakes)
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["databases"]["b"] == {"status": "degraded", "latency_ms": 1.5, "message": "b is degraded"}
    ietf = serve(*fakes, media="health+json")
    assert ietf.status_code == 200
    assert ietf.json()["status"] == "warn"
    assert ietf.json()["checks"]["b:responseTime"][0]["output"] == "b is degraded"


def test_unhealthy_wins_over_degraded() -> None:
    response = serve(FakeDatabase("a", HealthStatus.DEGRADED), AsyncFakeDatabase("b", HealthStatus.UNHEALTHY))
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"


def test_databases_are_checked_concurrently() -> None:
    fakes = [FakeDatabase("s1", delay=0.4), FakeDatabase("s2", delay=0.4), AsyncFakeDatabase("a1", delay=0.4)]
    started = time.perf_counter()
    response = serve(*fakes)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert list(response.json()["databases"]) == ["s1", "s2", "a1"]
    assert elapsed < 1.0, f"three 0.4 s checks took {elapsed:.2f} s: not concurrent"


def test_names_limit_the_report_and_a_missing_one_is_unhealthy() -> None:
    response = serve(FakeDatabase("a"), FakeDatabase("b", HealthStatus.UNHEALTHY), names=["a", "ghost"])
    assert response.status_code == 503
    body = response.json()
    assert list(body["databases"]) == ["a", "ghost"]
    assert body["databases"]["ghost"]["message"] == "no database registered under 'ghost'"


def test_a_health_check_that_raises_is_unhealthy_and_leaks_nothing() -> None:
    response = serve(BrokenDatabase("broken"))
    assert response.status_code == 503
    assert PASSWORD not in response.text
    assert response.json()["database"]["message"] == "health check failed: RuntimeError"


def test_no_database_registered_is_unhealthy() -> None:
    response = serve()
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "databases": {}, "message": "no database registered"}


def test_health_router_options() -> None:
    app = FastAPI()
    app.include_router(health_router("/healthz", include_in_schema=False))
    app.include_router(health_router("/ready", tags=["ops"]))
    paths = app.openapi()["paths"]
    assert "/healthz" not in paths
    assert paths["/ready"]["get"]["tags"] == ["ops"]
    with pytest.raises(ValueError, match="'json' or 'health\\+json'"):
        health_router(media="xml")  # type: ignore[arg-type]
