"""Health reports for the FastAPI router: which databases, checked how, rendered how.

Private to :mod:`structum_lab.plugins.database.fastapi`; imports only anyio (a
Starlette dependency), so it is importable wherever that module is.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast

import anyio
import anyio.to_thread

from .._config.instances import DEFAULT_NAME, registered_databases
from .._contract.health import HealthCheckResult, HealthStatus
from .._contract.protocols import AsyncDatabaseInterface, DatabaseInterface

__all__ = ["HEALTH_JSON", "HealthMedia", "check_databases", "is_async_database", "render_health", "select_targets"]

log = logging.getLogger("structum_lab.plugins.database")

HealthMedia = Literal["json", "health+json"]
HEALTH_JSON = "application/health+json"

_ORDER = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}
_IETF_STATUS = {HealthStatus.HEALTHY: "pass", HealthStatus.DEGRADED: "warn", HealthStatus.UNHEALTHY: "fail"}

AnyDatabase = DatabaseInterface | AsyncDatabaseInterface


def is_async_database(db: object) -> bool:
    """Whether ``db`` is an asyncio database (``await db.health_check()``)."""
    flag = getattr(type(db), "is_async", None)
    if isinstance(flag, bool):
        return flag
    return inspect.iscoroutinefunction(getattr(db, "health_check", None))


def select_targets(names: Sequence[str] | None) -> dict[str, AnyDatabase | None]:
    """The databases to check, by the name shown in the report (``None``: not registered).

    Without ``names``: every registered database once, under its own name rather than
    ``"default"`` when it is registered under both (the lifespan registers one
    database twice).
    """
    registered = registered_databases()
    if names is not None:
        return {name: registered.get(name) for name in names}
    by_identity: dict[int, str] = {}
    for name, db in registered.items():
        shown = by_identity.get(id(db))
        if shown is None or shown == DEFAULT_NAME:
            by_identity[id(db)] = name
    chosen = set(by_identity.values())
    return {name: db for name, db in registered.items() if name in chosen}


async def _check_one(name: str, db: AnyDatabase | None, limiter: anyio.CapacityLimiter) -> HealthCheckResult:
    if db is None:
        return HealthCheckResult(
            HealthStatus.UNHEALTHY,
            f"no database registered under {name!r}",
            0.0,
            {"error": "ConfigurationError"},
        )
    try:
        if is_async_database(db):
            return await cast("AsyncDatabaseInterface", db).health_check()
        return await anyio.to_thread.run_sync(cast("DatabaseInterface", db).health_check, limiter=limiter)
    except Exception as exc:
        # health_check() never raises by contract; a third-party one might. Its message
        # could hold a secret we cannot scrub, so only the type is reported.
        log.warning("health check of database %r raised %s", name, type(exc).__name__, exc_info=True)
        return HealthCheckResult(
            HealthStatus.UNHEALTHY, f"health check failed: {type(exc).__name__}", 0.0, {"error": type(exc).__name__}
        )


async def check_databases(targets: Mapping[str, AnyDatabase | None]) -> dict[str, HealthCheckResult]:
    """Check every target concurrently: async ones awaited, sync ones in worker threads.

    Sync checks get their own thread limiter rather than the application's threadpool,
    so a threadpool saturated by slow requests does not stall the health endpoint.
    """
    results: dict[str, HealthCheckResult] = {}
    limiter = anyio.CapacityLimiter(max(1, len(targets)))

    async def run(name: str, db: AnyDatabase | None) -> None:
        results[name] = await _check_one(name, db, limiter)

    async with anyio.create_task_group() as group:
        for name, db in targets.items():
            group.start_soon(run, name, db)
    return {name: results[name] for name in targets}


def overall_status(results: Mapping[str, HealthCheckResult]) -> HealthStatus:
    """The worst status; UNHEALTHY when there is nothing to check."""
    if not results:
        return HealthStatus.UNHEALTHY
    return max((r.status for r in results.values()), key=_ORDER.__getitem__)


def _entry(result: HealthCheckResult) -> dict[str, Any]:
    return {"status": result.status.value, "latency_ms": result.latency_ms, "message": result.message}


def render_health(results: Mapping[str, HealthCheckResult], media: HealthMedia) -> tuple[dict[str, Any], int]:
    """The response body and HTTP status (503 when any database is unhealthy)."""
    status = overall_status(results)
    code = 503 if status is HealthStatus.UNHEALTHY else 200
    if media == "health+json":
        return _render_ietf(results, status), code
    body: dict[str, Any] = {"status": status.value}
    if len(results) == 1:
        body["database"] = _entry(next(iter(results.values())))
    body["databases"] = {name: _entry(result) for name, result in results.items()}
    if not results:
        body["message"] = "no database registered"
    return body, code


def _render_ietf(results: Mapping[str, HealthCheckResult], status: HealthStatus) -> dict[str, Any]:
    """``application/health+json`` (draft-inadarei-api-health-check)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    checks: dict[str, list[dict[str, Any]]] = {}
    for name, result in results.items():
        check: dict[str, Any] = {
            "componentId": name,
            "componentType": "datastore",
            "observedValue": result.latency_ms,
            "observedUnit": "ms",
            "status": _IETF_STATUS[result.status],
            "time": now,
        }
        if result.status is not HealthStatus.HEALTHY:
            check["output"] = result.message
        checks[f"{name}:responseTime"] = [check]
    body: dict[str, Any] = {"status": _IETF_STATUS[status], "description": "database health"}
    if not results:
        body["output"] = "no database registered"
    body["checks"] = checks
    return body
