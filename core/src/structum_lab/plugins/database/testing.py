"""Rollback-isolated databases for tests (used by the pytest plugin, usable on their own).

See docs/testing.md; the implementation is ``_integrations/testing_async.py`` (and the
sync module generated from it).
"""

from ._integrations.testing import RollbackDatabase
from ._integrations.testing_async import AsyncRollbackDatabase

__all__ = ["AsyncRollbackDatabase", "RollbackDatabase"]
