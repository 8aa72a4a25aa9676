"""The conformance kit: the test suite every backend must pass, shipped with core.

A backend's test module mixes the kit into a test class and says how to reach a database::

    import pytest
    from structum_lab.plugins.database.testing.conformance import ConformanceTests

    class TestMyBackend(ConformanceTests):          # AsyncConformanceTests for asyncio
        backend = "mydb"

        @pytest.fixture
        def database_url(self, tmp_path):           # a fresh, empty database per test
            return f"mydb:///{tmp_path}/kit.db"

Each test declares the ``Features`` flag it needs (:func:`requires`) and runs where the
backend's ``db.features`` has it; what the features cannot say is declared in class
attributes (``locking_isolation``, ``pool_prefills``, ...). One test is skipped, marked
xfail or replaced by overriding it in the subclass. docs/backends/authoring.md explains
every attribute, fixture and hook. The asyncio classes need pytest-asyncio.
"""

from .._integrations.conformance.base import KitBase
from .._integrations.conformance.base_async import AsyncKitBase
from .._integrations.conformance.protocols import KitConnection, KitDatabase
from .._integrations.conformance.protocols_async import AsyncKitConnection, AsyncKitDatabase
from .._integrations.conformance.suite import (
    CapabilityTests,
    ConflictTests,
    ConformanceTests,
    PoolHealthTests,
    RegistryTests,
    ResultTests,
    SpecExampleTests,
    TransactionTests,
)
from .._integrations.conformance.suite_async import (
    AsyncCapabilityTests,
    AsyncConflictTests,
    AsyncConformanceTests,
    AsyncPoolHealthTests,
    AsyncRegistryTests,
    AsyncResultTests,
    AsyncSpecExampleTests,
    AsyncTransactionTests,
)
from .._integrations.conformance.support import SECRET, Opener, closed_port, raises, requires, silent_server, url_at

__all__ = [
    "SECRET",
    "AsyncCapabilityTests",
    "AsyncConflictTests",
    "AsyncConformanceTests",
    "AsyncKitBase",
    "AsyncKitConnection",
    "AsyncKitDatabase",
    "AsyncPoolHealthTests",
    "AsyncRegistryTests",
    "AsyncResultTests",
    "AsyncSpecExampleTests",
    "AsyncTransactionTests",
    "CapabilityTests",
    "ConflictTests",
    "ConformanceTests",
    "KitBase",
    "KitConnection",
    "KitDatabase",
    "Opener",
    "PoolHealthTests",
    "RegistryTests",
    "ResultTests",
    "SpecExampleTests",
    "TransactionTests",
    "closed_port",
    "raises",
    "requires",
    "silent_server",
    "url_at",
]
