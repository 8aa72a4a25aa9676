"""Health checks: the status model every backend reports.

``health_check()`` returns a :class:`HealthCheckResult`; the engine (``_engine/health.py``)
times the probe, bounds it and classifies the outcome.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["OK_MESSAGE", "HealthCheckResult", "HealthStatus"]

OK_MESSAGE: Final = "Database connection OK"


class HealthStatus(enum.Enum):
    """Outcome of a health check; ``.value`` is the lower-case string for JSON."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    """What :meth:`health_check` reports.

    ``latency_ms`` is the probe's round trip (or the time until it failed);
    ``details`` holds the backend name, the pool figures and, on failure, the error type.
    """

    status: HealthStatus
    message: str
    latency_ms: float
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.status is HealthStatus.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "message": self.message,
            "latency_ms": self.latency_ms,
            "details": dict(self.details),
        }
