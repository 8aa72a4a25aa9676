"""Test helpers: rollback-isolated databases, and the conformance kit for backend authors.

``RollbackDatabase`` / ``AsyncRollbackDatabase`` (used by the pytest plugin, usable on their
own; see docs/testing.md) are implemented in ``_integrations/testing_async.py`` (and the sync
module generated from it). The kit is :mod:`.conformance` (docs/backends/authoring.md); it
imports pytest, so it is imported only when named.
"""

from .._integrations.testing import RollbackDatabase
from .._integrations.testing_async import AsyncRollbackDatabase

__all__ = ["AsyncRollbackDatabase", "RollbackDatabase"]
