"""The whole kit in one class, and its groups (docs/backends/authoring.md)."""

from __future__ import annotations

from .capabilities_async import AsyncCapabilityTests
from .conflicts_async import AsyncConflictTests
from .pool_async import AsyncPoolHealthTests
from .registry_async import AsyncRegistryTests
from .results_async import AsyncResultTests
from .spec_async import AsyncSpecExampleTests
from .transactions_async import AsyncTransactionTests

__all__ = [
    "AsyncCapabilityTests",
    "AsyncConflictTests",
    "AsyncConformanceTests",
    "AsyncPoolHealthTests",
    "AsyncRegistryTests",
    "AsyncResultTests",
    "AsyncSpecExampleTests",
    "AsyncTransactionTests",
]


class AsyncConformanceTests(
    AsyncRegistryTests,
    AsyncTransactionTests,
    AsyncConflictTests,
    AsyncResultTests,
    AsyncCapabilityTests,
    AsyncPoolHealthTests,
    AsyncSpecExampleTests,
):
    """Every test of the kit: ``class TestMine(AsyncConformanceTests)`` runs them on a backend."""
