"""Health checks: the timing and deadline logic every backend shares.

A driver supplies one probe (a single round trip on a pooled connection); the engine
bounds it in time, measures the latency, classifies the outcome and scrubs secrets
from the message. ``health_check()`` never raises for an unreachable server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._contract.errors import PoolTimeoutError
from .._contract.health import OK_MESSAGE, HealthCheckResult, HealthStatus
from .secrets import Secrets

__all__ = ["PROBE_SHARE", "run_health_check", "run_health_check_async"]

#: The share of health_check_timeout a probe gets for its own round trips. The probe then
#: ends by itself, and returns its connection, before the hard deadline abandons it.
PROBE_SHARE = 0.8

# Probes abandoned at the deadline, kept referenced until they end (see run_health_check_async).
_abandoned: set[asyncio.Future[None]] = set()


def _classify(
    latency_ms: float, error: BaseException | None, *, timeout_s: float, degraded_ms: float, secrets: Secrets
) -> tuple[HealthStatus, str]:
    if error is None:
        if latency_ms > degraded_ms:
            return HealthStatus.DEGRADED, f"Database responded slowly ({latency_ms:.1f} ms > {degraded_ms:g} ms)"
        return HealthStatus.HEALTHY, OK_MESSAGE
    if isinstance(error, PoolTimeoutError):
        # The server may be fine; the pool is saturated. Reported, not hidden.
        return HealthStatus.DEGRADED, secrets.scrub(f"Connection pool exhausted: {error}")
    if isinstance(error, TimeoutError):
        return HealthStatus.UNHEALTHY, f"Database did not answer within {timeout_s:g} s"
    text = " ".join(str(error).split()) or type(error).__name__
    return HealthStatus.UNHEALTHY, secrets.scrub(f"Database unreachable: {text}")


def _result(
    started: float,
    error: BaseException | None,
    *,
    timeout_s: float,
    degraded_ms: float,
    secrets: Secrets,
    details: Mapping[str, Any],
) -> HealthCheckResult:
    latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
    status, message = _classify(latency_ms, error, timeout_s=timeout_s, degraded_ms=degraded_ms, secrets=secrets)
    extra = dict(details)
    if error is not None:
        extra["error"] = type(error).__name__
    return HealthCheckResult(status, message, latency_ms, extra)


def run_health_check(
    probe: Callable[[float], None],
    *,
    timeout_s: float,
    degraded_ms: float,
    secrets: Secrets,
    details: Callable[[], Mapping[str, Any]],
) -> HealthCheckResult:
    """Run ``probe(budget)`` with a hard deadline of ``timeout_s`` and classify the outcome.

    ``budget`` is :data:`PROBE_SHARE` of the deadline: what the probe's own round trips
    may take.

    The probe should honour the timeout itself (driver timeouts); the extra thread is
    the guarantee for when it cannot, e.g. a server that accepts and never answers.
    A probe stuck past the deadline is abandoned in its daemon thread.
    """
    started = time.perf_counter()
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            probe(timeout_s * PROBE_SHARE)
        except BaseException as exc:  # reported, not raised: a health check never raises
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=target, name="structum-db-health", daemon=True)
    worker.start()
    worker.join(timeout_s)
    error = outcome[0] if outcome else TimeoutError(f"health probe exceeded {timeout_s:g} s")
    return _result(started, error, timeout_s=timeout_s, degraded_ms=degraded_ms, secrets=secrets, details=details())


async def run_health_check_async(
    probe: Callable[[float], Awaitable[None]],
    *,
    timeout_s: float,
    degraded_ms: float,
    secrets: Secrets,
    details: Callable[[], Mapping[str, Any]],
) -> HealthCheckResult:
    """The async counterpart of :func:`run_health_check`.

    A probe still running at the deadline is cancelled but not waited for: a driver
    cancelled mid-query may first send a cancel request to the server and wait for it
    (psycopg up to 5 s), which is exactly what a silent server never answers. It ends in
    the background, as an abandoned sync probe does in its thread.
    """
    started = time.perf_counter()
    error: BaseException | None = None
    task = asyncio.ensure_future(probe(timeout_s * PROBE_SHARE))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()  # the caller gave up: so does the probe
        raise
    if task in done:
        error = None if task.cancelled() else task.exception()
        if task.cancelled():
            error = TimeoutError(f"health probe cancelled after {timeout_s:g} s")
    else:
        task.cancel()
        _abandoned.add(task)
        task.add_done_callback(_forget)
        error = TimeoutError(f"health probe exceeded {timeout_s:g} s")
    return _result(started, error, timeout_s=timeout_s, degraded_ms=degraded_ms, secrets=secrets, details=details())


def _forget(task: asyncio.Future[None]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned probe's failure is already reported
